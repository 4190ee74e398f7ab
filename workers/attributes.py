"""Attributes stage: age and gender of sampled faces (fused per track by the sink).

Its jobs come from the recognize stage (the samples of one hold of the track stage, faces
with encodings and names); it sends the sink both kinds of samples of a job in one
message (``identity+attributes``)."""

from __future__ import annotations

from typing import Any

from pipeline.attributes import registry
from pipeline.record import FrameBatch, FrameRecord, Samples
from pipeline.runtime import Runtime
from workers.base import Stage, run_job


class AttributesStage(Stage):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        cfg = rt.config.attributes
        self.estimator = registry.from_config(cfg)

    def warmup(self) -> None:
        self.estimator.warmup()

    def process(self, batch: FrameBatch) -> None:
        sampled = [rec for rec in batch.records if rec.faces]
        if not sampled:
            return  # nothing sampled
        for rec, image in zip(sampled, self.images(sampled), strict=True):
            if image is not None:  # (the frame left Redis: the identity samples still go)
                self._estimate(image, rec)
        # the recognize stage's identity samples (encodings, names) with the attributes:
        # one message for the job's samples
        self.rt.bus.send("sink", Samples("identity+attributes", sampled))

    def _estimate(self, image: Any, rec: FrameRecord) -> None:
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


def handle(payload: dict[str, Any]) -> None:
    run_job(AttributesStage, payload)
