"""Recognize stage: 128-d encodings of sampled faces, matched against the gallery.

A job holds the samples one hold of the track stage chose (a
:class:`~pipeline.record.FrameBatch`, one record per sampled frame); it sends one message
on to each next stage, whatever the number of samples.

The sampled faces then go on, with their encodings and names, to the attributes stage,
which sends the sink the identity and attribute samples in one message (with attributes
off, this stage sends the identity samples itself).

Re-identification (``tracker.model: kalman``): the encodings of the sampled faces are also
sent to the stream's track stage (``Bus.send_encodings``), which alone changes the
tracker: it learns each track's appearance and merges a new track that continues one
lost or ended shortly before (``pipeline/tracking/stream.py``); with each sample's name,
so that it stops sampling a track whose name is settled (``sampling.settle_after``). This
stage never reads or writes the tracker state.

The gallery is read from the event store at start and re-read when it changes
(polled at most every ``GALLERY_POLL_S`` seconds), so `facepipe enroll` takes effect
on running workers without restarting them.

Each sample is named under the open-set rule (``fuse_identity`` on the one encoding: a
threshold that tightens with the gallery size, a margin over the second-nearest person,
per-person thresholds); the track's name is decided in the sink from all its samples by
the same rule.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.fusion import fuse_identity
from pipeline.recognition.encoder import DlibEncoder
from pipeline.recognition.quality import face_quality
from pipeline.record import Encodings, Face, FrameBatch, FrameRecord, Samples
from pipeline.runtime import Runtime
from pipeline.store import EventStore, GalleryCache
from workers.base import Stage, run_job

GALLERY_POLL_S = 5.0


class RecognizeStage(Stage):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.encoder = DlibEncoder.from_config(rt.config.recognition)
        self.gallery = GalleryCache(EventStore(rt.config.store_url), GALLERY_POLL_S)

    def warmup(self) -> None:
        self.encoder.encode(np.zeros((80, 80, 3), np.uint8), [Face(box=(10, 10, 60, 60))])

    def process(self, batch: FrameBatch) -> None:
        """The samples of one hold of the track stage: each sampled frame's faces encoded
        and named, then one message on to each next stage (a sample whose frame left
        Redis goes no further)."""
        done: list[FrameRecord] = []
        sampled = [rec for rec in batch.records if rec.faces]
        for rec, image in zip(sampled, self.images(sampled), strict=True):
            if image is None:  # the frame left Redis
                continue
            self._recognize(image, rec)
            done.append(rec)
        if not done:
            return
        bus = self.rt.bus
        pipe = bus.pipeline()  # everything this job sends: one round trip
        if self.rt.config.tracker.model == "kalman":  # for re-identification
            tracked = [
                Face(
                    box=f.box,
                    track_id=f.track_id,
                    encoding=f.encoding,
                    quality=f.quality,
                    name=f.name,  # the track stage stops sampling a track once it is settled
                )  # fmt: skip
                for rec in done
                for f in rec.faces
                if f.track_id is not None
            ]
            if tracked:  # one message (and one poke of the track stage) per job
                first = done[0]
                bus.send_encodings(
                    Encodings(first.stream, first.session, first.seq, tracked), pipeline=pipe
                )
        if self.rt.config.attributes.enabled:
            # with the encodings (the transfer/ensemble age-gender backends reuse them)
            # and names: the attributes stage sends the sink both kinds in one message
            bus.send("attributes", FrameBatch(done), pipeline=pipe)
        else:
            bus.send("sink", Samples("identity", done), pipeline=pipe)
        pipe.execute()

    def _recognize(self, image: np.ndarray, rec: FrameRecord) -> None:
        """Encode and name the sampled faces of one frame (in place)."""
        with self.inference():
            vectors, marks = self.encoder.encode_with_landmarks(image, rec.faces)
        # the open-set rule (pipeline/recognition/openset.py)
        threshold = self.rt.config.recognition.rule
        gallery = self.gallery.get()
        for face, vec, lm in zip(rec.faces, vectors, marks, strict=True):
            face.encoding = [round(float(x), 6) for x in vec]
            face.landmarks = [(round(px, 1), round(py, 1)) for px, py in lm]
            # size x sharpness x frontal pose: weights this sample in the track's fusion
            face.quality = round(face_quality(image, face, lm), 4)
            # this sample alone, under the same rule as the track's vote in the sink: a
            # name only when accepted (gallery size, margin, per-person threshold)
            one = fuse_identity(
                np.asarray(vec)[None, :], gallery.names, gallery.matrix, threshold,
                gallery.negative_names, gallery.negatives, None, gallery.quality,
            )  # fmt: skip
            face.name, face.distance = one.name, one.distance
            known = one.name is not None
            self.rt.metrics.inc(
                "facepipe_recognitions_total",
                {"stream": rec.stream, "result": "known" if known else "unknown"},
            )


def handle(payload: dict[str, Any]) -> None:
    run_job(RecognizeStage, payload)
