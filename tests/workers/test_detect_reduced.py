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
from pipeline.frames import decode_bgr, decode_rgb, reduced_factor


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



@pytest.mark.skipif(not installed("yunet"), reason="yuface wheel not installed here")
def test_yunet_takes_bgr_frames_as_they_are(frame_1080p):
    jpeg, rgb = frame_1080p
    det = registry.create("yunet", {"max_side": 480})
    assert det.channel_order == "bgr"
    frame = (1920, 1080)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    from_rgb = det.detect(rgb, 0, frame)
    assert len(from_rgb) == 1
    assert det.detect(bgr, 0, frame, order="bgr") == from_rgb  # the same input, unconverted
    # fed BGR as if it were RGB, the network sees swapped channels: not the same faces
    assert [f.box for f in det.detect(bgr, 0, frame)] != [f.box for f in from_rgb]
    quarter = det.detect(decode_bgr(jpeg, 4), 0, frame, order="bgr")
    assert quarter == det.detect(decode_rgb(jpeg, 4), 0, frame)
    with pytest.raises(ValueError, match="order"):
        det.detect(bgr, 0, frame, order="rbg")  # type: ignore[arg-type]


class _Spy:
    """A detector that records the image and the channel order the stage gave it."""

    def __init__(self, order: str) -> None:
        self.channel_order = order
        self.got: list[tuple[np.ndarray, str]] = []

    def input_scale(self, width: int, height: int) -> float:
        return 1.0

    def detect(self, image, min_size=0, frame_size=None, order="rgb"):  # noqa: ANN001, ANN201
        self.got.append((image, order))
        return []


@pytest.mark.parametrize("order", ["rgb", "bgr"])
def test_the_detect_stage_reads_frames_in_the_detectors_channel_order(redis_url, home, order):
    from pipeline.config import Config
    from pipeline.record import FrameBatch, FrameRecord
    from pipeline.runtime import Runtime
    from workers.detect import DetectStage

    rt = Runtime.from_config(Config(), redis_url)
    stage = DetectStage(rt)
    stage.detector = spy = _Spy(order)  # type: ignore[assignment]
    red = np.zeros((48, 64, 3), np.uint8)
    red[..., 2] = 255  # BGR: red
    rec = FrameRecord(stream="cam", session="s", seq=0, ts=0.0, key="f:0", width=64, height=48)
    rt.frames.put(rec.key, red)
    stage.process(FrameBatch([rec]))
    (image, given), = spy.got
    assert given == order
    red_channel = 0 if order == "rgb" else 2
    assert image[..., red_channel].min() > 240 and image[..., 2 - red_channel].max() < 15
