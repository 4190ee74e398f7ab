"""Which faces a detector finds, by group: WIDER FACE's per-face attributes and UTKFace's
demographic labels (``scripts/eval_detector_groups.py``; the detector model cards).

* **WIDER** (the validation subset, valid faces >= 32 px at 1024 px): recall at the
  detector's threshold per value of each attribute WIDER annotates (blur, occlusion,
  pose, illumination, expression). A face is found when a detection at or above the
  score threshold matches it at IoU >= 0.5 (greedy in score order, as
  :mod:`pipeline.evaluation.detection`); the detections come from
  ``scripts/eval_detectors.py``'s cache.
* **UTKFace** (an even sample of the aligned 200 x 200 photos, one face each): the share
  of photos in which the detector finds a face at or above the threshold, per race,
  gender and age band (the labels in the file names). These photos are large, centred,
  mostly frontal faces: the figure shows differences between groups, not video recall.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.boxes import iou_matrix_xywh

WIDER_GROUPS: dict[str, dict[int, str]] = {
    "blur": {0: "clear", 1: "normal blur", 2: "heavy blur"},
    "occlusion": {0: "no occlusion", 1: "partial occlusion", 2: "heavy occlusion"},
    "pose": {0: "typical pose", 1: "atypical pose"},
    "illumination": {0: "normal light", 1: "extreme light"},
    "expression": {0: "typical expression", 1: "exaggerated expression"},
}
UTK_RACES = {0: "white", 1: "black", 2: "asian", 3: "indian", 4: "other"}
UTK_GENDERS = {0: "male", 1: "female"}
AGE_BANDS = ((0, 12), (13, 19), (20, 39), (40, 59), (60, 200))
MIN_HEIGHT = 32


def found_faces(
    gt_boxes: np.ndarray, det_boxes: np.ndarray, det_scores: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """For each ground-truth face: matched by a detection (IoU >= 0.5, greedy in score
    order, each face used once, only ``valid`` faces matchable)."""
    hit = np.zeros(len(gt_boxes), dtype=bool)
    if len(gt_boxes) == 0 or len(det_boxes) == 0:
        return hit
    ious = iou_matrix_xywh(det_boxes, gt_boxes)
    for d in np.argsort(-det_scores, kind="stable"):
        cand = np.where(valid & ~hit, ious[d], -1.0)
        best = int(np.argmax(cand))
        if cand[best] >= 0.5:
            hit[best] = True
    return hit


def wider_recall_by_group(
    records: Iterable[Mapping[str, Any]],
    detections: Mapping[str, list[Mapping[str, Any]]],
    min_score: float,
    min_height: float = MIN_HEIGHT,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{attribute: {group: {"faces": n, "recall": r}}}`` plus ``{"all": ...}``."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for rec in records:
        faces = rec.get("faces", [])
        gt = np.array([f["box"] for f in faces], dtype=np.float64).reshape(-1, 4)
        valid = np.array(
            [not f.get("invalid", 0) and f["box"][3] >= min_height for f in faces], dtype=bool
        )
        dets = [d for d in detections[rec["image"]] if d["score"] >= min_score - 1e-9]
        boxes = np.array([d["box"] for d in dets], dtype=np.float64).reshape(-1, 4)
        scores = np.array([d["score"] for d in dets], dtype=np.float64)
        hit = found_faces(gt, boxes, scores, valid)
        for i, f in enumerate(faces):
            if not valid[i]:
                continue
            keys = [("all", "all")] + [
                (attr, names.get(int(f.get(attr, 0)), str(f.get(attr))))
                for attr, names in WIDER_GROUPS.items()
            ]
            for key in keys:
                counts[key][0] += 1
                counts[key][1] += int(hit[i])
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (attr, group), (n, k) in counts.items():
        out[attr][group] = {"faces": n, "recall": k / n if n else 0.0}
    return dict(out)


def utk_labels(name: str) -> tuple[int, int, int] | None:
    """(age, gender, race) from ``AGE_GENDER_RACE_DATE.jpg.chip.jpg``; None if malformed."""
    parts = Path(name).name.split("_")
    if len(parts) < 4:
        return None
    try:
        age, gender, race = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if gender not in UTK_GENDERS or race not in UTK_RACES:
        return None
    return age, gender, race


def age_band(age: int) -> str:
    for lo, hi in AGE_BANDS:
        if lo <= age <= hi:
            return f"{lo}-{hi}" if hi < 200 else f"{lo}+"
    return "?"


def utk_detection_by_group(
    found: Mapping[str, bool],
) -> dict[str, dict[str, dict[str, float]]]:
    """``found``: photo file name -> a face was found. Rates per race, gender, age band and
    race x gender (malformed names skipped)."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for name, ok in found.items():
        labels = utk_labels(name)
        if labels is None:
            continue
        age, gender, race = labels
        for key in (
            ("all", "all"),
            ("race", UTK_RACES[race]),
            ("gender", UTK_GENDERS[gender]),
            ("age", age_band(age)),
            ("race x gender", f"{UTK_RACES[race]} {UTK_GENDERS[gender]}"),
        ):
            counts[key][0] += 1
            counts[key][1] += int(ok)
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (attr, group), (n, k) in sorted(counts.items()):
        out[attr][group] = {"faces": n, "rate": k / n if n else 0.0}
    return dict(out)


def read_detections(path: Path) -> dict[str, list[dict[str, Any]]]:
    """An ``eval_detectors`` cache file (header line, then one image per line)."""
    out = {}
    for line in path.read_text().splitlines()[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "image" in rec and "faces" in rec:
            out[rec["image"]] = rec["faces"]
    return out
