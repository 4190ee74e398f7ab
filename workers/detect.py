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
from dataclasses import replace
from typing import Any

import numpy as np

from pipeline.detectors import registry
from pipeline.detectors.base import Detector
from pipeline.frames import reduced_factor
from pipeline.record import Face, FrameBatch, FrameRecord
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
        # each JPEG decoded no larger than the detector's network will see it
        reduce = [reduced_factor(self.detector.input_scale(r.width, r.height)) for r in keyed]
        images = iter(self.rt.frames.get_many([r.key for r in keyed], reduce))  # one trip
        faces = 0
        for rec in todo:
            image = next(images) if rec.key else None
            if image is None:
                rec.dropped = "expired"
                continue
            with self.inference():
                rec.faces = detect_in_frame(self.detector, image, rec, self.min_size)
            faces += len(rec.faces)
        if todo:
            self.rt.metrics.inc("facepipe_faces_detected_total", {"stream": batch.stream}, faces)
        self.rt.bus.buffer_put_many(batch.records)


def detect_in_frame(
    detector: Detector, image: np.ndarray, rec: FrameRecord, min_size: int
) -> list[Face]:
    """``detector``'s faces in frame ``rec``, given its ``image`` possibly decoded smaller
    than the frame (:func:`~pipeline.frames.reduced_factor`): boxes and landmarks in the
    frame's pixels, ``min_size`` in the frame's pixels."""
    h, w = image.shape[:2]
    if (w, h) == (rec.width, rec.height) or not rec.width or not rec.height:
        return detector.detect(image, min_size)
    sx, sy = rec.width / w, rec.height / h
    found = detector.detect(image, int(min_size / max(sx, sy)))
    out = []
    for f in found:
        x, y, bw, bh = f.box
        scaled = replace(
            f,
            box=(x * sx, y * sy, bw * sx, bh * sy),
            landmarks=None
            if f.landmarks is None
            else [(px * sx, py * sy) for px, py in f.landmarks],
        ).clipped(rec.width, rec.height)
        if scaled.box[2] > 0 and scaled.box[3] > 0 and scaled.box[3] >= min_size:
            out.append(scaled)
    return out


def handle(payload: dict[str, Any]) -> None:
    run_job(DetectStage, payload)
