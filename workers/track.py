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

from pipeline.record import FrameRecord
from pipeline.runtime import Runtime
from pipeline.tracking.state import TrackerStates
from pipeline.tracking.stream import StreamTracker
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
        tracking = StreamTracker(self.rt.config.tracker, self.rt.config.sampling, state)
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
            rec, chosen = tracking.step(rec)
            if rec.track_starts:
                self.rt.metrics.inc(
                    "facepipe_tracks_started_total", {"stream": stream}, len(rec.track_starts)
                )
            samples += chosen
            out.append(rec)
        self.states.save(stream, session, state)
        if out:
            self._emit(out, samples)
        return state.next_seq

    def _gap_expired(self, waiting_since: float | None) -> bool:
        if waiting_since is None:
            return False
        return time.time() - waiting_since > self.rt.config.tracker.gap_timeout_s

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
