"""Detection AP (pipeline.evaluation.detection) on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation import average_precision, evaluate_detections, iou_matrix, match_image
from pipeline.evaluation.detection import FP, IGNORED, TP


def face(box, invalid=0):
    return {"box": list(box), "invalid": invalid}


def det(box, score):
    return {"box": list(box), "score": score}


def test_iou_matrix_matches_hand_computation():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 0, 0]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0, 0.0]])


def test_perfect_detections_give_ap_one():
    ann = [
        {"image": "a", "faces": [face((10, 10, 40, 40)), face((100, 10, 40, 40))]},
        {"image": "b", "faces": [face((0, 0, 50, 60))]},
    ]
    dets = {
        "a": [det((10, 10, 40, 40), 0.9), det((101, 11, 40, 40), 0.8)],
        "b": [det((0, 0, 50, 60), 0.7)],
    }
    r = evaluate_detections(ann, dets)
    assert r.ap == pytest.approx(1.0)
    assert (r.true_positives, r.false_positives, r.n_positives) == (3, 0, 3)


def test_false_positive_ranked_above_the_only_true_positive_halves_ap():
    ann = [{"image": "a", "faces": [face((10, 10, 40, 40))]}]
    fp_first = {"a": [det((200, 200, 40, 40), 0.9), det((10, 10, 40, 40), 0.5)]}
    fp_last = {"a": [det((200, 200, 40, 40), 0.1), det((10, 10, 40, 40), 0.5)]}
    assert evaluate_detections(ann, fp_first).ap == pytest.approx(0.5)
    # a false positive scored below every true positive costs nothing
    assert evaluate_detections(ann, fp_last).ap == pytest.approx(1.0)


def test_missed_face_caps_ap_at_recall():
    ann = [{"image": "a", "faces": [face((10, 10, 40, 40)), face((100, 100, 40, 40))]}]
    r = evaluate_detections(ann, {"a": [det((10, 10, 40, 40), 0.9)]})
    assert r.ap == pytest.approx(0.5)
    assert r.recall == pytest.approx(0.5)


def test_known_mixed_case():
    # ranks: TP, FP, TP with 3 faces -> precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3;
    # interpolated AP = 1/3 * 1 + 1/3 * 2/3 = 5/9
    ann = [
        {
            "image": "a",
            "faces": [face((0, 0, 20, 20)), face((50, 0, 20, 20)), face((100, 0, 20, 20))],
        }
    ]
    dets = {
        "a": [det((0, 0, 20, 20), 0.9), det((300, 300, 20, 20), 0.8), det((50, 0, 20, 20), 0.7)]
    }
    assert evaluate_detections(ann, dets).ap == pytest.approx(5 / 9)


def test_duplicate_detection_of_one_face_is_a_false_positive():
    labels = match_image(
        np.array([[0, 0, 20, 20], [1, 1, 20, 20]]),
        np.array([0.9, 0.8]),
        np.array([[0, 0, 20, 20]]),
        np.array([False]),
    )
    assert labels.tolist() == [TP, FP]


def test_low_iou_is_not_a_match():
    labels = match_image(
        np.array([[10, 0, 20, 20]]), np.array([0.9]), np.array([[0, 0, 20, 20]]), np.array([False])
    )
    assert labels.tolist() == [FP]  # IoU = 200 / 600 < 0.5


def test_detections_on_ignore_regions_count_neither_way():
    ann = [{"image": "a", "faces": [face((0, 0, 40, 40)), face((100, 0, 40, 40), invalid=1)]}]
    dets = {
        "a": [det((100, 0, 40, 40), 0.99), det((102, 0, 40, 40), 0.98), det((0, 0, 40, 40), 0.5)]
    }
    r = evaluate_detections(ann, dets)
    assert r.ap == pytest.approx(1.0)
    assert (r.n_positives, r.ignored, r.false_positives) == (1, 2, 0)
    # without the invalid flag the same detections hurt: one TP above, one duplicate FP
    ann[0]["faces"][1]["invalid"] = 0
    r = evaluate_detections(ann, dets)
    assert r.n_positives == 2 and r.false_positives == 1
    assert r.ap == pytest.approx(1.0 * 0.5 + (2 / 3) * 0.5)


def test_min_height_turns_small_faces_into_ignore_regions():
    ann = [{"image": "a", "faces": [face((0, 0, 40, 40)), face((100, 0, 20, 20))]}]
    dets = {"a": [det((100, 0, 20, 20), 0.9), det((0, 0, 40, 40), 0.5)]}
    r_all = evaluate_detections(ann, dets)
    assert r_all.ap == pytest.approx(1.0) and r_all.n_positives == 2
    # a missed small face costs AP over all faces but not in the >= 32 px setting
    miss_small = {"a": [det((0, 0, 40, 40), 0.5)]}
    assert evaluate_detections(ann, miss_small).ap == pytest.approx(0.5)
    r32 = evaluate_detections(ann, miss_small, min_height=32)
    assert r32.ap == pytest.approx(1.0) and r32.n_positives == 1
    # ... and a detection on it, even ranked first, is not a false positive there
    r32 = evaluate_detections(ann, dets, min_height=32)
    assert r32.ap == pytest.approx(1.0) and r32.ignored == 1
    assert r32.false_positives == 0


def test_valid_face_preferred_over_overlapping_ignore_region():
    labels = match_image(
        np.array([[0, 0, 40, 40]]),
        np.array([1.0]),
        np.array([[0, 0, 40, 40], [2, 0, 40, 40]]),
        np.array([True, False]),
    )
    assert labels.tolist() == [TP]


def test_no_detections_and_no_faces():
    ann = [{"image": "a", "faces": [face((0, 0, 40, 40))]}, {"image": "b", "faces": []}]
    assert evaluate_detections(ann, {"a": [], "b": []}).ap == 0.0
    r = evaluate_detections([{"image": "b", "faces": []}], {"b": [det((0, 0, 9, 9), 0.3)]})
    assert r.ap == 0.0 and r.false_positives == 1
    assert average_precision(np.array([0.5]), np.array([IGNORED]), 1) == 0.0


def test_missing_image_in_detections_is_an_error():
    with pytest.raises(KeyError, match="b"):
        evaluate_detections([{"image": "b", "faces": []}], {})
