"""Cropping square windows out of images, and the photometric augmentation of crops.

Shared by training (crops of faces and non-faces) and inference (the refine stage crops
each candidate from the frame), so both see pixels prepared the same way: the square is
cut with edge-replicated padding where it leaves the image and resized with area
averaging when shrinking (as the inference pyramid does).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def _region(image: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` with edge-replicated padding outside the image."""
    h, w = image.shape[:2]
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 <= cx0 or cy1 <= cy0:  # entirely outside: nearest edge pixel everywhere
        cx0, cy0 = min(max(0, x0), w - 1), min(max(0, y0), h - 1)
        cx1, cy1 = cx0 + 1, cy0 + 1
    part = image[cy0:cy1, cx0:cx1]
    top, bottom, left, right = cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1
    if top > 0 or bottom > 0 or left > 0 or right > 0:
        part = cv2.copyMakeBorder(
            np.ascontiguousarray(part),
            max(0, top),
            max(0, bottom),
            max(0, left),
            max(0, right),
            cv2.BORDER_REPLICATE,
        )
        if part.ndim == 2 and image.ndim == 3:
            part = part[:, :, None]
    return part


def crop_window(
    image: np.ndarray, x: float, y: float, side: float, out: int, angle: float = 0.0
) -> np.ndarray:
    """The square ``(x, y, side)`` of ``image`` resized to ``out`` x ``out`` pixels.

    ``angle`` (degrees) rotates the content about the window centre (augmentation).
    """
    if side <= 0:
        raise ValueError(f"window side must be > 0, got {side}")
    pad = 0.25 * side if angle else 0.0
    x0, y0 = int(math.floor(x - pad)), int(math.floor(y - pad))
    size = int(round(side + 2 * pad))
    region = _region(image, x0, y0, x0 + size, y0 + size)
    k = out / side
    big = max(out, int(round(size * k)))
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(region, (big, big), interpolation=interp)
    if resized.ndim == 2:
        resized = resized[:, :, None]
    if angle:
        c = big / 2.0
        m = cv2.getRotationMatrix2D((c, c), angle, 1.0)
        resized = cv2.warpAffine(resized, m, (big, big), borderMode=cv2.BORDER_REPLICATE)
        if resized.ndim == 2:
            resized = resized[:, :, None]
    off = (big - out) // 2
    return resized[off : off + out, off : off + out]


def crop_windows(image: np.ndarray, windows: np.ndarray, out: int) -> np.ndarray:
    """Crops ``(N, out, out, C)`` of several ``(x, y, side)`` windows of one image."""
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    channels = 1 if image.ndim == 2 else image.shape[2]
    crops = np.empty((len(windows), out, out, channels), dtype=image.dtype)
    for k, (x, y, s) in enumerate(windows):
        crops[k] = crop_window(image, x, y, s, out).reshape(out, out, channels)
    return crops


def flip_offsets(offsets: np.ndarray) -> np.ndarray:
    """Box offsets of horizontally flipped windows: x1 and x2 swap and change sign."""
    t = np.array(offsets, dtype=np.float32, copy=True)
    t[..., 0], t[..., 2] = -offsets[..., 2], -offsets[..., 0]
    return t


def augment(
    crops: np.ndarray, offsets: np.ndarray, rng: np.random.Generator, strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Random photometric changes and flips of uint8 RGB crops ``(N, S, S, 3)``.

    Flips (with their box offsets), brightness/contrast/gamma, per-channel colour gains,
    grayscale (LFW is gray, video is often washed out), Gaussian blur, low resolution
    (down- then up-sampling, like small far faces) and sensor noise.
    """
    n, s = crops.shape[0], crops.shape[1]
    out = crops.astype(np.float32)
    offsets = np.array(offsets, dtype=np.float32, copy=True)
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    offsets[flip] = flip_offsets(offsets[flip])

    gray = rng.random(n) < 0.2 * strength
    if gray.any():
        g = out[gray] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        out[gray] = g[..., None]
    gains = np.exp(rng.normal(0.0, 0.08 * strength, size=(n, 1, 1, 3))).astype(np.float32)
    out *= gains
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    contrast = np.exp(rng.normal(0.0, 0.25 * strength, size=(n, 1, 1, 1))).astype(np.float32)
    bright = rng.normal(0.0, 25.0 * strength, size=(n, 1, 1, 1)).astype(np.float32)
    out = (out - mean) * contrast + mean + bright
    out = np.clip(out, 0, 255)
    gamma = np.exp(rng.normal(0.0, 0.2 * strength, size=(n, 1, 1, 1))).astype(np.float32)
    out = 255.0 * (out / 255.0) ** gamma

    for i in np.nonzero(rng.random(n) < 0.2 * strength)[0]:
        sigma = rng.uniform(0.5, 1.5) * s / 32.0
        out[i] = cv2.GaussianBlur(out[i], (0, 0), sigma)
    for i in np.nonzero(rng.random(n) < 0.2 * strength)[0]:
        small = int(rng.integers(max(8, s // 4), max(9, int(s * 0.75))))
        tiny = cv2.resize(out[i], (small, small), interpolation=cv2.INTER_AREA)
        out[i] = cv2.resize(tiny, (s, s), interpolation=cv2.INTER_LINEAR)
    noisy = rng.random(n) < 0.15 * strength
    if noisy.any():
        sig = rng.uniform(2.0, 10.0, size=(int(noisy.sum()), 1, 1, 1)).astype(np.float32)
        out[noisy] += rng.normal(size=out[noisy].shape).astype(np.float32) * sig
    return np.clip(out, 0, 255).astype(np.uint8), offsets
