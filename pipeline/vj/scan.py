"""Multi-scale sliding-window detection with a cascade, and merging of raw windows.

The image is shrunk by successive powers of ``scale_factor`` (an image pyramid, resized
with area averaging as the training crops were); at each level the integral images of the
pixels and of their squares are computed once, every ``step``-th window position becomes
one flat index, and the cascade runs over all of them at once (stage 1 over every window,
later stages over the survivors only).

Overlapping raw windows around one face are grouped as OpenCV's ``groupRectangles`` does
(similar corners within ``eps`` of the size; groups with fewer than ``min_neighbors + 1``
windows dropped; the group box is the mean), then groups that overlap a stronger group are
suppressed. A group's score is its window count plus its best last-stage margin (in [0, 1)),
so more agreeing windows rank higher and ties are broken by confidence.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.vj.cascade import Cascade, Grid
from pipeline.vj.features import STD_FLOOR
from pipeline.vj.integral import integral_image, window_stats


def to_gray(image: np.ndarray) -> np.ndarray:
    """Any image (grey, RGB, RGBA, float in [0, 1] or uint8) as a 2-D uint8 grey array."""
    img = np.asarray(image)
    if img.dtype != np.uint8:
        scale = 255.0 if img.dtype.kind == "f" and img.max() <= 1.0 else 1.0
        img = np.clip(np.round(img.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        if img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        elif img.shape[2] == 1:
            img = img[:, :, 0]
    if img.ndim != 2:
        raise ValueError(f"cannot make a grey image from shape {np.asarray(image).shape}")
    return np.ascontiguousarray(img)


@dataclass
class Level:
    """One pyramid level: the shrunk image and its scale back to the original."""

    image: np.ndarray
    sx: float
    sy: float


def pyramid(gray: np.ndarray, window: int, scale_factor: float, min_size: float, max_size: float):
    """Yield pyramid levels whose ``window`` covers faces from ``min_size`` to ``max_size``."""
    if scale_factor <= 1.0:
        raise ValueError("scale_factor must be > 1")
    h, w = gray.shape
    s = max(float(min_size), float(window)) / window
    while window * s <= min(max_size, h, w):
        lw, lh = int(round(w / s)), int(round(h / s))
        if lw < window or lh < window:
            break
        img = (
            gray if (lw, lh) == (w, h) else cv2.resize(gray, (lw, lh), interpolation=cv2.INTER_AREA)
        )
        yield Level(img, w / lw, h / lh)
        s *= scale_factor


def level_windows(
    level: np.ndarray, window: int, step: int, offset: tuple[int, int] = (0, 0)
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, Grid]:
    """Every ``step``-th window of one level: flat integral image, window bases (flat
    indices of their top-left corners, row-major), inverse standard deviations, the
    integral image's width, window positions ``(x, y)`` and the grid description."""
    ii = integral_image(level)
    ii2 = integral_image(level, square=True)
    width = ii.shape[1]
    ys = np.arange(offset[1], level.shape[0] - window + 1, step)
    xs = np.arange(offset[0], level.shape[1] - window + 1, step)
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    bases = (gy * width + gx).ravel().astype(np.int64)
    _, std = window_stats(ii, ii2, bases, window)
    inv = 1.0 / np.maximum(std, STD_FLOOR)
    pos = np.stack([gx.ravel(), gy.ravel()], axis=1)
    if ii[-1, -1] >= 2**31:
        raise ValueError(f"image too large for the int32 grid path: {level.shape}")
    grid = (ii.astype(np.int32), int(offset[1]), int(offset[0]), step, len(ys), len(xs))
    return ii.reshape(-1), bases, inv, width, pos, grid


def scan(
    gray: np.ndarray,
    cascade: Cascade,
    scale_factor: float = 1.2,
    step: int = 2,
    min_size: float = 0,
    max_size: float = float("inf"),
) -> tuple[np.ndarray, np.ndarray]:
    """Raw windows that pass the whole cascade: boxes ``(n, 4)`` (x, y, w, h) and margins."""
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"scan needs a 2-D grey image, got shape {gray.shape}")
    if step < 1:
        raise ValueError("step must be >= 1")
    win = cascade.window
    boxes, margins = [], []
    for lv in pyramid(gray, win, scale_factor, min_size, max_size):
        ii, bases, inv, width, pos, grid = level_windows(lv.image, win, step)
        depth, margin = cascade.evaluate_windows(ii, width, bases, inv, grid=grid)
        hit = depth == len(cascade.stages)
        if hit.any():
            p = pos[hit].astype(np.float64)
            boxes.append(
                np.stack(
                    [
                        p[:, 0] * lv.sx,
                        p[:, 1] * lv.sy,
                        np.full(len(p), win * lv.sx),
                        np.full(len(p), win * lv.sy),
                    ],
                    axis=1,
                )
            )
            margins.append(margin[hit])
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0)
    return np.concatenate(boxes), np.concatenate(margins)


def group_windows(
    boxes: np.ndarray, margins: np.ndarray, min_neighbors: int, eps: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """Merge similar raw windows (OpenCV ``groupRectangles`` rule); returns boxes, scores.

    Two windows are similar when each of their four edges differs by at most ``eps``
    times their mean (smaller) side; groups are the connected components of that
    relation. Pairs are found block by block, so memory stays linear in the windows.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    margins = np.asarray(margins, dtype=np.float64).reshape(-1)
    n = len(boxes)
    if n == 0:
        return np.zeros((0, 4)), np.zeros(0)
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    rows, cols = [], []
    block = max(1, 2_000_000 // n)
    for s in range(0, n, block):
        e = min(n, s + block)
        delta = (
            eps
            * 0.5
            * (
                np.minimum(boxes[s:e, None, 2], boxes[None, :, 2])
                + np.minimum(boxes[s:e, None, 3], boxes[None, :, 3])
            )
        )
        similar = (
            (np.abs(x1[s:e, None] - x1[None]) <= delta)
            & (np.abs(y1[s:e, None] - y1[None]) <= delta)
            & (np.abs(x2[s:e, None] - x2[None]) <= delta)
            & (np.abs(y2[s:e, None] - y2[None]) <= delta)
        )
        r, c = np.nonzero(similar)
        rows.append(r + s)
        cols.append(c)
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    counts = np.bincount(labels)
    sums = np.zeros((len(counts), 4))
    np.add.at(sums, labels, boxes)
    best = np.full(len(counts), -np.inf)
    np.maximum.at(best, labels, np.nan_to_num(margins, nan=0.0))
    keep = counts > min_neighbors
    if not keep.any():
        return np.zeros((0, 4)), np.zeros(0)
    out = sums[keep] / counts[keep, None]
    scores = counts[keep] + np.clip(best[keep], 0.0, 0.999)
    return out, scores


def suppress(
    boxes: np.ndarray, scores: np.ndarray, iou: float = 0.3, inside: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy non-maximum suppression: drop a box that overlaps a higher-scored kept box
    by IoU > ``iou``, or lies mostly (> ``inside`` of the smaller area) within it."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    x2, y2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    area = b[:, 2] * b[:, 3]
    removed = np.zeros(len(b), dtype=bool)
    keep = []
    for i in range(len(b)):
        if removed[i]:
            continue
        keep.append(i)
        ix = np.clip(np.minimum(x2[i], x2) - np.maximum(b[i, 0], b[:, 0]), 0, None)
        iy = np.clip(np.minimum(y2[i], y2) - np.maximum(b[i, 1], b[:, 1]), 0, None)
        inter = ix * iy
        over = (inter / (area[i] + area - inter) > iou) | (
            inter / np.minimum(area[i], area) > inside
        )
        removed |= over
    return b[keep], scores[order][keep]


def face_boxes(windows: np.ndarray, box: dict[str, float]) -> np.ndarray:
    """Map window boxes to reported face boxes with the cascade's ``box`` geometry."""
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    scale, dx, dy = box.get("scale", 1.0), box.get("dx", 0.0), box.get("dy", 0.0)
    cx = w[:, 0] + w[:, 2] * (0.5 + dx)
    cy = w[:, 1] + w[:, 3] * (0.5 + dy)
    nw, nh = w[:, 2] * scale, w[:, 3] * scale
    return np.stack([cx - nw / 2, cy - nh / 2, nw, nh], axis=1)


def detect(
    gray: np.ndarray,
    cascade: Cascade,
    scale_factor: float = 1.2,
    step: int = 2,
    min_neighbors: int = 2,
    min_size: float = 0,
    max_size: float = float("inf"),
) -> tuple[np.ndarray, np.ndarray]:
    """Face boxes ``(n, 4)`` (x, y, w, h, original pixels) and scores, best first."""
    raw, margins = scan(gray, cascade, scale_factor, step, min_size, max_size)
    boxes, scores = group_windows(raw, margins, min_neighbors)
    boxes, scores = suppress(boxes, scores)
    return face_boxes(boxes, cascade.box), scores
