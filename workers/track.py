"""Track stage: per stream, strictly in sequence order, whichever worker runs it.

A track job only names a stream. The worker takes the stream's lock in Redis, loads the
tracker state from Redis, consumes consecutive detect results from the stream's buffer,
saves the state and releases the lock, so any track worker can continue any stream.
A frame whose detect result never arrives (its worker died) is skipped after
``tracker.gap_timeout_s`` and counted as dropped (``lost``).

For each frame it assigns track ids, chooses which faces to sample, sends the samples to
the recognize stage (which passes them on to attributes), and sends the tracked frames to
the sink. Samples are chosen by face quality, up to ``sampling.max_samples`` per track: the
first when the track is confirmed (so it gets a name quickly), then the best face of each
window of ``sampling.every_n_frames`` frames by what the detector tells (size x frontal
pose from its keypoints x confidence: :func:`pipeline.recognition.quality.detection_quality`);
the recognize stage then weighs each sample by its full quality (with sharpness). A
window's best face waits in the stream state until the window closes or the track ends.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.recognition.quality import detection_quality
from pipeline.record import Face, FrameRecord
from pipeline.runtime import Runtime
from pipeline.tracking.state import StreamState, TrackerStates
from workers.base import Stage, get_stage

# frames advanced per hold of the stream's lock: a backlog is worked off in batches, so the
# lock is never held near its expiry and the recognize stage gets its turn in between
MAX_FRAMES_PER_HOLD = 100


class TrackStage(Stage):
    name = "track"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.states = TrackerStates(rt.bus, rt.config.tracker)

    def process(self, payload: dict[str, Any]) -> None:
        stream, session = payload["stream"], payload["session"]
        while True:
            with self.states.locked(stream, session) as held:
                if not held:
                    return  # another worker holds the stream; it re-checks after releasing
                next_seq = self._advance(stream, session)
            if not self.states.frame_waiting(stream, session, next_seq):
                return

    def _advance(self, stream: str, session: str) -> int:
        bus, conn = self.rt.bus, self.rt.bus.conn
        detected = bus.detected_key(stream, session)
        state = self.states.load(stream, session)
        out: list[FrameRecord] = []
        samples: list[FrameRecord] = []
        while len(out) < MAX_FRAMES_PER_HOLD:
            raw = conn.hget(detected, str(state.next_seq))
            if raw is None:
                if not self._gap_expired(state.waiting_since):
                    if state.waiting_since is None and (
                        conn.hlen(detected) > 0
                        or state.next_seq <= bus.stream_counts(stream, session).get("end_seq", -1)
                    ):
                        state.waiting_since = time.time()
                    break
                # give up on the missing frame: count it, move on
                rec = FrameRecord(
                    stream=stream, session=session, seq=state.next_seq, ts=time.time()
                )
                rec.dropped = "lost"
            else:
                conn.hdel(detected, str(state.next_seq))
                rec = FrameRecord.from_json(raw)
            state.waiting_since = None
            self._track(state, rec)
            samples += self._choose_samples(state, rec)
            out.append(rec)
            state.next_seq += 1
        self.states.save(stream, session, state)
        if out:
            self._emit(out, samples)
        return state.next_seq

    def _gap_expired(self, waiting_since: float | None) -> bool:
        if waiting_since is None:
            return False
        return time.time() - waiting_since > self.rt.config.tracker.gap_timeout_s

    def _track(self, state: StreamState, rec: FrameRecord) -> None:
        tracker = state.tracker
        t0 = time.perf_counter()
        cut_ended = tracker.end_all() if rec.cut else []  # a new shot: motion says nothing
        if rec.dropped is None and not rec.detected:  # detection skipped: predict
            # tracks matched in the latest detection run only: a lost track's face is
            # not reported where nobody saw it
            rec.faces = [
                Face(box=box, score=0.0, track_id=tid)
                for tid, box in tracker.predict(rec.seq).items()
                if tracker.get(tid).missed == 0
            ]
        elif rec.dropped is None:
            confirmed, ended = tracker.update(rec.faces, rec.seq, rec.ts)
            if confirmed:
                self.rt.metrics.inc(
                    "facepipe_tracks_started_total", {"stream": rec.stream}, len(confirmed)
                )
                rec.track_starts = {t.id: [t.first_ts, t.hits, t.first_seq] for t in confirmed}
            rec.ended_tracks = ended
        rec.ended_tracks = cut_ended + rec.ended_tracks
        if rec.last:
            rec.ended_tracks = rec.ended_tracks + tracker.end_all()
        rec.timings["track"] = time.perf_counter() - t0

    def _choose_samples(self, state: StreamState, rec: FrameRecord) -> list[FrameRecord]:
        """Faces of this frame (or the best of a window that closes now) to recognize."""
        cfg, tracker = self.rt.config.sampling, state.tracker
        chosen: list[dict[str, Any]] = []
        if rec.dropped is None and rec.detected:  # samples only from detected faces
            for face in rec.faces:
                t = tracker.get(face.track_id) if face.track_id is not None else None
                if (
                    t is None
                    or t.samples >= cfg.max_samples
                    or min(face.box[2], face.box[3]) < cfg.min_face_px
                ):
                    continue
                cand = _candidate(rec, face)
                if t.samples == 0:  # just confirmed: a name as soon as possible
                    chosen.append(cand)
                else:  # the best face of the window so far waits for the window's end
                    best = state.candidates.get(t.id)
                    if best is None or cand["face"]["quality"] > best["face"]["quality"]:
                        state.candidates[t.id] = cand
                if t.samples > 0 and rec.seq - t.last_sample_seq < cfg.every_n_frames:
                    continue
                if t.samples > 0:
                    chosen.append(state.candidates.pop(t.id))
                t.samples += 1
                t.last_sample_seq = rec.seq
        # a track that ended (or was merged away) sends the best face it was holding
        for tid in [tid for tid in state.candidates if tracker.get(tid) is None]:
            chosen.append(state.candidates.pop(tid))
        return _sample_records(rec, chosen)

    def _emit(self, records: list[FrameRecord], samples: list[FrameRecord]) -> None:
        bus = self.rt.bus
        for sample in samples:
            # recognize first; it hands the faces, with their encodings, to the
            # attributes stage (the transfer/ensemble backends reuse the encoding)
            bus.enqueue("recognize", sample.to_dict())
        bus.enqueue("sink", {"kind": "observations", "records": [r.to_dict() for r in records]})


STAGE = TrackStage


def handle(payload: dict[str, Any]) -> None:
    get_stage("track").handle(payload)


def _candidate(rec: FrameRecord, face: Face) -> dict[str, Any]:
    """A face to sample, with what the recognize stage needs of its frame (JSON)."""
    sampled = Face.from_dict(face.to_dict())
    # detection quality: picks the window's best face; recognize replaces it with the full one
    sampled.quality = round(detection_quality(face), 4)
    return {
        "seq": rec.seq, "ts": rec.ts, "key": rec.key, "width": rec.width,
        "height": rec.height, "live": rec.live, "face": sampled.to_dict(),
    }  # fmt: skip


def _sample_records(rec: FrameRecord, chosen: list[dict[str, Any]]) -> list[FrameRecord]:
    """One recognize job per frame the chosen faces come from."""
    by_seq: dict[int, FrameRecord] = {}
    for c in chosen:
        sample = by_seq.get(c["seq"])
        if sample is None:
            sample = by_seq[c["seq"]] = FrameRecord(
                stream=rec.stream, session=rec.session, seq=c["seq"], ts=c["ts"],
                key=c["key"], width=c["width"], height=c["height"], live=c["live"],
            )  # fmt: skip
        sample.faces.append(Face.from_dict(c["face"]))
    return [by_seq[k] for k in sorted(by_seq)]
