"""Attributes stage: age and gender of sampled faces (fused per track by the sink)."""

from __future__ import annotations

import time
from typing import Any

from pipeline.attributes import registry
from pipeline.record import FrameRecord
from pipeline.runtime import Runtime
from workers.base import Stage, get_stage


class AttributesStage(Stage):
    name = "attributes"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        cfg = rt.config.attributes
        self.estimator = registry.from_config(cfg)

    def warmup(self) -> None:
        self.estimator.warmup()

    def process(self, payload: dict[str, Any]) -> None:
        rec = FrameRecord.from_dict(payload)
        image = self.rt.frames.get(rec.key) if rec.key else None
        if image is None or not rec.faces:
            return
        t0 = time.perf_counter()
        for face, est in zip(rec.faces, self.estimator.estimate(image, rec.faces), strict=True):
            face.age, face.gender, face.gender_confidence = (
                est.age,
                est.gender,
                est.gender_confidence,
            )
        rec.timings["attributes"] = time.perf_counter() - t0
        self.rt.metrics.inc(
            "facepipe_attribute_samples_total", {"stream": rec.stream}, len(rec.faces)
        )
        self.rt.bus.enqueue("sink", {"kind": "attributes", "record": rec.to_dict()})


STAGE = AttributesStage


def handle(payload: dict[str, Any]) -> None:
    get_stage("attributes").handle(payload)
