"""Pyramid, window grouping, suppression and reported-box geometry."""

import numpy as np

from pipeline.vj.scan import face_boxes, group_windows, pyramid, suppress


def test_pyramid_covers_the_requested_sizes() -> None:
    img = np.zeros((120, 200), np.uint8)
    levels = list(pyramid(img, 24, 1.25, 24, float("inf")))
    assert levels[0].image.shape == (120, 200)
    sizes = [24 * lv.sx for lv in levels]
    assert sizes == sorted(sizes) and max(sizes) <= 120
    assert all(lv.image.shape[0] >= 24 for lv in levels)
    assert np.allclose(np.diff(np.log(sizes)), np.log(1.25), atol=0.02)
    big = list(pyramid(img, 24, 1.25, 60, 90))
    assert all(60 - 1 <= 24 * lv.sx <= 90 + 1 for lv in big)


def test_group_windows_merges_neighbours_and_drops_lonely_windows() -> None:
    boxes = np.array(
        [[100, 100, 50, 50], [102, 101, 50, 50], [98, 99, 52, 52], [300, 40, 30, 30]], float
    )
    margins = np.array([0.1, 0.5, 0.2, 0.9])
    merged, scores = group_windows(boxes, margins, min_neighbors=1)
    assert len(merged) == 1
    np.testing.assert_allclose(merged[0], boxes[:3].mean(axis=0))
    assert 3 <= scores[0] < 4 and scores[0] == 3.5  # 3 windows + best margin
    merged0, scores0 = group_windows(boxes, margins, min_neighbors=0)
    assert len(merged0) == 2 and sorted(scores0) == [1.9, 3.5]
    assert len(group_windows(np.zeros((0, 4)), np.zeros(0), 2)[0]) == 0


def test_suppress_removes_overlapping_and_nested_boxes() -> None:
    boxes = np.array(
        [[0, 0, 100, 100], [10, 10, 100, 100], [20, 20, 30, 30], [300, 300, 50, 50]], float
    )
    kept, scores = suppress(boxes, np.array([5.0, 4.0, 3.0, 1.0]))
    np.testing.assert_array_equal(kept, boxes[[0, 3]])
    np.testing.assert_array_equal(scores, [5.0, 1.0])


def test_face_boxes_apply_the_cascade_geometry() -> None:
    out = face_boxes(np.array([[100.0, 200.0, 50.0, 50.0]]), {"scale": 1.2, "dx": 0.0, "dy": -0.1})
    # centre (125, 225) moves up 5 px, side 60
    np.testing.assert_allclose(out, [[95.0, 190.0, 60.0, 60.0]])
