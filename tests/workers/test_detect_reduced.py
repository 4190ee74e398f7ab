"""The detect stage decodes a frame no larger than the detector's network sees it.

A 1920x1080 frame for yunet (``max_side`` 480) is decoded at 1/4 (libjpeg's DCT
scaling) instead of in full and resized; the faces come back in the frame's pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from pipeline.detectors import installed, registry
from pipeline.evaluation import iou_matrix
from pipeline.frames import decode_rgb, reduced_factor


@pytest.mark.parametrize(
    ("scale", "factor"),
    [(1.0, 1), (0.75, 1), (0.5, 2), (0.3, 2), (0.25, 4), (0.2, 4), (0.125, 8), (0.05, 8)],
)
def test_the_largest_reduction_that_keeps_what_the_network_sees(scale, factor):
    assert reduced_factor(scale) == factor
    assert scale * factor <= 1.0  # never smaller than the network's input


def test_reduced_decoding_rounds_each_side_up():
    img = np.random.default_rng(0).integers(0, 255, (1081, 1921, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    assert decode_rgb(buf.tobytes()).shape == (1081, 1921, 3)
    assert decode_rgb(buf.tobytes(), 4).shape == (271, 481, 3)
    assert decode_rgb(buf.tobytes(), 8).shape == (136, 241, 3)
    with pytest.raises(ValueError, match="reduce"):
        decode_rgb(buf.tobytes(), 3)


@pytest.fixture(scope="module")
def frame_1080p() -> tuple[bytes, np.ndarray]:
    """The astronaut's face in a 1920x1080 frame (scaled 1.6x, at x 700, y 200)."""
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    face = cv2.resize(data.astronaut(), None, fx=1.6, fy=1.6)
    frame[200 : 200 + face.shape[0], 700 : 700 + face.shape[1]] = face[: 1080 - 200]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes(), frame


@pytest.mark.skipif(not installed("yunet"), reason="yuface wheel not installed here")
def test_yunet_finds_the_same_face_in_a_frame_decoded_at_a_quarter(frame_1080p):
    jpeg, _ = frame_1080p
    det = registry.create("yunet", {"max_side": 480})  # the pipeline's setting
    assert reduced_factor(det.input_scale(1920, 1080)) == 4
    frame = (1920, 1080)
    full = det.detect(decode_rgb(jpeg), 0, frame)
    quarter_img = decode_rgb(jpeg, 4)
    assert quarter_img.shape[:2] == (270, 480)
    quarter = det.detect(quarter_img, 0, frame)
    assert len(full) == len(quarter) == 1
    # in the frame's pixels (the face is ~180 px wide at x ~950), and the same box
    assert quarter[0].box[0] > 800 and quarter[0].box[2] > 120
    assert iou_matrix([full[0].box], [quarter[0].box])[0, 0] > 0.9
    lm_full, lm_quarter = np.array(full[0].landmarks), np.array(quarter[0].landmarks)
    assert np.abs(lm_full - lm_quarter).max() < 8  # px of 1920
    # min_size is in the frame's pixels
    assert det.detect(quarter_img, quarter[0].box[3] + 1, frame) == []
    assert len(det.detect(quarter_img, quarter[0].box[3] - 2, frame)) == 1
