"""Per-group detection figures of the detector model cards (pipeline.evaluation.detector_groups)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation import detector_groups as dg


def test_found_faces_matches_greedily_once_per_face() -> None:
    gt = np.array([[0, 0, 40, 40], [100, 0, 40, 40], [200, 0, 40, 40]], dtype=float)
    valid = np.array([True, True, False])
    dets = np.array([[2, 2, 40, 40], [1, 1, 40, 40], [200, 0, 40, 40], [300, 0, 40, 40]], float)
    scores = np.array([0.9, 0.8, 0.95, 0.7])
    hit = dg.found_faces(gt, dets, scores, valid)
    assert hit.tolist() == [True, False, False]  # two detections of face 0 find it once
    assert not dg.found_faces(gt, np.zeros((0, 4)), np.zeros(0), valid).any()


def test_wider_recall_by_group_counts_valid_faces_over_the_threshold() -> None:
    records = [
        {
            "image": "a.jpg",
            "faces": [
                {"box": [0, 0, 40, 40], "blur": 0, "occlusion": 0, "pose": 0},
                {"box": [100, 0, 40, 40], "blur": 2, "occlusion": 1, "pose": 1},
                {"box": [200, 0, 20, 20], "blur": 0},  # under 32 px: not counted
                {"box": [300, 0, 40, 40], "invalid": 1},  # invalid: not counted
            ],
        }
    ]
    dets = {
        "a.jpg": [{"box": [0, 0, 40, 40], "score": 0.9}, {"box": [100, 0, 40, 40], "score": 0.6}]
    }
    low = dg.wider_recall_by_group(records, dets, min_score=0.5)
    assert low["all"]["all"] == {"faces": 2, "recall": 1.0}
    high = dg.wider_recall_by_group(records, dets, min_score=0.75)
    assert high["all"]["all"]["recall"] == 0.5
    assert high["blur"]["clear"]["recall"] == 1.0 and high["blur"]["heavy blur"]["recall"] == 0.0
    assert high["pose"]["atypical pose"] == {"faces": 1, "recall": 0.0}


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("25_1_2_20170116174525125.jpg.chip.jpg", (25, 1, 2)),
        ("3_0_4_x.jpg.chip.jpg", (3, 0, 4)),
        ("39_1_20170116174525125.jpg.chip.jpg", None),  # a field missing
        ("a_b_c_d.jpg", None),
        ("30_5_0_x.jpg", None),  # no such gender
    ],
)
def test_utk_labels(name: str, labels: tuple | None) -> None:
    assert dg.utk_labels(name) == labels


def test_utk_detection_by_group() -> None:
    found = {
        "5_0_0_a.jpg": True,
        "25_1_1_b.jpg": False,
        "70_1_1_c.jpg": True,
        "bad.jpg": True,  # malformed: skipped
    }
    out = dg.utk_detection_by_group(found)
    assert out["all"]["all"] == {"faces": 3, "rate": pytest.approx(2 / 3)}
    assert out["race"]["black"]["rate"] == 0.5
    assert out["age"]["0-12"]["rate"] == 1.0 and out["age"]["60+"]["faces"] == 1
    assert out["race x gender"]["black female"]["faces"] == 2
