"""Box geometry in one place: conversions, IoU and non-maximum suppression (numpy).

Two conventions, named in every function that takes boxes:

* ``xywh``: ``(x, y, w, h)``, top-left corner and size in pixels. Faces
  (:attr:`pipeline.record.Face.box`), the trackers and the detection evaluation use it.
* ``xyxy``: ``(x1, y1, x2, y2)``, top-left and bottom-right corners. The CNN detector's
  geometry uses it.

Arrays of boxes are ``(N, 4)``; anything that reshapes to that (a list of tuples, one
box) is accepted. A box with no area has IoU 0 with everything, itself included.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Boxes = np.ndarray | Sequence[Sequence[float]]


def _as_boxes(boxes: Boxes | Sequence[float]) -> np.ndarray:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def xywh_to_xyxy(boxes: Boxes) -> np.ndarray:
    """``(x, y, w, h)`` boxes as ``(x1, y1, x2, y2)`` (float, (N, 4))."""
    b = _as_boxes(boxes)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def xyxy_to_xywh(boxes: Boxes) -> np.ndarray:
    """``(x1, y1, x2, y2)`` boxes as ``(x, y, w, h)`` (float, (N, 4))."""
    b = _as_boxes(boxes)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def iou_matrix_xyxy(a: Boxes, b: Boxes) -> np.ndarray:
    """IoU of every box of ``a`` (N) with every box of ``b`` (M): ``(N, M)``, xyxy."""
    a, b = _as_boxes(a), _as_boxes(b)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou_matrix_xywh(a: Boxes, b: Boxes) -> np.ndarray:
    """IoU of every box of ``a`` (N) with every box of ``b`` (M): ``(N, M)``, xywh."""
    return iou_matrix_xyxy(xywh_to_xyxy(a), xywh_to_xyxy(b))


def iou_xywh(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x, y, w, h)`` boxes."""
    return float(iou_matrix_xywh(a, b)[0, 0])


def nms(
    boxes_xyxy: Boxes, scores: np.ndarray | Sequence[float], iou_threshold: float
) -> np.ndarray:
    """Greedy non-maximum suppression of xyxy boxes: the indices kept, best score first.

    The best remaining box is kept and every box overlapping it by IoU above
    ``iou_threshold`` is dropped, until none remain (ties: the earlier index first).
    """
    boxes = _as_boxes(boxes_xyxy)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[iou_matrix_xyxy(boxes[best], boxes[rest])[0] <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
