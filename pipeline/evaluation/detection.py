"""Face detection average precision at IoU 0.5, VOC/WIDER style, with ignore regions.

The protocol (what ``evaluate_detections`` computes):

1. In each image, detections are taken in descending score order and matched greedily:
   a detection is a true positive when its best-overlapping *unmatched valid* face has
   IoU >= ``iou_threshold``; that face is then used up. Otherwise, when it overlaps an
   *ignore region* (a face flagged ``invalid``, or - in the ``min_height`` setting - a
   valid face smaller than ``min_height`` px) with IoU >= ``iou_threshold``, it is
   ignored: it counts neither as true nor as false positive (several detections may fall
   on one ignore region). Otherwise it is a false positive (including a second detection
   of an already matched face).
2. All images' non-ignored detections are pooled and sorted by score; precision and recall
   are accumulated down that list, the number of positives being the count of valid faces
   (of at least ``min_height`` px) over all images.
3. AP is the area under the precision-recall curve after making precision monotonically
   non-increasing (all-point interpolation, PASCAL VOC 2010+).

Boxes are ``(x, y, w, h)`` in pixels everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.boxes import iou_matrix_xywh as iou_matrix  # boxes here are xywh

TP, FP, IGNORED = 1, 0, -1


def match_image(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_ignore: np.ndarray,
    iou_threshold: float = 0.5,
) -> np.ndarray:
    """Label each detection of one image TP (1), FP (0) or ignored (-1).

    ``gt_ignore`` is a boolean array, True for ignore regions. Labels are returned in the
    order of the given detections (matching itself runs in descending score order, ties
    keep their given order).
    """
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gt_ignore = np.asarray(gt_ignore, dtype=bool).reshape(-1)
    if len(det_boxes) != len(det_scores):
        raise ValueError("det_boxes and det_scores differ in length")
    if len(gt_boxes) != len(gt_ignore):
        raise ValueError("gt_boxes and gt_ignore differ in length")
    labels = np.full(len(det_boxes), FP, dtype=np.int8)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return labels
    ious = iou_matrix(det_boxes, gt_boxes)
    valid = ~gt_ignore
    used = np.zeros(len(gt_boxes), dtype=bool)
    for d in np.argsort(-det_scores, kind="stable"):
        row = ious[d]
        candidates = np.where(valid & ~used, row, -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            labels[d] = TP
            used[best] = True
        elif gt_ignore.any() and row[gt_ignore].max() >= iou_threshold:
            labels[d] = IGNORED
    return labels


def average_precision(scores: np.ndarray, labels: np.ndarray, n_positives: int) -> float:
    """All-point interpolated AP of pooled detections (labels TP/FP; ignored ones dropped).

    Returns 0.0 when there are no positives to find (nothing can be recalled), and also
    when no detection is a true positive.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    keep = labels != IGNORED
    scores, labels = scores[keep], labels[keep]
    if n_positives <= 0 or len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp = (labels[order] == TP).astype(np.float64)
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1.0 - tp)
    recall = ctp / n_positives
    precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass
class DetectionResult:
    """AP and its ingredients for one detector on one dataset setting."""

    ap: float
    n_positives: int
    n_detections: int
    true_positives: int
    false_positives: int
    ignored: int
    recall: float  # at the lowest score the detector reported

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _boxes(faces: Sequence[Mapping[str, Any]]) -> np.ndarray:
    return np.array([f["box"] for f in faces], dtype=np.float64).reshape(-1, 4)


def evaluate_detections(
    annotations: Iterable[Mapping[str, Any]],
    detections: Mapping[str, Sequence[Mapping[str, Any]]],
    min_height: float = 0,
    iou_threshold: float = 0.5,
) -> DetectionResult:
    """AP of ``detections`` against ``annotations``.

    ``annotations``: records ``{"image": KEY, "faces": [{"box": [x, y, w, h],
    "invalid": 0/1}, ...]}`` (the WIDER subset's ``annotations.jsonl`` lines).
    ``detections``: ``KEY -> [{"box": [x, y, w, h], "score": s}, ...]``; every annotated
    image must be present (an image the detector failed on should be given as ``[]``).
    ``min_height``: valid faces shorter than this become ignore regions.
    """
    all_scores: list[np.ndarray] = []
    all_labels: list[np.ndarray] = []
    n_pos = 0
    for record in annotations:
        key = record["image"]
        if key not in detections:
            raise KeyError(f"no detections given for image {key!r}")
        faces = record.get("faces", [])
        gt = _boxes(faces)
        ignore = np.array([bool(f.get("invalid", 0)) for f in faces], dtype=bool)
        if min_height > 0 and len(faces):
            ignore |= gt[:, 3] < min_height
        n_pos += int((~ignore).sum())
        dets = detections[key]
        scores = np.array([d["score"] for d in dets], dtype=np.float64)
        labels = match_image(_boxes(dets), scores, gt, ignore, iou_threshold)
        all_scores.append(scores)
        all_labels.append(labels)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    labels = np.concatenate(all_labels) if all_labels else np.zeros(0, dtype=np.int8)
    n_tp = int((labels == TP).sum())
    return DetectionResult(
        ap=average_precision(scores, labels, n_pos),
        n_positives=n_pos,
        n_detections=int(len(labels)),
        true_positives=n_tp,
        false_positives=int((labels == FP).sum()),
        ignored=int((labels == IGNORED).sum()),
        recall=n_tp / n_pos if n_pos else 0.0,
    )
