"""Recognize stage: 128-d encodings of sampled faces, matched against the gallery.

The sampled faces then go on, with their encodings, to the attributes stage.

The gallery is read from the event store at start and re-read when it changes
(polled at most every ``GALLERY_POLL_S`` seconds), so `facepipe enroll` takes effect
on running workers without restarting them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pipeline.recognition.encoder import DlibEncoder
from pipeline.recognition.quality import face_quality
from pipeline.record import FrameRecord
from pipeline.runtime import Runtime
from pipeline.store import EventStore, GalleryCache
from workers.base import Stage, get_stage

GALLERY_POLL_S = 5.0


class RecognizeStage(Stage):
    name = "recognize"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.encoder = DlibEncoder(
            num_jitters=rt.config.recognition.num_jitters,
            min_face_px=rt.config.recognition.upscale_below_px,
        )
        self.gallery = GalleryCache(EventStore(rt.config.store_url), GALLERY_POLL_S)

    def warmup(self) -> None:
        from pipeline.record import Face

        self.encoder.encode(np.zeros((80, 80, 3), np.uint8), [Face(box=(10, 10, 60, 60))])

    def process(self, payload: dict[str, Any]) -> None:
        rec = FrameRecord.from_dict(payload)
        image = self.rt.frames.get(rec.key) if rec.key else None
        if image is None or not rec.faces:
            return
        t0 = time.perf_counter()
        vectors, marks = self.encoder.encode_with_landmarks(image, rec.faces)
        threshold = self.rt.config.recognition.threshold
        for face, vec, lm, (name, dist) in zip(
            rec.faces, vectors, marks, self.gallery.get().match(vectors), strict=True
        ):
            face.encoding = [round(float(x), 6) for x in vec]
            face.landmarks = [(round(px, 1), round(py, 1)) for px, py in lm]
            # size x sharpness x frontal pose: weights this sample in the track's fusion
            face.quality = round(face_quality(image, face, lm), 4)
            face.name, face.distance = name, dist
            known = dist is not None and dist <= threshold
            self.rt.metrics.inc(
                "facepipe_recognitions_total",
                {"stream": rec.stream, "result": "known" if known else "unknown"},
            )
        rec.timings["recognize"] = time.perf_counter() - t0
        self.rt.bus.enqueue("sink", {"kind": "identity", "record": rec.to_dict()})
        if self.rt.config.attributes.enabled:
            # with the encodings: the transfer/ensemble age-gender backends reuse them
            self.rt.bus.enqueue("attributes", rec.to_dict())


STAGE = RecognizeStage


def handle(payload: dict[str, Any]) -> None:
    get_stage("recognize").handle(payload)
