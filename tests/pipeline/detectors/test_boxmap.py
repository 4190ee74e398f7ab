"""The box map from a detector's box + 5 landmarks to dlib HOG's framing (pure numpy)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.boxes import iou_xywh
from pipeline.detectors._boxmap import (
    N_FEATURES,
    SIZE_LIMITS,
    BoxMap,
    features,
    from_targets,
    ratio_map,
    targets,
)

# a frontal face's landmarks in units of its box (x, y of eyes, nose, mouth corners)
TEMPLATE = np.array([[0.32, 0.42], [0.68, 0.42], [0.5, 0.6], [0.36, 0.78], [0.64, 0.78]])


def synthetic_faces(n: int, seed: int = 0) -> tuple[list, list, list]:
    """Detector boxes (taller than wide, varied size/place/aspect), landmarks that move
    with a random head turn, and "dlib" boxes that follow the landmarks: a square whose
    centre sits between eyes and mouth and whose side is 1.1 x the eye-mouth span."""
    rng = np.random.default_rng(seed)
    boxes, marks, dlib = [], [], []
    for _ in range(n):
        h = rng.uniform(20, 300)
        w = h * rng.uniform(0.7, 0.9)
        x, y = rng.uniform(-20, 600, size=2)
        turn = rng.uniform(-0.1, 0.1)
        pts = TEMPLATE + [turn, 0] + rng.normal(0, 0.01, TEMPLATE.shape)
        pts = np.column_stack([x + pts[:, 0] * w, y + pts[:, 1] * h])
        eyes, mouth = pts[:2].mean(0), pts[3:].mean(0)
        side = 1.1 * float(np.linalg.norm(mouth - eyes)) + 0.5 * (pts[1, 0] - pts[0, 0])
        c = (eyes + mouth) / 2 + [0, 0.05 * h]
        boxes.append((x, y, w, h))
        marks.append(pts.tolist())
        dlib.append((c[0] - side / 2, c[1] - side / 2, side, side))
    return boxes, marks, dlib


def test_targets_and_from_targets_invert_each_other() -> None:
    box, ref = (10.0, 20.0, 80.0, 100.0), (15.0, 40.0, 70.0, 72.0)
    assert np.allclose(from_targets(box, targets(box, ref)), ref)


def test_features_do_not_depend_on_position_or_size() -> None:
    box = (10.0, 20.0, 80.0, 100.0)
    pts = [(30, 60), (70, 60), (50, 80), (35, 100), (65, 100)]
    moved = (110.0, 220.0, 160.0, 200.0)
    pts2 = [(110 + 2 * (px - 10), 220 + 2 * (py - 20)) for px, py in pts]
    assert features(box, pts).shape == (N_FEATURES,)
    assert np.allclose(features(box, pts), features(moved, pts2))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="landmarks"):
        features((0, 0, 10, 10), [(1, 1)] * 4)
    with pytest.raises(ValueError, match="area"):
        features((0, 0, 0, 10), [(1, 1)] * 5)
    with pytest.raises(ValueError, match="at least"):
        BoxMap.fit([(0, 0, 10, 10)], [[(1, 1)] * 5], [(0, 0, 10, 10)])
    with pytest.raises(ValueError, match="coef"):
        BoxMap(np.zeros((3, 4)), np.zeros(N_FEATURES))


def test_fit_learns_a_landmark_dependent_framing_on_held_out_faces() -> None:
    """The map is fitted on some faces and applied to others: mapped boxes overlap the
    reference boxes much better than the raw boxes do, and better than the box-only
    median ratio map (the reference framing follows the landmarks, not the box)."""
    boxes, marks, dlib = synthetic_faces(400, seed=1)
    m = BoxMap.fit(boxes[:300], marks[:300], dlib[:300])
    ratio = ratio_map(boxes[:300], dlib[:300])
    test = range(300, 400)
    raw = np.mean([iou_xywh(boxes[i], dlib[i]) for i in test])
    by_ratio = np.mean([iou_xywh(from_targets(boxes[i], ratio), dlib[i]) for i in test])
    mapped = np.mean([iou_xywh(m.apply(boxes[i], marks[i]), dlib[i]) for i in test])
    assert mapped > 0.9, (raw, by_ratio, mapped)
    assert mapped > by_ratio + 0.02 and mapped > raw + 0.1, (raw, by_ratio, mapped)


def test_without_landmarks_the_mean_face_is_used() -> None:
    boxes, marks, dlib = synthetic_faces(300, seed=2)
    m = BoxMap.fit(boxes, marks, dlib)
    ious = [iou_xywh(m.apply(b, None), d) for b, d in zip(boxes, dlib, strict=True)]
    assert np.mean(ious) > 0.8
    assert m.apply(boxes[0], [(1.0, 2.0)]) == m.apply(boxes[0], None)  # not 5 points


def test_sizes_are_kept_within_limits() -> None:
    """Absurd landmarks (all in one point far away) cannot make an absurd box."""
    boxes, marks, dlib = synthetic_faces(300, seed=3)
    m = BoxMap.fit(boxes, marks, dlib)
    box = (100.0, 100.0, 80.0, 100.0)
    _, _, w, h = m.apply(box, [(5000.0, -5000.0)] * 5)
    lo, hi = SIZE_LIMITS
    assert lo * 100 - 1e-6 <= w <= hi * 100 + 1e-6
    assert lo * 100 - 1e-6 <= h <= hi * 100 + 1e-6
    assert m.apply((5.0, 5.0, 0.0, 10.0), None) == (5.0, 5.0, 0.0, 10.0)  # no area: as given


def test_save_and_load_round_trip(tmp_path) -> None:  # noqa: ANN001
    boxes, marks, dlib = synthetic_faces(100, seed=4)
    m = BoxMap.fit(boxes, marks, dlib, source={"sources": ["synthetic"]})
    path = tmp_path / "map.json"
    m.save(path)
    data = json.loads(path.read_text())
    assert data["targets"] == ["centre_x", "centre_y", "width", "height"]
    back = BoxMap.load(path)
    assert back.source == {"sources": ["synthetic"]}
    assert np.allclose(back.apply(boxes[0], marks[0]), m.apply(boxes[0], marks[0]), atol=1e-3)
