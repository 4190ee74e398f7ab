"""Frames in Redis: encoded images (JPEG, or raw pixels) under keys with a TTL.

Jobs carry only the key; any worker on any machine can fetch the pixels. A key that has
expired returns ``None`` (the frame is then counted as dropped by the stage that needed
it, never silently lost).

Two formats, told apart by their first bytes (a reader takes either): JPEG, and raw BGR
pixels behind a 11-byte header (:data:`RAW_MAGIC`, height, width, channels). Raw frames
cost no encoding in the capture and no decoding in each stage that reads them (about 1
and 1.2 ms a 640x360 frame here), but are ~17 times larger: the capture writes them
(``capture.frame_format``) where every reader is on the same machine, i.e. when Redis is
reached over a unix socket (``auto``, what ``facepipe run`` does with its own Redis).
"""

from __future__ import annotations

import math
import struct
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
        raw: bool = False,
    ) -> None:
        self.conn = conn
        self.ttl_s = ttl_s
        self.jpeg_quality = jpeg_quality
        self.resize_width = resize_width
        self.raw = raw  # encode() stores raw pixels, not JPEG

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
        """A frame as stored: raw pixels (``raw``) or JPEG at ``jpeg_quality``."""
        if self.raw:
            return encode_raw(bgr)
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
        """The frame as stored (JPEG or raw bytes), or None when the key has expired."""
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


RAW_MAGIC = b"FPRAW\x01"
_RAW_HEAD = struct.Struct("<6sHHB")  # magic, height, width, channels


def encode_raw(bgr: np.ndarray) -> bytes:
    """A BGR ``uint8`` image as raw bytes behind the header :func:`decode_bgr` reads."""
    if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ValueError(f"a raw frame is BGR uint8 (h, w, 3), not {bgr.dtype} {bgr.shape}")
    h, w = bgr.shape[:2]
    return _RAW_HEAD.pack(RAW_MAGIC, h, w, 3) + np.ascontiguousarray(bgr).tobytes()


def _raw_view(data: bytes) -> np.ndarray | None:
    """A raw frame's pixels (read-only, no copy), None if ``data`` is not a raw frame."""
    if not data.startswith(RAW_MAGIC):
        return None
    if len(data) < _RAW_HEAD.size:
        raise ValueError("could not decode image bytes: truncated raw frame header")
    _, h, w, c = _RAW_HEAD.unpack_from(data)
    if c != 3 or len(data) != _RAW_HEAD.size + h * w * c:
        raise ValueError(f"could not decode image bytes: a raw frame of {h}x{w}x{c} "
                         f"is not {len(data) - _RAW_HEAD.size} bytes")  # fmt: skip
    return np.frombuffer(data, np.uint8, offset=_RAW_HEAD.size).reshape(h, w, c)


def _reduced_raw(view: np.ndarray, reduce: int) -> np.ndarray:
    h, w = view.shape[:2]
    size = (math.ceil(w / reduce), math.ceil(h / reduce))  # as libjpeg's: rounded up
    return cv2.resize(view, size, interpolation=cv2.INTER_AREA)


def decode_bgr(data: bytes, reduce: int = 1) -> np.ndarray:
    """Stored image bytes (JPEG, another format OpenCV reads, or a raw frame) -> BGR
    ``uint8``; ``reduce`` 2, 4 or 8 gives it at that fraction of its size, each side
    rounded up (a JPEG is decoded that small: libjpeg scales in the DCT, a fraction of
    the work; a raw frame is resized). Raises ``ValueError`` when the bytes do not
    decode."""
    if reduce not in _REDUCED:
        raise ValueError(f"reduce must be 1, 2, 4 or 8, not {reduce}")
    view = _raw_view(data)
    if view is not None:
        return view.copy() if reduce == 1 else _reduced_raw(view, reduce)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[reduce])
    if bgr is None:
        raise ValueError("could not decode image bytes")
    return bgr


def decode_rgb(data: bytes, reduce: int = 1) -> np.ndarray:
    """:func:`decode_bgr`, as RGB ``uint8``."""
    view = _raw_view(data) if reduce == 1 else None
    if view is not None:  # no copy first: the conversion makes the new array
        return cv2.cvtColor(view, cv2.COLOR_BGR2RGB)
    return cv2.cvtColor(decode_bgr(data, reduce), cv2.COLOR_BGR2RGB)
