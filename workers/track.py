"""Track stage: per stream, strictly in sequence order, whichever worker runs it.

A track job only names a stream. The worker takes the stream's lock in Redis, loads the
tracker state from Redis, consumes consecutive detect results from the stream's buffer,
saves the state and releases the lock, so any track worker can continue any stream.
A frame whose detect result never arrives (its worker died) is skipped after
``tracker.gap_timeout_s`` and counted as dropped (``lost``).

For each frame it assigns track ids, chooses which faces to sample (a track when it is
confirmed, then every ``sampling.every_n_frames`` frames up to ``sampling.max_samples``),
sends the samples to the recognize stage (which passes them on to attributes), and sends
the tracked frames to the sink.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from pipeline.record import Face, FrameRecord
from pipeline.runtime import Runtime
from pipeline.tracking import IoUTracker
from pipeline.tracking.kalman import KalmanTracker
from workers.base import Stage, get_stage

LOCK_MS = 30_000
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def face_quality(face: Face) -> float:
    """Sample/snapshot preference: bigger faces first (height in pixels x clipped score)."""
    return float(face.box[3]) * (1.0 + min(max(face.score, 0.0), 1.0))


class TrackStage(Stage):
    name = "track"

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self._release = rt.bus.conn.register_script(_RELEASE)

    def keys(self, stream: str, session: str) -> dict[str, str]:
        k = self.rt.bus.key
        return {
            "detected": k("detected", stream, session),
            "state": k("tracker", stream, session),
            "lock": k("tracker-lock", stream, session),
        }

    def process(self, payload: dict[str, Any]) -> None:
        stream, session = payload["stream"], payload["session"]
        keys = self.keys(stream, session)
        conn = self.rt.bus.conn
        while True:
            token = secrets.token_hex(8)
            if not conn.set(keys["lock"], token, nx=True, px=LOCK_MS):
                return  # another worker holds the stream; it re-checks after releasing
            try:
                next_seq = self._advance(stream, session, keys)
            finally:
                self._release(keys=[keys["lock"]], args=[token])
            if not conn.hexists(keys["detected"], str(next_seq)):
                return

    def _load(self, key: str) -> tuple[IoUTracker | KalmanTracker, int, float | None]:
        raw = self.rt.bus.conn.get(key)
        cfg = self.rt.config.tracker
        cls = KalmanTracker if cfg.model == "kalman" else IoUTracker
        if raw is None:
            return cls(cfg.iou_threshold, cfg.max_missed, cfg.min_hits), 0, None
        data = json.loads(raw)
        return cls.from_dict(data["tracker"]), data["next_seq"], data.get("waiting_since")

    def _advance(self, stream: str, session: str, keys: dict[str, str]) -> int:
        bus, conn = self.rt.bus, self.rt.bus.conn
        tracker, next_seq, waiting_since = self._load(keys["state"])
        out: list[FrameRecord] = []
        while True:
            raw = conn.hget(keys["detected"], str(next_seq))
            if raw is None:
                if not self._gap_expired(waiting_since):
                    if waiting_since is None and (
                        conn.hlen(keys["detected"]) > 0
                        or next_seq <= bus.stream_counts(stream, session).get("end_seq", -1)
                    ):
                        waiting_since = time.time()
                    break
                # give up on the missing frame: count it, move on
                rec = FrameRecord(stream=stream, session=session, seq=next_seq, ts=time.time())
                rec.dropped = "lost"
            else:
                conn.hdel(keys["detected"], str(next_seq))
                rec = FrameRecord.from_json(raw)
            waiting_since = None
            self._track(tracker, rec)
            out.append(rec)
            next_seq += 1
        conn.set(
            keys["state"],
            json.dumps(
                {"tracker": tracker.to_dict(), "next_seq": next_seq, "waiting_since": waiting_since}
            ),
            ex=7 * 24 * 3600,
        )
        if out:
            self._emit(out)
        return next_seq

    def _gap_expired(self, waiting_since: float | None) -> bool:
        if waiting_since is None:
            return False
        return time.time() - waiting_since > self.rt.config.tracker.gap_timeout_s

    def _track(self, tracker: IoUTracker | KalmanTracker, rec: FrameRecord) -> None:
        t0 = time.perf_counter()
        if rec.dropped is None:
            confirmed, ended = tracker.update(rec.faces, rec.seq, rec.ts)
            if confirmed:
                self.rt.metrics.inc(
                    "facepipe_tracks_started_total", {"stream": rec.stream}, len(confirmed)
                )
                rec.track_starts = {t.id: [t.first_ts, t.hits] for t in confirmed}
            rec.ended_tracks = ended
        if rec.last:
            rec.ended_tracks = rec.ended_tracks + tracker.end_all()
        rec.timings["track"] = time.perf_counter() - t0
        if rec.dropped is None:
            self._choose_samples(tracker, rec)

    def _choose_samples(self, tracker: IoUTracker | KalmanTracker, rec: FrameRecord) -> None:
        cfg = self.rt.config.sampling
        for face in rec.faces:
            t = tracker.get(face.track_id) if face.track_id is not None else None
            if t is None or min(face.box[2], face.box[3]) < cfg.min_face_px:
                continue
            if t.samples < cfg.max_samples and rec.seq - t.last_sample_seq >= cfg.every_n_frames:
                t.samples += 1
                t.last_sample_seq = rec.seq
                face.quality = face_quality(face)

    def _emit(self, records: list[FrameRecord]) -> None:
        bus = self.rt.bus
        for rec in records:
            sampled = [f for f in rec.faces if f.quality is not None]
            if sampled:
                # recognize first; it hands the faces, with their encodings, to the
                # attributes stage (the transfer/ensemble backends reuse the encoding)
                sample = FrameRecord.from_dict({**rec.to_dict(), "faces": []})
                sample.faces = sampled
                sample.ended_tracks = []
                bus.enqueue("recognize", sample.to_dict())
        bus.enqueue("sink", {"kind": "observations", "records": [r.to_dict() for r in records]})


STAGE = TrackStage


def handle(payload: dict[str, Any]) -> None:
    get_stage("track").handle(payload)
