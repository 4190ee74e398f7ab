"""The capture producer: frames from one source onto the detect queue.

Every frame read is counted as captured. Then it is either enqueued (encoded image in
Redis under a key with a TTL; the job carries a :class:`FrameRecord`) or counted as
dropped with a reason:

* ``stale``: a live source produced it while the pipeline was still busy with an earlier
  one (the reader keeps only the newest frame);
* ``backpressure``: a live source's detect queue is full (``capture.max_queue``).

A file source never drops: it waits until the detect queue has room.

With ``detector.every_n_frames`` > 1, only every n-th frame goes to the detect queue;
the others skip detection (no image is stored) and go straight to the stream's buffer for
the track stage, which fills in the tracker's predicted faces. They are counted like any
other frame.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass

from pipeline.record import FrameRecord
from pipeline.runtime import Runtime
from pipeline.shots import CutDetector
from pipeline.sources import Source

log = logging.getLogger(__name__)


@dataclass
class CaptureResult:
    stream: str
    session: str
    captured: int = 0
    enqueued: int = 0
    dropped: int = 0
    seconds: float = 0.0


class Capture:
    def __init__(
        self, rt: Runtime, source: Source, stream: str, session: str | None = None
    ) -> None:
        if not stream or "/" in stream or ":" in stream:
            raise ValueError(f"bad stream name {stream!r}: must be non-empty without '/' or ':'")
        self.rt = rt
        self.source = source
        self.stream = stream
        self.session = session or time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)
        self.stop_event = threading.Event()

    def stop(self) -> None:
        self.stop_event.set()
        self.source.stop()

    def _drop(self, result: CaptureResult, reason: str, n: int = 1) -> None:
        result.dropped += n
        self.rt.bus.count_frame(self.stream, self.session, f"dropped:{reason}", n)
        self.rt.metrics.inc(
            "facepipe_frames_dropped_total", {"stream": self.stream, "reason": reason}, n
        )

    def _captured(self, result: CaptureResult, n: int) -> None:
        result.captured += n
        self.rt.bus.count_frame(self.stream, self.session, "captured", n)
        self.rt.metrics.inc("facepipe_frames_captured_total", {"stream": self.stream}, n)

    def run(self) -> CaptureResult:
        bus, cfg = self.rt.bus, self.rt.config.capture
        live = self.source.live
        bus.register_stream(self.stream, self.session, {"source": self.source.spec, "live": live})
        result = CaptureResult(self.stream, self.session)
        t0 = time.monotonic()
        seq = -1
        pending: FrameRecord | None = None  # one frame of look-ahead marks the last one

        every_n = self.rt.config.detector.every_n_frames
        cuts = CutDetector(cfg.shot_cut_threshold) if cfg.shot_cut_threshold else None
        cut_pending = False  # a cut on a frame that was then dropped marks the next one

        def send(rec: FrameRecord) -> None:
            if rec.detected:
                bus.send("detect", rec)
            else:  # straight to the track stage's buffer; it predicts the faces
                bus.buffer_put(rec)
            result.enqueued += 1

        try:
            for frame in self.source:
                if frame.skipped:
                    self._captured(result, frame.skipped)
                    self._drop(result, "stale", frame.skipped)
                self._captured(result, 1)
                if cuts is not None and cuts.update(frame.bgr):
                    cut_pending = True
                detect = (seq + 1) % every_n == 0
                if detect and live and bus.depth("detect") >= cfg.max_queue:
                    self._drop(result, "backpressure")
                    continue
                while detect and not live and bus.depth("detect") >= cfg.max_queue:
                    if self.stop_event.wait(0.005):
                        break
                bgr = self.rt.frames.prepare(frame.bgr)
                seq += 1
                rec = FrameRecord(
                    stream=self.stream,
                    session=self.session,
                    seq=seq,
                    ts=frame.ts,
                    width=int(bgr.shape[1]),
                    height=int(bgr.shape[0]),
                    live=live,
                    detected=detect,
                    cut=cut_pending,
                )
                cut_pending = False
                if detect:  # frames detection skips are never needed as images
                    rec.key = bus.frame_key(rec)
                    self.rt.frames.put(rec.key, bgr)
                if pending is not None:
                    send(pending)
                pending = rec
                if self.stop_event.is_set():
                    break
        finally:
            if pending is not None:
                pending.last = True
                send(pending)
            bus.set_end(self.stream, self.session, seq)
            self.source.close()
            result.seconds = time.monotonic() - t0
        log.info(
            "%s: captured %d, enqueued %d, dropped %d in %.1f s",
            self.stream, result.captured, result.enqueued, result.dropped, result.seconds,
        )  # fmt: skip
        return result
