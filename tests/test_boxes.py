"""pipeline.boxes: conversions, IoU in both conventions and NMS, against hand-computed
values."""

import numpy as np
import pytest

from pipeline.boxes import (
    iou_matrix_xywh,
    iou_matrix_xyxy,
    iou_xywh,
    nms,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def test_conversions_round_trip():
    xywh = np.array([[10, 20, 30, 40], [0, 0, 5, 5]])
    xyxy = xywh_to_xyxy(xywh)
    np.testing.assert_array_equal(xyxy, [[10, 20, 40, 60], [0, 0, 5, 5]])
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), xywh)
    assert xywh_to_xyxy((1, 2, 3, 4)).shape == (1, 4)  # one box is a (1, 4) array
    assert xywh_to_xyxy([]).shape == (0, 4)


def test_iou_of_a_pair_by_hand():
    assert iou_xywh((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    # half overlap side by side: intersection 5x10 = 50, union 100 + 100 - 50 = 150
    assert iou_xywh((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    # corner overlap: 2x3 = 6 of 4x4 and 4x5 boxes: union 16 + 20 - 6 = 30
    assert iou_xywh((0, 0, 4, 4), (2, 1, 4, 5)) == pytest.approx(6 / 30)
    # a box inside another: 4 / 100
    assert iou_xywh((0, 0, 10, 10), (3, 3, 2, 2)) == pytest.approx(0.04)
    assert iou_xywh((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0  # touching edges
    assert iou_xywh((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert iou_xywh((3, 3, 0, 0), (3, 3, 0, 0)) == 0.0  # no area, no overlap


def test_iou_matrices_agree_across_conventions():
    a = [(0, 0, 10, 10), (5, 5, 10, 10)]
    b = [(0, 0, 10, 10), (5, 0, 10, 10), (100, 100, 1, 1)]
    m = iou_matrix_xywh(a, b)
    # (5,5,10,10) vs (0,0,10,10): 5x5 = 25, union 175; vs (5,0,10,10): 10x5 = 50, union 150
    np.testing.assert_allclose(m, [[1.0, 50 / 150, 0.0], [25 / 175, 50 / 150, 0.0]])
    np.testing.assert_allclose(iou_matrix_xyxy(xywh_to_xyxy(a), xywh_to_xyxy(b)), m)
    np.testing.assert_allclose(m.T, iou_matrix_xywh(b, a))
    assert iou_matrix_xywh([], b).shape == (0, 3)
    assert iou_matrix_xyxy(a, np.zeros((0, 4))).shape == (2, 0)


def test_nms_keeps_the_best_of_each_overlapping_group():
    boxes = np.array([
        [0, 0, 10, 10],    # 0: score 0.6, overlaps 1 by 81/119 > 0.5 -> dropped by 1
        [1, 1, 11, 11],    # 1: the best
        [20, 20, 30, 30],  # 2: alone
        [0, 0, 10, 5],     # 3: inside 0; vs 1: 9x4 = 36 / (100 + 50 - 36) = 0.316 -> kept
        [20, 20, 30, 29],  # 4: vs 2: 90 / 100 = 0.9 -> dropped
    ], dtype=float)  # fmt: skip
    scores = np.array([0.6, 0.9, 0.8, 0.5, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores, 0.95).tolist() == [1, 2, 4, 0, 3]
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    with pytest.raises(ValueError, match="5 boxes but 2 scores"):
        nms(boxes, scores[:2], 0.5)
