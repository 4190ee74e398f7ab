"""Detect stage: frame key in, faces out; results go to the stream's ordered buffer.

Detect workers may finish out of order; each result is stored under the stream's
``detected`` hash by sequence number and a track job is queued for the stream. The
tracker consumes that hash strictly in sequence order.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.detectors import registry
from pipeline.record import FrameRecord
from pipeline.runtime import Runtime
from workers.base import Stage, get_stage


class DetectStage(Stage):
    name = "detect"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        cfg = rt.config.detector
        self.detector = registry.from_config(cfg)
        self.min_size = cfg.min_size

    def warmup(self) -> None:
        self.detector.warmup()

    def process(self, payload: dict[str, Any]) -> None:
        rec = FrameRecord.from_dict(payload)
        t0 = time.perf_counter()
        age = time.time() - rec.ts
        if rec.live and age > self.rt.config.capture.max_frame_age_s:
            rec.dropped = "stale"
        else:
            image = self.rt.frames.get(rec.key) if rec.key else None
            if image is None:
                rec.dropped = "expired"
            else:
                rec.faces = self.detector.detect(image, self.min_size)
                self.rt.metrics.inc(
                    "facepipe_faces_detected_total", {"stream": rec.stream}, len(rec.faces)
                )
        rec.timings["detect"] = time.perf_counter() - t0
        bus = self.rt.bus
        bus.conn.hset(bus.detected_key(rec.stream, rec.session), str(rec.seq), rec.to_json())
        bus.enqueue("track", {"stream": rec.stream, "session": rec.session})


STAGE = DetectStage


def handle(payload: dict[str, Any]) -> None:
    get_stage("detect").handle(payload)
