"""Frames in Redis: encoded images (JPEG by default) under keys with a TTL.

Jobs carry only the key; any worker on any machine can fetch the pixels. A key that has
expired returns ``None`` (the frame is then counted as dropped by the stage that needed
it, never silently lost).
"""

from __future__ import annotations

import cv2
import numpy as np
import redis


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
        data = self.conn.get(key)
        if data is None:
            return None
        return decode_rgb(data)

    def get_many(self, keys: list[str]) -> list[np.ndarray | None]:
        """The frames of ``keys`` (one round trip), each as :meth:`get` gives it."""
        if not keys:
            return []
        return [None if d is None else decode_rgb(d) for d in self.conn.mget(keys)]

    def put_many(self, items: list[tuple[str, bytes]], pipeline: object = None) -> None:
        """Store encoded frames ``(key, bytes)`` (with ``pipeline``, when it is executed)."""
        pipe = self.conn.pipeline(transaction=False) if pipeline is None else pipeline
        for key, data in items:
            pipe.set(key, data, ex=self.ttl_s)
        if pipeline is None:
            pipe.execute()


def decode_rgb(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("could not decode image bytes")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
