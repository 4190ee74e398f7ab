"""Track stage: per stream, strictly in sequence order, whichever worker runs it.

A track job only names a stream (:class:`~pipeline.record.TrackJob`); a stream has at
most one waiting in the queue (``Bus.poke_track``). The worker clears the stream's
pending flag, takes the stream's lock, loads the stream's state (tracker, next frame,
pending samples), the encodings the recognize stage sent for re-identification and the
first run of consecutive frames from the stream's ordered buffer (one round trip:
``Bus.track_begin``), consumes those frames, then sends what it made, saves the state,
removes the consumed frames from the buffer and releases the lock in one transaction
that also says whether more work came meanwhile (``Bus.track_end``), so any track worker
can continue any stream. A worker killed mid-hold leaves the state and the frames as they
were: the next hold consumes them again, nothing is lost (the lock's token names its
worker: once that worker's heartbeat is gone the lock is taken over, else after LOCK_S).
The track stage is the only writer of the tracker state. A frame whose detect result
never arrives (its worker died) is skipped after ``tracker.gap_timeout_s`` and counted as
dropped (``lost``).

What happens to each frame and to the encodings is
:class:`~pipeline.tracking.stream.StreamTracker`'s (track ids, shot cuts, predicted boxes
on frames detection skipped, samples chosen by quality, re-identification merges); this
stage sends its output: the samples one hold chose, as one job, to the recognize stage
(which passes them on to attributes), the tracked frames to the sink
(:class:`~pipeline.record.Observations`) and each merge (:class:`~pipeline.record.Merge`)
to the sink, which folds the merged track's event into the survivor's. A merge is sent
again whenever encodings of the merged id arrive later: harmless if the sink folded it
already, and it completes a merge whose message was lost.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from pipeline.bus import TrackBegun, sample_holder
from pipeline.record import Encodings, FrameBatch, FrameRecord, Merge, Observations, TrackJob
from pipeline.runtime import Runtime
from pipeline.tracking.state import LOCK_S, TrackerStates
from pipeline.tracking.stream import StreamState, StreamTracker
from workers.base import Stage, beating_worker, run_job

log = logging.getLogger(__name__)

# frames advanced per hold of the stream's lock: a backlog is worked off in batches, so the
# lock is never held near its expiry and encodings are applied in between
MAX_FRAMES_PER_HOLD = 100


class TrackStage(Stage):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.states = TrackerStates(rt.bus, rt.config.tracker)

    def process(self, job: TrackJob) -> None:
        stream, session, bus = job.stream, job.session, self.rt.bus
        # WORKER|RANDOM: a hold whose worker died is taken over as soon as its heartbeat
        # is gone, not after LOCK_S (a worker that beats; in-process use: RANDOM alone)
        worker = beating_worker()
        token = f"{worker}|{secrets.token_hex(16)}" if worker else secrets.token_hex(16)
        while True:
            begun = bus.track_begin(stream, session, token, LOCK_S, MAX_FRAMES_PER_HOLD)
            if begun is None:
                return  # another worker holds the stream; it re-checks as it releases it
            if not self._advance(stream, session, begun, token):
                return

    def _advance(self, stream: str, session: str, begun: TrackBegun, token: str) -> bool:
        """One hold of the lock (taken by :meth:`~pipeline.bus.Bus.track_begin`, with the
        state and the encodings waiting): encodings, then up to ``MAX_FRAMES_PER_HOLD``
        frames. Returns whether work waits for the stream (frames or encodings that came
        meanwhile).

        The frames come from the ordered buffer a run at a time (the first with the lock,
        any further in one round trip each); the state, the jobs for the next stages, the
        frames' observations and the lock's release go out in one transaction."""
        bus, cfg = self.rt.bus, self.rt.config
        if begun.took_over:
            log.warning("%s/%s: took over the tracker lock of a dead worker", stream, session)
            self.rt.metrics.inc("facepipe_tracker_takeovers_total", {"stream": stream})
        state = self.states.from_data(begun.state)
        held_before = waiting_keys(state)
        tracking = StreamTracker(
            cfg.tracker, cfg.sampling, state, cfg.recognition.min_unknown_quality
        )
        merges = self._observe(tracking, stream, session, begun.encodings)
        out: list[FrameRecord] = []
        samples: list[FrameRecord] = []
        taken = begun.taken  # the first run came with the lock
        first_seq = state.next_seq
        run, waiting, end_seq = list(reversed(taken.frames)), taken.waiting, taken.end_seq
        # the buffer lacks frame state.next_seq (as of the last take)
        missing = len(taken.frames) < begun.most
        while len(out) < MAX_FRAMES_PER_HOLD:
            if not run and not missing:
                most = MAX_FRAMES_PER_HOLD - len(out)
                taken = bus.buffer_take_run(
                    stream, session, state.next_seq, most, below=first_seq
                )  # (this hold's frames stay in the buffer until its end)
                run, waiting, end_seq = list(taken.frames), taken.waiting, taken.end_seq
                run.reverse()  # pop() from the end: in sequence order
                missing = len(taken.frames) < most
            rec = run.pop() if run else None
            if rec is None:
                if not self._gap_expired(state.waiting_since):
                    if state.waiting_since is None and (
                        waiting > 0 or (end_seq is not None and state.next_seq <= end_seq)
                    ):
                        state.waiting_since = time.time()
                    break
                # give up on the missing frame: count it, move on
                rec = FrameRecord(
                    stream=stream, session=session, seq=state.next_seq, ts=time.time()
                )
                rec.dropped = "lost"
                missing = False  # look again from the next seq on
            state.waiting_since = None
            rec, chosen = tracking.step(rec)
            if rec.track_starts:
                self.rt.metrics.inc(
                    "facepipe_tracks_started_total", {"stream": stream}, len(rec.track_starts)
                )
            samples += chosen
            out.append(rec)
        samples = by_frame(samples)
        pipe = bus.pipeline()
        self._emit(merges, out, samples, pipe)
        bus.hold_frames(frame_holders(out, samples, held_before, waiting_keys(state)), pipe)
        # the state, the consumed frames out of the buffer, the lock: only if still held
        bus.track_end(stream, session, token, state.to_dict(), pipe, len(begun.encodings))
        released, more = pipe.execute()[-1]
        if not released:  # expired while held (and perhaps taken by another worker)
            log.warning("tracker lock of %s/%s expired while held", stream, session)
        return bool(more)

    def _observe(
        self, tracking: StreamTracker, stream: str, session: str, encodings: list[Encodings]
    ) -> list[Merge]:
        """Apply the encodings taken for the stream; the merges to tell the sink."""
        merged: list[tuple[int, int]] = []
        pairs: list[tuple[int, int]] = []
        for msg in encodings:
            got = tracking.observe(msg.faces)
            merged += got.merged
            pairs += [p for p in got.all() if p not in pairs]
        if merged:
            self.rt.metrics.inc("facepipe_tracks_merged_total", {"stream": stream}, len(merged))
        return [Merge(stream, session, a, b) for a, b in pairs]

    def _gap_expired(self, waiting_since: float | None) -> bool:
        if waiting_since is None:
            return False
        return time.time() - waiting_since > self.rt.config.tracker.gap_timeout_s

    def _emit(
        self,
        merges: list[Merge],
        records: list[FrameRecord],
        samples: list[FrameRecord],
        pipeline: Any,
    ) -> None:
        bus = self.rt.bus
        for merge in merges:
            bus.send("sink", merge, pipeline=pipeline)
        if samples:
            # the hold's samples in one job (one per stage: the fixed cost of a job is
            # most of a sample's); recognize first: it hands the faces, with their
            # encodings, to the attributes stage (the transfer/ensemble backends reuse
            # the encoding)
            bus.send("recognize", FrameBatch(samples), pipeline=pipeline)
        if records:
            bus.send("sink", Observations(records), pipeline=pipeline)


def by_frame(samples: list[FrameRecord]) -> list[FrameRecord]:
    """The samples of one hold, one record per sampled frame (in the order chosen): two
    windows that chose faces of one frame in different steps share its record, so its
    image is read once downstream and it has one holder (``sample_holder`` of the
    record's faces' tracks)."""
    by_seq: dict[int, FrameRecord] = {}
    for sample in samples:
        have = by_seq.get(sample.seq)
        if have is None:
            by_seq[sample.seq] = sample
        else:
            have.faces += sample.faces
    return list(by_seq.values())


def waiting_keys(state: StreamState) -> set[str]:
    """Keys of the frames whose images the stream's state still needs: the best faces of
    open sampling windows, which go to recognition later."""
    return {c["key"] for c in state.candidates.values() if c.get("key")}


def frame_holders(
    out: list[FrameRecord],
    samples: list[FrameRecord],
    held_before: set[str],
    held_after: set[str],
) -> dict[str, tuple[list[str], list[str]]]:
    """Who needs the images of the frames one hold of the track stage saw (those it
    consumed, held by ``pipeline`` until now, and those its state held, by ``track``):
    ``{key: (holders to add, holders to remove)}`` for
    :meth:`~pipeline.bus.Bus.hold_frames`. A frame nobody samples, whose face no window
    waits with and that is not the newest shown, loses its image now."""
    latest = next((r.key for r in reversed(out) if r.key and r.dropped is None), None)
    adds: dict[str, list[str]] = {}
    for sample in samples:
        if sample.key:
            adds.setdefault(sample.key, []).append(sample_holder(sample))
    changes: dict[str, tuple[list[str], list[str]]] = {}
    for key in {r.key for r in out if r.key} | held_before | set(adds):
        add = adds.get(key, []) + (["latest"] if key == latest else [])
        if key in held_before:  # the state held it: it may let go now
            remove = [] if key in held_after else ["track"]
        else:  # seen for the first time: the stages before tracking let go
            remove = ["pipeline"]
            if key in held_after:
                add.append("track")
        if add or remove:
            changes[key] = (add, remove)
    return changes


def handle(payload: dict[str, Any]) -> None:
    run_job(TrackStage, payload)
