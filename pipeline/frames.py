"""Frames in Redis: encoded images (JPEG by default) under keys with a TTL.

Jobs carry only the key; any worker on any machine can fetch the pixels. A key that has
expired returns ``None`` (the frame is then counted as dropped by the stage that needed
it, never silently lost).
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import redis

ChannelOrder = Literal["rgb", "bgr"]


class FrameStore:
    def __init__(
        self,
        conn: redis.Redis,
        ttl_s: int = 300,
        jpeg_quality: int = 90,
        resize_width: int | None = None,
    ) -> None:
        self.conn = conn
        self.ttl_s = ttl_s
        self.jpeg_quality = jpeg_quality
        self.resize_width = resize_width

    def needs_resize(self, width: int) -> bool:
        """Whether :meth:`prepare` downscales a frame ``width`` pixels wide."""
        return bool(self.resize_width and width > self.resize_width)

    def prepare(self, bgr: np.ndarray) -> np.ndarray:
        """Downscale to ``resize_width`` when the frame is wider."""
        if self.resize_width and bgr.shape[1] > self.resize_width:
            h = round(bgr.shape[0] * self.resize_width / bgr.shape[1])
            bgr = cv2.resize(bgr, (self.resize_width, h), interpolation=cv2.INTER_AREA)
        return bgr

    def encode(self, bgr: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ValueError("could not JPEG-encode frame")
        return buf.tobytes()

    def put(self, key: str, bgr: np.ndarray) -> None:
        self.conn.set(key, self.encode(bgr), ex=self.ttl_s)

    def get(self, key: str) -> np.ndarray | None:
        """The frame as an RGB ``uint8`` array, or None when the key has expired."""
        data = self.get_encoded(key)
        return None if data is None else decode_rgb(data)

    def get_encoded(self, key: str) -> bytes | None:
        """The frame as stored (JPEG bytes), or None when the key has expired."""
        data: bytes | None = self.conn.get(key)
        return data

    def get_many(
        self, keys: list[str], reduce: list[int] | None = None, order: ChannelOrder = "rgb"
    ) -> list[np.ndarray | None]:
        """The frames of ``keys`` (one round trip), each as :meth:`get` gives it, or
        decoded at 1/``reduce[i]`` of its size (see :func:`decode_rgb`); ``order="bgr"``:
        in the channel order OpenCV decodes to (a consumer that wants BGR saves a
        conversion there and one back)."""
        if order not in ("rgb", "bgr"):
            raise ValueError(f"order must be 'rgb' or 'bgr', not {order!r}")
        if not keys:
            return []
        factors = reduce or [1] * len(keys)
        decode = decode_rgb if order == "rgb" else decode_bgr
        return [
            None if d is None else decode(d, f)
            for d, f in zip(self.conn.mget(keys), factors, strict=True)
        ]

    def put_many(self, items: list[tuple[str, bytes]], pipeline: object = None) -> None:
        """Store encoded frames ``(key, bytes)`` (with ``pipeline``, when it is executed)."""
        pipe = self.conn.pipeline(transaction=False) if pipeline is None else pipeline
        for key, data in items:
            pipe.set(key, data, ex=self.ttl_s)
        if pipeline is None:
            pipe.execute()


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2,
            4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}  # fmt: skip


def reduced_factor(scale: float) -> int:
    """The largest JPEG decoding reduction (1, 2, 4 or 8) that still gives at least
    ``scale`` times the image's size: a detector that resizes frames by ``scale`` before
    its network (:meth:`pipeline.detectors.base.Detector.input_scale`) sees the same
    input from a frame decoded that much smaller."""
    for factor in (8, 4, 2):
        if scale * factor <= 1.0 + 1e-9:
            return factor
    return 1


def is_jpeg(data: bytes) -> bool:
    """Whether ``data`` starts as a JPEG does (the start-of-image marker)."""
    return data[:2] == b"\xff\xd8"


def decode_bgr(data: bytes, reduce: int = 1) -> np.ndarray:
    """Encoded image bytes -> BGR ``uint8``; ``reduce`` 2, 4 or 8 decodes a JPEG at that
    fraction of its size (libjpeg scales in the DCT: a fraction of the work), each side
    rounded up. Raises ``ValueError`` when the bytes do not decode."""
    if reduce not in _REDUCED:
        raise ValueError(f"reduce must be 1, 2, 4 or 8, not {reduce}")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[reduce])
    if bgr is None:
        raise ValueError("could not decode image bytes")
    return bgr


def decode_rgb(data: bytes, reduce: int = 1) -> np.ndarray:
    """:func:`decode_bgr`, as RGB ``uint8``."""
    return cv2.cvtColor(decode_bgr(data, reduce), cv2.COLOR_BGR2RGB)
