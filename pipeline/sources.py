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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.images import DEFAULT_MAX_PIXELS

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceError(RuntimeError):
    """A source cannot be opened or read."""


@dataclass
class Frame:
    bgr: np.ndarray
    ts: float  # capture time (seconds since the epoch)
    skipped: int = 0  # live frames the reader overwrote before this one was taken


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


def _open(spec: str) -> cv2.VideoCapture:
    kind, _ = describe(spec)
    if kind == "webcam":
        cap = cv2.VideoCapture(int(spec))
    elif kind == "url":
        cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG)
    else:
        if not Path(spec).is_file():
            raise SourceError(f"video file not found: {spec}")
        cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise SourceError(f"cannot open {kind} source {spec!r} (OpenCV/FFmpeg could not read it)")
    return cap


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
    ) -> None:
        self.spec = spec
        self.kind, self.live = describe(spec)
        self.reconnect_s = reconnect_s
        self.realtime = realtime
        self.max_pixels = max_pixels
        self.unreadable = 0  # frames of a file the decoder could not read (corrupt data)
        self.refused = 0  # frames larger than max_pixels
        self._stop = threading.Event()
        self._cap = _open(spec)
        width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if width * height > max_pixels:
            self._cap.release()
            raise SourceError(_too_large(spec, width, height, max_pixels))
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps == fps and 0 < fps < 1000 else 0.0
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if not self.live and count and count > 0 else None

    @property
    def cut_short(self) -> bool:
        """Some frames of a file could not be read (corrupt data)."""
        return self.unreadable > 0

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self._cap.release()

    def __iter__(self) -> Iterator[Frame]:
        return self._iter_live() if self.live else self._iter_file()

    def _iter_file(self) -> Iterator[Frame]:
        start = time.monotonic()
        n = 0  # frames yielded
        pos = 0  # index of the next frame in the file (read or not)
        bad_from: int | None = None  # first frame of the current run of failed reads
        while not self._stop.is_set():
            ok, bgr = self._cap.read()
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

            # reopen after reconnect_s, doubling up to 30x (with jitter) while it stays down
            delay = backoff_delays(self.reconnect_s, 30 * self.reconnect_s)
            cap, failures, down_since = self._cap, 0, 0.0
            while not self._stop.is_set():
                ok, bgr = cap.read()
                if not ok:
                    pause = delay(failures)
                    if failures == 0:
                        down_since = time.monotonic()
                    log.warning("%s: read failed; reopening in %.1f s", self.spec, pause)
                    failures += 1
                    cap.release()
                    if self._stop.wait(pause):
                        break
                    try:
                        cap = self._cap = _open(self.spec)
                    except SourceError as exc:
                        log.warning("%s", exc)
                    continue
                if failures:
                    log.warning("%s: reading again after %.1f s down",
                                self.spec, time.monotonic() - down_since)  # fmt: skip
                    failures = 0
                if bgr.shape[0] * bgr.shape[1] > self.max_pixels:
                    if not self.refused:
                        log.warning("%s", _too_large(self.spec, bgr.shape[1], bgr.shape[0],
                                                     self.max_pixels))  # fmt: skip
                    self.refused += 1
                    continue
                with cond:
                    if latest[0] is not None:
                        overwritten[0] += 1
                    latest[0] = Frame(bgr=bgr, ts=time.time())
                    cond.notify()
            with cond:
                cond.notify()

        thread = threading.Thread(target=reader, name=f"reader-{self.spec}", daemon=True)
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
