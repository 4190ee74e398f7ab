"""Box geometry for the CNN detector: regression targets, score-map decoding (IoU and NMS:
:mod:`pipeline.boxes`).

Pure numpy, so it is testable without TensorFlow. Boxes here are ``(x1, y1, x2, y2)``
float arrays in pixels; a *window* is a square ``(x, y, side)`` the classifier looked at.

Regression targets are the offsets of the face box's corners from the window's corners,
in units of the window side: ``t = ((gx1 - x) / s, (gy1 - y) / s, (gx2 - x - s) / s,
(gy2 - y - s) / s)``. A window exactly on a square face box has ``t = 0``.
"""

from __future__ import annotations

import numpy as np

# re-exported for the detector and its training code (boxes here are xyxy)
from pipeline.boxes import iou_matrix_xyxy as iou_matrix  # noqa: F401
from pipeline.boxes import nms as nms


def square_around(boxes: np.ndarray) -> np.ndarray:
    """The square window ``(x, y, side)`` centred on each box, side = mean of w and h.

    Training crops and inference crops both use this, so the refine stage sees faces
    framed the same way in both.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = (w + h) / 2.0
    cx = (boxes[:, 0] + boxes[:, 2]) / 2.0
    cy = (boxes[:, 1] + boxes[:, 3]) / 2.0
    return np.stack([cx - side / 2.0, cy - side / 2.0, side], axis=1)


def window_boxes(windows: np.ndarray) -> np.ndarray:
    """``(x, y, side)`` windows as ``x1, y1, x2, y2`` boxes."""
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    return np.stack([w[:, 0], w[:, 1], w[:, 0] + w[:, 2], w[:, 1] + w[:, 2]], axis=1)


def encode(windows: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Regression targets of face boxes ``gt`` (N, 4) seen through ``windows`` (N, 3)."""
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    g = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    s = w[:, 2:3]
    wb = window_boxes(w)
    return ((g - wb) / s).astype(np.float32)


def decode(windows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Face boxes from ``windows`` (N, 3) and predicted ``offsets`` (N, 4) (inverse of encode)."""
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
    t = np.asarray(offsets, dtype=np.float64).reshape(-1, 4)
    return window_boxes(w) + t * w[:, 2:3]


def decode_score_map(
    probs: np.ndarray,
    offsets: np.ndarray,
    scale: float,
    window: int,
    stride: int,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and scores from one pyramid level of the fully convolutional net.

    ``probs`` (h, w) and ``offsets`` (h, w, 4) are the net's outputs on the image
    resized by ``scale``; cell ``(i, j)`` looked at the ``window``-pixel square whose
    top-left corner is ``(j * stride, i * stride)`` in the resized image. Returns boxes
    ``(K, 4)`` in original-image pixels and their scores ``(K,)`` for cells above
    ``threshold``.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (h, w), got shape {probs.shape}")
    if offsets.shape != probs.shape + (4,):
        raise ValueError(f"offsets must be {probs.shape + (4,)}, got {offsets.shape}")
    ii, jj = np.nonzero(probs > threshold)
    if ii.size == 0:
        return np.zeros((0, 4)), np.zeros((0,))
    side = window / scale
    windows = np.stack(
        [jj * stride / scale, ii * stride / scale, np.full(ii.shape, side)], axis=1
    ).astype(np.float64)
    boxes = decode(windows, offsets[ii, jj])
    return boxes, probs[ii, jj].astype(np.float64)


def pyramid_scales(
    height: int, width: int, window: int, min_face: float, factor: float, max_face: float = 0
) -> list[float]:
    """Image scales at which a ``window``-pixel net sees faces from ``min_face`` pixels up.

    The first scale maps a ``min_face`` face onto the window; each next one shrinks by
    ``factor`` until the image is smaller than the window (or faces above ``max_face``
    pixels are covered, when ``max_face`` > 0).
    """
    if min_face <= 0:
        raise ValueError(f"min_face must be > 0, got {min_face}")
    if not 0.0 < factor < 1.0:
        raise ValueError(f"factor must be in (0, 1), got {factor}")
    scales = []
    s = window / float(min_face)
    while min(height, width) * s >= window:
        scales.append(s)
        if max_face > 0 and window / s >= max_face:
            break
        s *= factor
    return scales
