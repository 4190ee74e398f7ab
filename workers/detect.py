"""Detect stage: frame key in, faces out; results go to the stream's ordered buffer.

Detect workers may finish out of order; each result goes to the stream's ordered buffer
on the bus (``Bus.buffer_put``), which pokes the stream's track stage; the track stage
consumes the buffer strictly in sequence order.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.detectors import registry
from pipeline.record import FrameRecord
from pipeline.runtime import Runtime
from workers.base import Stage, run_job


class DetectStage(Stage):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        cfg = rt.config.detector
        self.detector = registry.from_config(cfg)
        self.min_size = cfg.min_size

    def warmup(self) -> None:
        self.detector.warmup()

    def process(self, rec: FrameRecord) -> None:
        age = time.time() - rec.ts
        if rec.live and age > self.rt.config.capture.max_frame_age_s:
            rec.dropped = "stale"
        else:
            image = self.image(rec)
            if image is None:
                rec.dropped = "expired"
            else:
                with self.inference():
                    rec.faces = self.detector.detect(image, self.min_size)
                self.rt.metrics.inc(
                    "facepipe_faces_detected_total", {"stream": rec.stream}, len(rec.faces)
                )
        self.rt.bus.buffer_put(rec)


def handle(payload: dict[str, Any]) -> None:
    run_job(DetectStage, payload)
