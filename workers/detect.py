"""Detect stage: frames in, faces out; results go to the stream's ordered buffer.

A detect job carries a :class:`~pipeline.record.FrameBatch`: one or more consecutive
frames of one stream (the capture batches frames while the detect queue has jobs
waiting). Their images come from Redis in one round trip, and the results of the whole
batch go to the stream's ordered buffer in one transaction with one poke of the stream's
track stage (``Bus.buffer_put_many``): a worker that dies mid-batch has written nothing,
and the batch is run again by another worker (a frame written twice is harmless: the
buffer is keyed by ``seq`` and the sink accounts each frame once). Detect workers may
finish out of order; the track stage consumes the buffer strictly in sequence order.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.detectors import registry
from pipeline.frames import reduced_factor
from pipeline.record import FrameBatch, FrameRecord
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

    def process(self, batch: FrameBatch) -> None:
        max_age = self.rt.config.capture.max_frame_age_s
        now = time.time()
        todo: list[FrameRecord] = []
        for rec in batch.records:
            if rec.live and now - rec.ts > max_age:
                rec.dropped = "stale"
            elif rec.detected:
                todo.append(rec)
        keyed = [r for r in todo if r.key]
        # each JPEG decoded no larger than the detector's network will see it, in the
        # channel order it takes (no conversion there and back)
        reduce = [reduced_factor(self.detector.input_scale(r.width, r.height)) for r in keyed]
        order = self.detector.channel_order
        images = iter(self.rt.frames.get_many([r.key for r in keyed], reduce, order))  # 1 trip
        faces = 0
        for rec in todo:
            image = next(images) if rec.key else None
            if image is None:
                rec.dropped = "expired"
                continue
            with self.inference():
                rec.faces = self.detector.detect(image, self.min_size, frame_size(rec), order)
            faces += len(rec.faces)
        if todo:
            self.rt.metrics.inc("facepipe_faces_detected_total", {"stream": batch.stream}, faces)
        self.rt.bus.buffer_put_many(batch.records)


def frame_size(rec: FrameRecord) -> tuple[int, int] | None:
    """The frame's ``(width, height)`` as the capture recorded it (None if it did not)."""
    return (rec.width, rec.height) if rec.width and rec.height else None


def handle(payload: dict[str, Any]) -> None:
    run_job(DetectStage, payload)
