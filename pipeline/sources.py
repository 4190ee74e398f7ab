"""Video sources: files, webcams and network cameras, through OpenCV's FFmpeg backend.

``open_source("clip.mp4")`` reads a file (finite, never drops); ``open_source("0")`` a
webcam; ``open_source("rtsp://...")`` / ``"http(s)://..."`` a network stream. Webcams and
streams are *live*: a reader thread keeps only the newest frame, so a slow pipeline sees
fresh frames and the frames it could not take are counted as dropped (``stale``) rather
than piling up in a buffer.

Bad input is refused or reported, never silently truncated:

* a frame larger than ``max_pixels`` (``limits.max_image_pixels``) is refused: a source
  whose header says so does not open; a live frame that large is skipped with a warning;
* a file with corrupt data: OpenCV returns no frame for the damaged part. If the file
  has more frames (its header gives the count), reading goes on, and the frames the
  decoder could not read are counted in :attr:`Source.unreadable` with a warning that
  names the file and the frames; :attr:`Source.cut_short` tells the caller.

A live source is never given up: one that cannot be opened (a camera down when capture
starts) or stops delivering frames is reopened with capped exponential backoff and jitter
(from ``reconnect_s`` up to ``reconnect_max_s``), forever, until it is stopped. Each
outage is logged once when it starts and once, with its length, when frames flow again;
:meth:`Source.status` tells the caller whether it is up, how often it came back and for
how long it was down (the capture turns that into metrics). Opening and reading time out
after ``timeout_s`` (a camera that accepts a connection and then says nothing is down,
too). A file that cannot be opened is an error at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.frames import decode_bgr
from pipeline.images import DEFAULT_MAX_PIXELS
from pipeline.mjpeg import STREAM_ERRORS, MjpegStream, NotMjpeg, jpeg_size
from pipeline.shots import WIDTH as SHOT_WIDTH

if TYPE_CHECKING:
    from pipeline.config import Config

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceError(RuntimeError):
    """A source cannot be opened or read."""


@dataclass(frozen=True)
class SourceStatus:
    """A live source's health: ``up`` while frames flow; ``reconnects``: outages it came
    back from; ``down_s``: seconds it was down in all, the current outage included;
    ``reason``: why it is down now."""

    up: bool
    reconnects: int
    down_s: float
    reason: str | None = None  # why it is down (None while up)


class Frame:
    """A frame read from a source: its pixels (BGR), or, from an MJPEG camera read with
    ``capture.mjpeg_passthrough``, the JPEG as the camera sent it (``jpeg``; its pixels
    are decoded when :attr:`bgr` is first asked for, and :meth:`preview` decodes it at a
    fraction of its size)."""

    def __init__(
        self,
        bgr: np.ndarray | None = None,
        ts: float = 0.0,
        skipped: int = 0,
        jpeg: bytes | None = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        if bgr is None and jpeg is None:
            raise ValueError("a frame needs its pixels or its JPEG")
        self._bgr = bgr
        self._preview: tuple[int, np.ndarray] | None = None  # (min_width, picture)
        self.ts = ts  # capture time (seconds since the epoch)
        self.skipped = skipped  # live frames the reader overwrote before this one was taken
        self.jpeg = jpeg
        if size is None:
            size = (int(bgr.shape[1]), int(bgr.shape[0])) if bgr is not None else jpeg_size(jpeg)  # type: ignore[arg-type]
        self.size = size  # (width, height)

    @property
    def bgr(self) -> np.ndarray:
        if self._bgr is None:
            self._bgr = _decode(self.jpeg, 1)  # type: ignore[arg-type]
        return self._bgr

    def preview(self, min_width: int) -> np.ndarray:
        """The frame at least ``min_width`` pixels wide where it is that wide (a JPEG is
        decoded at 1/2, 1/4 or 1/8 of its size when that is enough: a fraction of the
        work), else whole."""
        if self._bgr is not None or self.jpeg is None:
            return self.bgr
        if self._preview is not None and self._preview[0] == min_width:
            return self._preview[1]
        factor = 1
        for f in (8, 4, 2):
            if self.size[0] // f >= min_width:
                factor = f
                break
        picture = _decode(self.jpeg, factor) if factor > 1 else self.bgr
        self._preview = (min_width, picture)
        return picture


def _decode(jpeg: bytes, factor: int) -> np.ndarray:
    try:
        return decode_bgr(jpeg, factor)
    except ValueError:
        raise SourceError("the camera sent a JPEG that does not decode") from None


def describe(spec: str) -> tuple[str, bool]:
    """``(kind, live)`` of a source spec: kind is file, webcam or url."""
    if spec.isdigit():
        return "webcam", True
    if spec.lower().startswith(URL_SCHEMES):
        return "url", True
    return "file", False


def _too_large(spec: str, width: int, height: int, max_pixels: int) -> str:
    return (
        f"{spec}: frames of {width} x {height} pixels are more than the limit of "
        f"{max_pixels:,} (limits.max_image_pixels); refused"
    )


def _open(
    spec: str, timeout_s: float = 10.0, passthrough: bool = False
) -> cv2.VideoCapture | MjpegStream:
    """The source opened: an MJPEG camera's stream as it comes (``passthrough`` and an
    http(s) URL that answers with a multipart stream), else OpenCV's capture."""
    kind, _ = describe(spec)
    if passthrough and kind == "url" and spec.lower().startswith(("http://", "https://")):
        try:
            return MjpegStream.open(spec, timeout_s)
        except NotMjpeg as exc:
            log.info("%s: %s; reading it through OpenCV/FFmpeg", spec, exc)
        except STREAM_ERRORS as exc:
            raise SourceError(f"cannot open url source {spec!r}: {exc}") from exc
    if kind == "webcam":
        cap = cv2.VideoCapture(int(spec))
    elif kind == "url":
        ms = max(1, int(timeout_s * 1000))  # FFmpeg's own default is 30 s each
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)
    else:
        if not Path(spec).is_file():
            raise SourceError(f"video file not found: {spec}")
        cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise SourceError(f"cannot open {kind} source {spec!r} (OpenCV/FFmpeg could not read it)")
    return cap


def _read(cap: cv2.VideoCapture | MjpegStream, spec: str) -> Frame | None:
    """A live source's next frame (stamped now), or None when the source failed."""
    try:
        if isinstance(cap, MjpegStream):
            # its header checked (Frame takes the size from it); the picture decoded at
            # the shot detector's size: a JPEG whose data does not decode never becomes a
            # frame, and the capture's shot cut reuses the picture
            frame = Frame(jpeg=cap.read(), ts=time.time())
            frame.preview(SHOT_WIDTH)
            return frame
        ok, bgr = cap.read()
    except (cv2.error, SourceError, *STREAM_ERRORS) as exc:  # garbage, a dropped connection
        log.debug("%s: read error: %s", spec, exc)
        return None
    return Frame(bgr=bgr, ts=time.time()) if ok and bgr is not None else None


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV's own warnings off (while a source that is down is retried: the outage is
    logged once, not once per attempt)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(min(level, cv2.utils.logging.LOG_LEVEL_ERROR))
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


class Source:
    """Iterate :class:`Frame` objects; ``stop()`` ends the iteration from another thread."""

    # a file whose reads fail this many frames in a row (with frames left) is given up
    MAX_BAD_RUN = 500

    def __init__(
        self,
        spec: str,
        reconnect_s: float = 2.0,
        realtime: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        reconnect_max_s: float = 10.0,
        timeout_s: float = 10.0,
        passthrough: bool = True,
    ) -> None:
        self.spec = spec
        self.passthrough = passthrough  # MJPEG cameras' JPEGs as sent (no decoding here)
        self.kind, self.live = describe(spec)
        self.reconnect_s = reconnect_s
        self.reconnect_max_s = reconnect_max_s
        self.timeout_s = timeout_s
        self.realtime = realtime
        self.max_pixels = max_pixels
        self.unreadable = 0  # frames of a file the decoder could not read (corrupt data)
        self.refused = 0  # frames larger than max_pixels
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        # live health (see status()); guarded by _state_lock
        self._state_lock = threading.Lock()
        self._up = True
        self._down_since: float | None = None  # monotonic start of the current outage
        self._down_total = 0.0  # seconds of the outages that ended
        self._reconnects = 0
        self._down_reason: str | None = None
        self.fps: float = 0.0
        self.frame_count: int | None = None
        try:
            self._cap: cv2.VideoCapture | MjpegStream | None = _open(spec, timeout_s, passthrough)
        except (SourceError, cv2.error) as exc:
            if not self.live:
                raise
            self._cap = None  # a camera down at start: the reader keeps trying
            self._went_down(f"{exc}; down at start")
            return
        if isinstance(self._cap, MjpegStream):
            return  # no header to ask: each frame's size is checked as it comes
        width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if width * height > max_pixels:
            self._cap.release()
            raise SourceError(_too_large(spec, width, height, max_pixels))
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps == fps and 0 < fps < 1000 else 0.0
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if not self.live and count and count > 0 else None

    @classmethod
    def from_config(cls, spec: str, config: Config) -> Source:
        """A source with the ``capture`` and ``limits`` settings of ``config``."""
        cap = config.capture
        return cls(
            spec, reconnect_s=cap.reconnect_s, realtime=cap.realtime,
            max_pixels=config.limits.max_image_pixels, reconnect_max_s=cap.reconnect_max_s,
            timeout_s=cap.timeout_s, passthrough=cap.mjpeg_passthrough,
        )  # fmt: skip

    @property
    def cut_short(self) -> bool:
        """Some frames of a file could not be read (corrupt data)."""
        return self.unreadable > 0

    def status(self) -> SourceStatus:
        """Up or down now, reconnects so far, seconds down so far (live sources)."""
        with self._state_lock:
            down = self._down_total
            if self._down_since is not None:
                down += time.monotonic() - self._down_since
            return SourceStatus(self._up, self._reconnects, down, self._down_reason)

    def _went_down(self, reason: str) -> None:
        """The source stopped delivering (or never started): logged once per outage."""
        with self._state_lock:
            if not self._up:
                return
            self._up, self._down_since = False, time.monotonic()
            self._down_reason = reason
        log.warning(
            "%s: source down (%s); reconnecting with backoff (%.1f s, doubling up to %.1f s)",
            self.spec, reason, self.reconnect_s, self._backoff_cap(),
        )  # fmt: skip

    def _came_back(self, attempts: int) -> None:
        with self._state_lock:
            if self._up:
                return
            took = time.monotonic() - (self._down_since or time.monotonic())
            self._up, self._down_since, self._down_reason = True, None, None
            self._down_total += took
            self._reconnects += 1
        log.warning("%s: source back after %.1f s down (%d reconnect attempts)",
                    self.spec, took, attempts)  # fmt: skip

    def _backoff_cap(self) -> float:
        return max(self.reconnect_max_s, self.reconnect_s)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        reader = self._reader
        if reader is not None and reader.is_alive():
            return  # the reader may be inside read(): it releases the capture as it ends
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __iter__(self) -> Iterator[Frame]:
        return self._iter_live() if self.live else self._iter_file()

    def _iter_file(self) -> Iterator[Frame]:
        start = time.monotonic()
        n = 0  # frames yielded
        pos = 0  # index of the next frame in the file (read or not)
        bad_from: int | None = None  # first frame of the current run of failed reads
        cap = self._cap
        if cap is None:
            return  # closed
        while not self._stop.is_set():
            ok, bgr = cap.read()
            if not ok:
                if bad_from is None:
                    bad_from = pos
                if self._at_end(pos + 1) or pos + 1 - bad_from >= self.MAX_BAD_RUN:
                    self._give_up(bad_from)
                    return
                pos += 1
                continue
            if bad_from is not None:
                self.unreadable += pos - bad_from
                log.warning(
                    "%s: frames %d-%d unreadable (corrupt data); resumed at frame %d",
                    self.spec, bad_from, pos - 1, pos,
                )  # fmt: skip
                bad_from = None
            pos += 1
            if bgr.shape[0] * bgr.shape[1] > self.max_pixels:
                raise SourceError(
                    _too_large(self.spec, bgr.shape[1], bgr.shape[0], self.max_pixels)
                )
            if self.realtime and self.fps:
                delay = start + n / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            n += 1
            yield Frame(bgr=bgr, ts=time.time())

    def _at_end(self, pos: int) -> bool:
        """No frame is expected at ``pos`` (or the file does not say how many it has)."""
        return self.frame_count is None or pos >= self.frame_count

    def _give_up(self, bad_from: int) -> None:
        """Reads failed from frame ``bad_from`` to the end of the file (or too long)."""
        if self.frame_count is None:
            return  # the end of a file that gives no frame count
        missing = self.frame_count - bad_from
        # containers that estimate the count (from duration x fps) may be off by a frame
        if missing > max(1, self.frame_count // 100):
            self.unreadable += missing
            log.warning(
                "%s: frames %d-%d of %d unreadable (corrupt or truncated file); stopped",
                self.spec, bad_from, self.frame_count - 1, self.frame_count,
            )  # fmt: skip

    def _iter_live(self) -> Iterator[Frame]:
        latest: list[Frame | None] = [None]
        overwritten = [0]
        cond = threading.Condition()

        def reader() -> None:
            from pipeline.retry import backoff_delays

            # while down: reopen after reconnect_s, doubling up to reconnect_max_s (jitter)
            delay = backoff_delays(max(self.reconnect_s, 0.05), self._backoff_cap())
            cap, attempts = self._cap, 0
            try:
                while not self._stop.is_set():
                    if cap is None:
                        try:
                            with _quiet_opencv():
                                cap = self._cap = _open(self.spec, self.timeout_s, self.passthrough)
                        except (SourceError, cv2.error) as exc:
                            self._went_down(str(exc))
                            pause = delay(attempts)
                            attempts += 1
                            log.debug("%s: %s; next attempt in %.1f s", self.spec, exc, pause)
                            self._stop.wait(pause)
                            continue
                    frame = _read(cap, self.spec)
                    if frame is None:
                        cap.release()
                        cap = self._cap = None
                        self._went_down("no frame: stream ended, connection lost or timed out")
                        pause = delay(attempts)
                        attempts += 1
                        log.debug("%s: read failed; reopening in %.1f s", self.spec, pause)
                        self._stop.wait(pause)
                        continue
                    if not self._up:
                        self._came_back(attempts)
                    attempts = 0
                    width, height = frame.size
                    if width * height > self.max_pixels:
                        if not self.refused:
                            log.warning("%s", _too_large(self.spec, width, height,
                                                         self.max_pixels))  # fmt: skip
                        self.refused += 1
                        continue
                    with cond:
                        if latest[0] is not None:
                            overwritten[0] += 1
                        latest[0] = frame
                        cond.notify()
            finally:
                if cap is not None:
                    cap.release()
                self._cap = None
                with cond:
                    cond.notify()

        thread = threading.Thread(target=reader, name="source-reader", daemon=True)
        self._reader = thread
        thread.start()
        while not self._stop.is_set():
            with cond:
                while latest[0] is None and not self._stop.is_set():
                    cond.wait(0.5)
                frame, latest[0] = latest[0], None
                skipped, overwritten[0] = overwritten[0], 0
            if frame is not None:
                frame.skipped = skipped
                yield frame
        thread.join(timeout=2)
