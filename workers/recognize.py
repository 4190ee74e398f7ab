"""Recognize stage: 128-d encodings of sampled faces, matched against the gallery.

The sampled faces then go on, with their encodings, to the attributes stage.

Re-identification (``tracker.model: kalman``): the encodings are also fed back to the
stream's tracker (its state in Redis, under the stream's lock), which learns each track's
appearance. When a new track turns out to continue one that was lost or ended shortly
before (a cut, an occlusion, a face turned away: ``tracker.reid_window`` frames,
``tracker.reid_threshold``), the tracker merges them; this stage relabels its faces with
the surviving track id and tells the sink to fold the new track's event into the old
one. Faces below ``recognition.min_unknown_quality`` are not fed back (their encodings
sit between people).

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
from pipeline.tracking.kalman import KalmanTracker
from pipeline.tracking.state import TrackerStates
from workers.base import Stage, get_stage

GALLERY_POLL_S = 5.0
LOCK_WAIT_S = 5.0  # how long to wait for the stream's tracker lock (held for ms per frame)


class RecognizeStage(Stage):
    name = "recognize"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.encoder = DlibEncoder.from_config(rt.config.recognition)
        self.gallery = GalleryCache(EventStore(rt.config.store_url), GALLERY_POLL_S)
        self.states = TrackerStates(rt.bus, rt.config.tracker)

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
        for old, into in self._reidentify(rec):
            self.rt.bus.enqueue(
                "sink",
                {"kind": "merge", "stream": rec.stream, "session": rec.session,
                 "from": old, "into": into},
            )  # fmt: skip
        rec.timings["recognize"] = time.perf_counter() - t0
        self.rt.bus.enqueue("sink", {"kind": "identity", "record": rec.to_dict()})
        if self.rt.config.attributes.enabled:
            # with the encodings: the transfer/ensemble age-gender backends reuse them
            self.rt.bus.enqueue("attributes", rec.to_dict())

    def _reidentify(self, rec: FrameRecord) -> list[tuple[int, int]]:
        """Feed the encodings to the stream's tracker; returns ``(merged, survivor)`` ids
        for the sink: merges made now, and earlier ones this record's faces still carry.

        Relabels ``rec.faces`` with the surviving ids.
        """
        cfg = self.rt.config
        if cfg.tracker.model != "kalman":
            return []
        merges: list[tuple[int, int]] = []
        relabels: list[tuple[int, int]] = []
        observed = False
        with self.states.locked(rec.stream, rec.session, LOCK_WAIT_S) as held:
            if not held:
                self.rt.metrics.inc("facepipe_reid_skipped_total", {"stream": rec.stream})
                return []
            state = self.states.load(rec.stream, rec.session)
            tracker = state.tracker
            assert isinstance(tracker, KalmanTracker)
            for face in rec.faces:
                if face.track_id is None:
                    continue
                tid = tracker.resolve(face.track_id)  # merged earlier?
                if tid != face.track_id:
                    # tell the sink again: harmless if it folded the track already, and
                    # it completes a merge whose job was lost (a worker died after
                    # saving the tracker state)
                    relabels.append((face.track_id, tid))
                    face.track_id = tid
                if face.encoding is None or (
                    (face.quality or 0.0) < cfg.recognition.min_unknown_quality
                ):
                    continue
                observed = True
                now = tracker.observe_encoding(face.track_id, face.encoding)
                if now is not None and now != face.track_id:  # merged now
                    merges.append((face.track_id, now))
                    face.track_id = now
            if observed:  # the state changed (appearances, perhaps a merge)
                self.states.save(rec.stream, rec.session, state)
        # a track job that found the lock taken returned; make sure the stream moves on
        if self.states.frame_waiting(rec.stream, rec.session, state.next_seq):
            self.rt.bus.enqueue("track", {"stream": rec.stream, "session": rec.session})
        if merges:
            self.rt.metrics.inc("facepipe_tracks_merged_total", {"stream": rec.stream}, len(merges))
        return merges + [r for r in relabels if r not in merges]


STAGE = RecognizeStage


def handle(payload: dict[str, Any]) -> None:
    get_stage("recognize").handle(payload)
