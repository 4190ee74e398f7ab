"""Frames in Redis: stored once, read back in one trip, in the channel order asked for
(pipeline/frames.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from pipeline.bus import connect
from pipeline.frames import FrameStore, decode_bgr, decode_rgb


@pytest.fixture(scope="module")
def bgr() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)  # 512 x 512


def test_frames_come_back_in_one_trip_in_either_channel_order(redis_url, bgr):
    conn = connect(redis_url)
    store = FrameStore(conn)
    store.put("f:a", bgr)
    assert 0 < conn.ttl("f:a") <= store.ttl_s
    assert conn.get("f:a")[:2] == b"\xff\xd8"  # a JPEG
    rgb, gone = store.get_many(["f:a", "f:gone"])
    assert gone is None
    assert np.abs(rgb.astype(int) - bgr[..., ::-1]).mean() < 3
    as_bgr, half = store.get_many(["f:a", "f:a"], [1, 2], order="bgr")
    assert np.array_equal(as_bgr, rgb[..., ::-1])  # the same decoding, channels not swapped
    assert half.shape == (256, 256, 3)
    assert np.abs(half.astype(int) - cv2.resize(bgr, (256, 256))).mean() < 4
    with pytest.raises(ValueError, match="order"):
        store.get_many(["f:a"], order="rbg")  # type: ignore[arg-type]


def test_garbage_is_refused():
    with pytest.raises(ValueError, match="could not decode"):
        decode_bgr(b"not an image at all")
    with pytest.raises(ValueError, match="could not decode"):
        decode_rgb(b"\xff\xd8\xff")
