"""MJPEG over HTTP, read as it comes: each frame's JPEG bytes, never decoded here.

Most IP cameras (and ``pipeline/camera_server.py``) serve ``multipart/x-mixed-replace``:
a stream of JPEG images separated by a boundary line, each with its own small header.
OpenCV's FFmpeg backend decodes every one of them into pixels, and the capture then
encodes the frames it keeps into JPEG again for Redis. :class:`MjpegStream` instead
hands over each part's bytes as the camera sent them, so a frame costs no full decoding
and no encoding before Redis (``capture.mjpeg_passthrough``); the source's reader only
decodes a small preview of it, for the shot-cut detector and to refuse a JPEG whose data
does not decode (``pipeline/sources.py``).

Bytes the camera sends are checked before they go anywhere: :func:`jpeg_size` walks the
JPEG's header segments (start of image, each segment's length, a start-of-frame with the
picture's size, start of scan) without decoding the picture, so a part that is not a
JPEG, or whose header is damaged, is refused here (``MjpegStream.read`` raises
:class:`MjpegError`, the source treats the stream as broken and reconnects, as it does
when FFmpeg fails). A picture damaged after its header decodes with grey blocks, as
with FFmpeg.

A response that is not multipart (an MP4 or HLS URL, a camera's HTML page) raises
:class:`NotMjpeg` at :meth:`MjpegStream.open`: the source then reads the URL through
OpenCV/FFmpeg as before.
"""

from __future__ import annotations

import http.client
import socket
import urllib.parse
from typing import BinaryIO

# a part's header block and a boundary line are a few hundred bytes; refuse what is not
MAX_HEADER_LINE = 4096
MAX_HEADER_LINES = 32
# a part without Content-Length is read up to the next boundary, at most this much
DEFAULT_MAX_PART_BYTES = 64 * 1024 * 1024

# start-of-frame markers (baseline, extended, progressive, lossless; Huffman or arithmetic)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length


class MjpegError(ValueError):
    """The stream or one of its parts is not what an MJPEG camera sends."""


class NotMjpeg(MjpegError):
    """The URL answers, but not with a multipart stream (read it with FFmpeg instead)."""


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a JPEG's header, without decoding the picture.

    Raises :class:`MjpegError` when ``data`` is not a JPEG whose header segments are
    whole, with a start-of-frame of a non-empty picture before its start of scan."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise MjpegError("not a JPEG (no start-of-image marker)")
    i, size = 2, None
    while True:
        while i < n and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= n or data[i - 1] != 0xFF:
            raise MjpegError("JPEG header damaged (no marker where one must be)")
        marker = data[i]
        i += 1
        if marker in _STANDALONE:
            continue
        if marker == 0xD9:
            raise MjpegError("JPEG ends before its picture (end-of-image in the header)")
        if i + 2 > n:
            raise MjpegError("JPEG header cut short")
        length = (data[i] << 8) | data[i + 1]
        if length < 2 or i + length > n:
            raise MjpegError("JPEG header damaged (a segment runs past the data)")
        if marker in _SOF:
            if length < 8:
                raise MjpegError("JPEG start-of-frame segment too short")
            height = (data[i + 3] << 8) | data[i + 4]
            width = (data[i + 5] << 8) | data[i + 6]
            if not width or not height:
                raise MjpegError(f"JPEG of {width} x {height} pixels")
            size = (width, height)
        elif marker == 0xDA:  # start of scan: the picture's data follows
            if size is None:
                raise MjpegError("JPEG without a start-of-frame before its data")
            return size
        i += length


class MjpegStream:
    """One HTTP connection to an MJPEG camera; :meth:`read` gives each JPEG in turn.

    ``timeout_s`` bounds connecting and each wait for data (a camera that stops
    sending is ``socket.timeout``, an ``OSError``, like a dropped connection)."""

    def __init__(
        self, url: str, timeout_s: float = 10.0, max_part_bytes: int = DEFAULT_MAX_PART_BYTES
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.max_part_bytes = max_part_bytes
        self._conn: http.client.HTTPConnection | None = None
        self._body: _Body | None = None
        self._boundary = b""

    @classmethod
    def open(cls, url: str, timeout_s: float = 10.0) -> MjpegStream:
        stream = cls(url, timeout_s)
        stream.connect()
        return stream

    def connect(self) -> None:
        """Request the URL; raise :class:`NotMjpeg` if the answer is not multipart,
        ``OSError``/``http.client.HTTPException`` if there is no good answer."""
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https"):
            raise NotMjpeg(f"{parts.scheme}: is not HTTP")
        conn_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_class(parts.hostname or "", parts.port, timeout=self.timeout_s)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {"Accept": "multipart/x-mixed-replace, image/jpeg"}
        if parts.username is not None:
            import base64

            cred = f"{urllib.parse.unquote(parts.username)}:"
            cred += urllib.parse.unquote(parts.password or "")
            headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        ctype = resp.getheader("Content-Type", "") or ""
        kind, params = _content_type(ctype)
        if resp.status != 200 or kind != "multipart/x-mixed-replace" or not params.get("boundary"):
            conn.close()
            if resp.status != 200:
                raise OSError(f"HTTP {resp.status} {resp.reason}")
            raise NotMjpeg(f"Content-Type {ctype!r} is not multipart/x-mixed-replace")
        boundary = params["boundary"].encode("latin-1")
        self._boundary = boundary[2:] if boundary.startswith(b"--") else boundary
        self._conn, self._body = conn, _Body(resp)  # type: ignore[arg-type]

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._body = None

    def _line(self) -> bytes:
        assert self._body is not None
        line = self._body.readline(MAX_HEADER_LINE + 1)
        if not line:
            raise ConnectionError("the camera closed the stream")
        if len(line) > MAX_HEADER_LINE:
            raise MjpegError("a header line of the stream is too long")
        return line

    def read(self) -> bytes:
        """The next part's JPEG bytes (checked with :func:`jpeg_size`). Raises
        ``ConnectionError``/``OSError`` when the stream ends or stalls beyond
        ``timeout_s``, :class:`MjpegError` when its data is not MJPEG."""
        if self._body is None:
            raise ConnectionError("not connected")
        marker = b"--" + self._boundary
        for _ in range(MAX_HEADER_LINES):  # blank lines before the boundary
            line = self._line().strip()
            if line:
                break
        else:
            raise MjpegError("no boundary line where a part must start")
        if line == marker + b"--":
            raise ConnectionError("the camera ended the stream")
        if line != marker:
            raise MjpegError(f"expected the boundary, got {line[:60]!r}")
        length = None
        for _ in range(MAX_HEADER_LINES):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    raise MjpegError(f"bad Content-Length {value.strip()!r}") from None
                if not 0 < length <= self.max_part_bytes:
                    raise MjpegError(f"part of {length} bytes")
        else:
            raise MjpegError("a part's header does not end")
        data = self._exact(length) if length is not None else self._until(marker)
        jpeg_size(data)
        return data

    def _exact(self, length: int) -> bytes:
        assert self._body is not None
        data = self._body.read(length)
        if len(data) < length:
            raise ConnectionError("the stream ended inside a frame")
        return data

    def _until(self, marker: bytes) -> bytes:
        """A part without Content-Length: its bytes up to the next boundary line (which
        stays unread: it is pushed back as the next line)."""
        assert self._body is not None
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self._body.readline(64 * 1024)
            if not line:
                raise ConnectionError("the stream ended inside a frame")
            if line.startswith(marker) and line.rstrip(b"\r\n") in (marker, marker + b"--"):
                self._body.back = line
                break
            chunks.append(line)
            total += len(line)
            if total > self.max_part_bytes:
                raise MjpegError(f"part of more than {self.max_part_bytes} bytes")
        data = b"".join(chunks)
        # the CRLF before the boundary belongs to the boundary
        return data[:-2] if data.endswith(b"\r\n") else data.rstrip(b"\n")


class _Body:
    """The response body, with one line that can be pushed back (the boundary that ends
    a part without Content-Length is the next part's first line)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.back = b""

    def readline(self, limit: int) -> bytes:
        if self.back:
            line, self.back = self.back, b""
            return line
        return self.raw.readline(limit)

    def read(self, n: int) -> bytes:
        head, self.back = self.back[:n], self.back[n:]
        return head + self.raw.read(n - len(head)) if n > len(head) else head


def _content_type(value: str) -> tuple[str, dict[str, str]]:
    kind, *params = value.split(";")
    out = {}
    for p in params:
        key, _, val = p.strip().partition("=")
        out[key.strip().lower()] = val.strip().strip('"')
    return kind.strip().lower(), out


STREAM_ERRORS = (OSError, http.client.HTTPException, socket.timeout, MjpegError)
