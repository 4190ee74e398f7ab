"""Tests of the from-scratch CNN face detector: geometry, crops, nets, shipped model (its
training: tests/training/cnn_detector/)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.cnn_detector.boxes import (
    decode,
    decode_score_map,
    encode,
    iou_matrix,
    nms,
    pyramid_scales,
    square_around,
    window_boxes,
)
from pipeline.cnn_detector.crops import augment, crop_window, flip_offsets
from pipeline.cnn_detector.inference import DEFAULT_MODEL_DIR
from pipeline.cnn_detector.model import PROPOSAL, REFINE, weights_name


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return float(iou_matrix(np.array([a]), np.array([b]))[0, 0])


# --- box geometry -------------------------------------------------------------------


def test_iou_matrix_matches_hand_computed_values() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_encode_decode_round_trip() -> None:
    rng = np.random.default_rng(0)
    windows = np.column_stack(
        [rng.uniform(0, 100, 20), rng.uniform(0, 100, 20), rng.uniform(10, 80, 20)]
    )
    gt = window_boxes(windows) + rng.normal(0, 5, (20, 4))
    t = encode(windows, gt)
    np.testing.assert_allclose(decode(windows, t), gt, atol=1e-3)
    # a window exactly on a square face has zero offsets
    assert np.abs(encode(np.array([[3, 4, 20]]), np.array([[3, 4, 23, 24]]))).max() < 1e-6


def test_square_around_is_centred_with_mean_side() -> None:
    x, y, s = square_around(np.array([[10, 20, 30, 60]]))[0]
    assert s == pytest.approx(30.0)
    assert (x + s / 2, y + s / 2) == pytest.approx((20.0, 40.0))


def test_nms_keeps_best_of_overlapping_and_separate_boxes() -> None:
    boxes = np.array(
        [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5], [51, 50, 61, 60]]
    )
    scores = np.array([0.9, 0.95, 0.5, 0.1, 0.7])
    keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == [1, 4]
    # with a permissive threshold nothing that overlaps only partly is dropped
    assert sorted(nms(boxes, scores, 0.99).tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        nms(boxes, scores[:2], 0.5)


def test_decode_score_map_places_windows_at_stride_and_scale() -> None:
    probs = np.zeros((5, 7))
    probs[1, 2] = 0.9
    probs[4, 6] = 0.8
    probs[3, 3] = 0.2  # below threshold
    offsets = np.zeros((5, 7, 4))
    offsets[4, 6] = [0.1, 0.0, -0.1, 0.25]
    boxes, scores = decode_score_map(probs, offsets, scale=0.5, window=32, stride=8, threshold=0.5)
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    assert scores.tolist() == pytest.approx([0.9, 0.8])
    # cell (1, 2) at scale 0.5: top-left (16, 8) * 2, side 64
    np.testing.assert_allclose(boxes[0], [32, 16, 96, 80])
    # cell (4, 6): window (96, 64, 64) * 2 with offsets in units of the window side
    np.testing.assert_allclose(boxes[1], [96 + 6.4, 64, 160 - 6.4, 128 + 16])
    with pytest.raises(ValueError):
        decode_score_map(probs, offsets[:, :3], 1.0, 32, 8, 0.5)


def test_pyramid_scales_cover_min_face_up_to_image_size() -> None:
    scales = pyramid_scales(360, 640, window=32, min_face=24, factor=0.75)
    assert scales[0] == pytest.approx(32 / 24)
    assert all(b / a == pytest.approx(0.75) for a, b in zip(scales, scales[1:], strict=False))
    assert 360 * scales[-1] >= 32 > 360 * scales[-1] * 0.75
    capped = pyramid_scales(360, 640, window=32, min_face=24, factor=0.75, max_face=100)
    assert 32 / capped[-1] >= 100 > 32 / capped[-2]
    with pytest.raises(ValueError):
        pyramid_scales(100, 100, 32, 0, 0.7)


# --- crops ---------------------------------------------------------------------------


def test_crop_window_inside_equals_resized_slice_and_pads_outside() -> None:
    img = np.arange(40 * 40 * 3, dtype=np.uint8).reshape(40, 40, 3)
    np.testing.assert_array_equal(crop_window(img, 4, 6, 16, 16), img[6:22, 4:20])
    out = crop_window(img, -8, -8, 16, 16)  # top-left quarter comes from edge padding
    np.testing.assert_array_equal(out[:8, :8], np.broadcast_to(img[0, 0], (8, 8, 3)))
    np.testing.assert_array_equal(out[8:, 8:], img[:8, :8])
    with pytest.raises(ValueError):
        crop_window(img, 0, 0, 0, 16)


def test_flip_offsets_match_a_flipped_image() -> None:
    window = np.array([[10.0, 10.0, 40.0]])
    gt = np.array([[14.0, 12.0, 44.0, 50.0]])
    width = 100
    flipped_window = np.array([[width - 10.0 - 40.0, 10.0, 40.0]])
    flipped_gt = np.array([[width - 44.0, 12.0, width - 14.0, 50.0]])
    np.testing.assert_allclose(
        flip_offsets(encode(window, gt)), encode(flipped_window, flipped_gt), atol=1e-6
    )


def test_augment_keeps_shapes_and_flips_offsets_with_pixels() -> None:
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (64, 32, 32, 3)).astype(np.uint8)
    t = rng.normal(0, 0.1, (64, 4)).astype(np.float32)
    out, t2 = augment(crops, t, rng)
    assert out.shape == crops.shape and out.dtype == np.uint8
    changed = ~np.isclose(t2, t).all(axis=1)
    np.testing.assert_allclose(t2[changed], flip_offsets(t[changed]), atol=1e-6)
    assert 10 < changed.sum() < 54  # about half are flipped


# --- networks ------------------------------------------------------------------------


def test_nets_output_shapes() -> None:
    from pipeline.cnn_detector.model import build

    prop = build(PROPOSAL)
    assert prop(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 1, 1, 5)
    assert prop(np.zeros((1, 72, 88, 3), np.float32)).shape == (1, 6, 8, 5)
    ref = build(REFINE)
    assert ref(np.zeros((3, 48, 48, 3), np.float32)).shape == (3, 5)
    with pytest.raises(ValueError):
        build("nope")


def test_proposal_net_is_a_sliding_window_classifier() -> None:
    """Output cell (i, j) over an image equals the net applied to the window at (8j, 8i)."""
    from pipeline.cnn_detector.model import build

    net = build(PROPOSAL)
    img = np.random.default_rng(4).uniform(0, 255, (1, 64, 80, 3)).astype(np.float32)
    full = net(img, training=False).numpy()
    for i, j in [(0, 0), (2, 3), (4, 6)]:
        crop = img[:, 8 * i : 8 * i + 32, 8 * j : 8 * j + 32]
        np.testing.assert_allclose(
            full[0, i, j], net(crop, training=False).numpy()[0, 0, 0], atol=1e-4
        )


# --- the shipped model and the backend ------------------------------------------------

shipped = pytest.mark.skipif(
    not (DEFAULT_MODEL_DIR / weights_name(REFINE)).exists(), reason="no shipped CNN weights"
)


@pytest.fixture(scope="module")
def detector():
    """The ``cnn`` backend with the shipped weights, created once through the registry."""
    return _registry().create("cnn")


@shipped
def test_backend_finds_the_astronaut_face(detector) -> None:
    import skimage.data

    from pipeline.detectors import base

    assert isinstance(detector, base.Detector)
    faces = detector.detect(skimage.data.astronaut())
    assert faces, "no face found"
    best = max(faces, key=lambda f: f.score)
    assert iou(best.xyxy(), (160, 60, 270, 190)) >= 0.3, best
    assert 0.0 <= best.score <= 1.0


@shipped
def test_backend_finds_faces_at_two_scales_and_respects_min_size(detector) -> None:
    import cv2
    import skimage.data

    det = detector
    face = skimage.data.astronaut()[40:220, 140:290]  # 150 x 180 around the face
    canvas = np.full((400, 640, 3), 90, np.uint8)
    canvas[20:200, 40:190] = face
    small = cv2.resize(face, (75, 90), interpolation=cv2.INTER_AREA)
    canvas[250:340, 420:495] = small
    faces = det.detect(canvas)
    truths = [(40 + 20, 20 + 20, 40 + 130, 20 + 150), (420 + 10, 250 + 10, 420 + 65, 250 + 75)]
    for truth in truths:
        assert max((iou(f.xyxy(), truth) for f in faces), default=0) >= 0.3, (truth, faces)
    big_only = det.detect(canvas, min_size=110)
    assert all(f.box[3] >= 110 for f in big_only)
    assert max((iou(f.xyxy(), truths[0]) for f in big_only), default=0) >= 0.3


@shipped
def test_backend_rejects_bad_input_and_bad_options(detector) -> None:
    from pipeline.registry import BackendError

    det = detector
    with pytest.raises(ValueError):
        det.detect(np.zeros((64, 64), np.uint8))
    assert det.detect(np.zeros((20, 20, 3), np.uint8)) == []  # smaller than any window
    with pytest.raises(BackendError, match="score_treshold"):
        _registry().create("cnn", {"score_treshold": 0.3})


def _registry():
    from pipeline.detectors import registry

    return registry
