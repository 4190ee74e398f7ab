"""Frames in Redis: stored once, read back in one trip, in the channel order asked for
(pipeline/frames.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from pipeline.bus import connect
from pipeline.frames import RAW_MAGIC, FrameStore, decode_bgr, decode_rgb, encode_raw


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


def test_raw_frames_come_back_exact_and_reduced_as_a_jpeg_would(redis_url, bgr):
    conn = connect(redis_url)
    store = FrameStore(conn, raw=True)
    odd = np.ascontiguousarray(bgr[:361, :483])  # odd sides: reductions round up
    store.put("f:raw", odd)
    stored = conn.get("f:raw")
    assert stored[:6] == RAW_MAGIC and len(stored) == 11 + odd.size  # no JPEG, no loss
    (same,) = store.get_many(["f:raw"], order="bgr")
    assert np.array_equal(same, odd) and same.flags.writeable  # a copy, not Redis's bytes
    assert np.array_equal(store.get("f:raw"), odd[..., ::-1])
    jpeg = FrameStore(conn)
    jpeg.put("f:jpeg", odd)
    for factor in (2, 4, 8):  # the same sizes as libjpeg's reduced decoding gives
        (r,), (j,) = store.get_many(["f:raw"], [factor]), jpeg.get_many(["f:jpeg"], [factor])
        assert r.shape == j.shape
        assert np.corrcoef(r.ravel(), j.ravel())[0, 1] > 0.9  # the same picture (another: ~0)


def test_truncated_or_inconsistent_raw_frames_are_refused(bgr):
    data_ = encode_raw(np.ascontiguousarray(bgr[:10, :10]))
    for bad in (data_[:8], data_[:-1], data_ + b"x"):
        with pytest.raises(ValueError, match="could not decode"):
            decode_bgr(bad)
        with pytest.raises(ValueError, match="could not decode"):
            decode_rgb(bad, 2)
    with pytest.raises(ValueError, match="BGR uint8"):
        encode_raw(bgr[..., 0])


def test_the_frame_format_follows_the_config_and_the_connection(redis_url):
    """auto: raw over a unix socket (every reader is on this machine), JPEG over TCP."""
    from pipeline.config import load_config
    from pipeline.runtime import frame_store

    unix = connect(redis_url)
    assert redis_url.startswith("unix:")
    tcp = connect("redis://127.0.0.1:1/0")  # never connected: only its kind matters

    def raw(conn, fmt: str | None) -> bool:
        env = {} if fmt is None else {"FACEPIPE__CAPTURE__FRAME_FORMAT": fmt}
        return frame_store(conn, load_config(None, environ=env)).raw

    assert raw(unix, None) and not raw(tcp, None)  # auto, the default
    assert not raw(unix, "jpeg") and raw(tcp, "raw")
    with pytest.raises(ValueError, match="frame_format"):
        load_config(None, environ={"FACEPIPE__CAPTURE__FRAME_FORMAT": "png"})
