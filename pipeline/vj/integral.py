"""Integral images (summed-area tables).

``ii[y, x]`` holds the sum of all pixels above and to the left of ``(y, x)``, exclusive,
so the array has one extra leading row and column of zeros and the sum of the rectangle
``img[y0:y1, x0:x1]`` is ``ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]``: four
look-ups whatever the rectangle's size. That is what makes Haar features cheap.
"""

from __future__ import annotations

import numpy as np


def integral_image(image: np.ndarray, square: bool = False) -> np.ndarray:
    """The zero-padded integral image of a 2-D array (of its squares if ``square``).

    Returns a float64 array of shape ``(H + 1, W + 1)``; float64 keeps the sums exact for
    8-bit images far larger than any video frame (and sums of squares up to ~2**53).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"integral_image needs a 2-D (grey) array, got shape {img.shape}")
    return integral_images(img[None], square=square)[0]


def integral_images(images: np.ndarray, square: bool = False) -> np.ndarray:
    """Zero-padded integral images of a stack ``(N, H, W)`` -> ``(N, H + 1, W + 1)``."""
    imgs = np.asarray(images, dtype=np.float64)
    if imgs.ndim != 3:
        raise ValueError(f"integral_images needs an (N, H, W) stack, got shape {imgs.shape}")
    if square:
        imgs = imgs * imgs
    n, h, w = imgs.shape
    out = np.zeros((n, h + 1, w + 1), dtype=np.float64)
    np.cumsum(imgs, axis=1, out=out[:, 1:, 1:])
    np.cumsum(out[:, 1:, 1:], axis=2, out=out[:, 1:, 1:])
    return out


def rect_sum(ii: np.ndarray, x: int, y: int, w: int, h: int) -> float:
    """Sum of the ``w`` x ``h`` rectangle with top-left ``(x, y)``, from an integral image."""
    return float(ii[y + h, x + w] - ii[y, x + w] - ii[y + h, x] + ii[y, x])


def window_stats(
    ii: np.ndarray, ii2: np.ndarray, bases: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of square windows, from flat integral images.

    ``ii`` and ``ii2`` are integral images (of pixels and of their squares) of width
    ``Wi``, flattened; ``bases`` are flat indices of each window's top-left corner.
    """
    width = _width_of(ii)
    flat, flat2 = ii.reshape(-1), ii2.reshape(-1)
    d = size * width + size
    s = flat[bases + d] - flat[bases + size] - flat[bases + size * width] + flat[bases]
    s2 = flat2[bases + d] - flat2[bases + size] - flat2[bases + size * width] + flat2[bases]
    area = float(size * size)
    mean = s / area
    var = np.maximum(s2 / area - mean * mean, 0.0)
    return mean, np.sqrt(var)


def _width_of(ii: np.ndarray) -> int:
    if ii.ndim != 2:
        raise ValueError("window_stats needs a 2-D integral image")
    return int(ii.shape[1])
