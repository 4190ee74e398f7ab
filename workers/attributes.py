"""Attributes stage: age and gender of sampled faces (fused per track by the sink)."""

from __future__ import annotations

from typing import Any

from pipeline.attributes import registry
from pipeline.record import FrameRecord, Samples
from pipeline.runtime import Runtime
from workers.base import Stage, run_job


class AttributesStage(Stage):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        cfg = rt.config.attributes
        self.estimator = registry.from_config(cfg)

    def warmup(self) -> None:
        self.estimator.warmup()

    def process(self, rec: FrameRecord) -> None:
        image = self.image(rec) if rec.faces else None
        if image is None:  # nothing sampled, or the frame left Redis
            return
        with self.inference():
            estimates = self.estimator.estimate(image, rec.faces)
        for face, est in zip(rec.faces, estimates, strict=True):
            face.age, face.gender, face.gender_confidence = (
                est.age,
                est.gender,
                est.gender_confidence,
            )
        self.rt.metrics.inc(
            "facepipe_attribute_samples_total", {"stream": rec.stream}, len(rec.faces)
        )
        self.rt.bus.send("sink", Samples("attributes", rec))


def handle(payload: dict[str, Any]) -> None:
    run_job(AttributesStage, payload)
