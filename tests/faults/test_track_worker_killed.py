"""A track worker killed (kill -9) in the middle of a hold of a stream's lock: another track
worker takes the stream over as soon as the dead one's heartbeat is gone, and every frame
and every encoding of the dead hold is used once, as if nothing had happened.

Real redis-server, real sink and track worker processes. The frames (two faces whose
boxes are made in code) go straight into the stream's ordered buffer, as the detect stage
writes them, and the recognize stage's answers (:class:`~pipeline.record.Encodings`) into
the stream's list; no recognize worker runs, so the samples the track stage sends stay in
the recognize queue, where the test reads them.

The first track worker runs this module as its main (``python -m
tests.faults.test_track_worker_killed worker track``): the real worker, except that
``StreamTracker.step`` stops for good at one frame of one stream (:func:`stall_at`),
after writing down which frames it stepped. So the kill lands at a known point of a hold:
the lock taken, the hold's encodings applied and some of its frames tracked in memory,
nothing of the hold written (its writes and the lock's release are one transaction at
its end). Redis is checked to be in that state before and after the kill.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.frames import FrameStore
from pipeline.metrics import Metrics
from pipeline.record import Encodings, Face, FrameBatch, FrameRecord
from pipeline.store import EventStore

from .conftest import start_workers, wait_for, workers_of

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STALL_ENV = "TRACKKILL_STALL"  # the victim's stall_at() spec (JSON)
SESSION = "s1"
FRAMES = 60
FIRST = 12  # frames of a stream's first hold: committed before the kill
STALL_AT = FIRST + 3  # the killed hold stepped FIRST .. STALL_AT - 1 when it was killed
A_WIDTH, B_WIDTH = 80, 64  # face A is in every frame; face B in frames 4-29 (its track ends)
EVENT_FIELDS = ("track_id", "n_frames", "first_frame", "last_frame", "identity_samples",
                "attribute_samples", "ended")  # fmt: skip


def frames(stream: str, t0: float) -> list[FrameRecord]:
    """The stream's detected frames (the same faces, seqs and times for every stream)."""
    recs = []
    for seq in range(FRAMES):
        faces = [Face(box=(40 + 3 * seq, 120, A_WIDTH, A_WIDTH), score=0.95)]
        if 4 <= seq < 30:
            faces.append(Face(box=(420 - 2 * seq, 200, B_WIDTH, B_WIDTH), score=0.9))
        recs.append(FrameRecord(stream=stream, session=SESSION, seq=seq, ts=t0 + seq / 15,
                                key=f"facepipe:frame:{stream}:{SESSION}:{seq}",
                                width=640, height=480, faces=faces))  # fmt: skip
    return recs


def put_frames(bus: Any, recs: list[FrameRecord]) -> None:
    """The frames' images (small: nobody looks at them here; the track stage says who
    still needs each, and one nobody needs is deleted)."""
    store = FrameStore(bus.conn)
    for rec in recs:
        store.put(rec.key, np.full((48, 64, 3), rec.seq, np.uint8))


def holders(bus: Any, stream: str) -> list[list[str]]:
    """Per frame of the stream: who holds its image (empty: deleted)."""
    return [sorted(bus.frame_holders(f"facepipe:frame:{stream}:{SESSION}:{seq}"))
            for seq in range(FRAMES)]  # fmt: skip


def samples(bus: Any, stream: str) -> list[list[tuple[int, int, int]]]:
    """The stream's recognize jobs, in order: per sampled frame ``(seq, track id, face
    width)`` of each sampled face."""
    out = []
    for job in bus.queue("recognize").get_jobs():
        batch = FrameBatch.from_dict(job.args[0])
        if batch.stream == stream:
            out.append([(r.seq, f.track_id, f.box[2]) for r in batch.records for f in r.faces])
    return out


def state(bus: Any, stream: str) -> dict[str, Any]:
    return bus.load_tracker_state(stream, SESSION) or {}


def lock_holder(bus: Any, stream: str) -> str | None:
    raw = bus.conn.get(bus.key("tracker-lock", stream, SESSION))
    return None if raw is None else raw.decode()


def first_hold(bus: Any, stream: str, t0: float) -> None:
    """Register the stream and give the track stage its first FIRST frames; returns once
    a hold consumed them (the state says so: written with the lock's release)."""
    bus.register_stream(stream, SESSION, {"source": "test", "live": False})
    bus.count_frame(stream, SESSION, "captured", FRAMES)
    recs = frames(stream, t0)[:FIRST]
    put_frames(bus, recs)
    bus.buffer_put_many(recs)
    wait_for(lambda: state(bus, stream).get("next_seq") == FIRST, 30, f"{stream}'s first hold")


def the_rest(bus: Any, stream: str, t0: float) -> dict[str, int]:
    """The recognize stage's answers to the first hold's samples and the other frames, in
    one transaction (one poke: the next hold reads them all). Two answers name track A
    (a third would settle its name and stop its sampling: answers applied twice would),
    three name track B (settled: answers lost would leave it sampled further). Returns
    the two track ids."""
    first = [s for job in samples(bus, stream) for s in job]
    ids = {"A": next(t for _, t, w in first if w == A_WIDTH),
           "B": next(t for _, t, w in first if w == B_WIDTH)}  # fmt: skip
    answers = [
        Face(box=(0, 0, w, w), track_id=ids[who], name=name, quality=0.9)
        for who, w, name, n in (("A", A_WIDTH, "alice", 2), ("B", B_WIDTH, "bob", 3))
        for _ in range(n)
    ]
    recs = frames(stream, t0)[FIRST:]
    put_frames(bus, recs)
    bus.set_end(stream, SESSION, FRAMES - 1)
    pipe = bus.pipeline()
    bus.send_encodings(Encodings(stream, SESSION, 2, answers), pipeline=pipe)
    bus.buffer_put_many(recs, pipeline=pipe)
    pipe.execute()
    return ids


def test_a_track_worker_killed_mid_hold_loses_nothing_and_doubles_nothing(
    bus, procs, env, tmp_path
):
    t0 = time.time()
    start_workers(procs, bus, ("sink",))
    marker = tmp_path / "stalled.json"
    stall = {"stream": "killed", "seq": STALL_AT, "marker": str(marker)}
    victim = procs.start(
        "worker", "track", "--name", "track-victim",
        name="worker-track-victim",
        module="tests.faults.test_track_worker_killed",
        extra_env={
            STALL_ENV: json.dumps(stall),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        },
    )  # fmt: skip
    wait_for(lambda: workers_of(bus, "track"), 60, "the track worker to register")
    track_entries = bus.entries_key("track")

    def victims_entry() -> int:
        """The track stream's entries; asserts the one pending is the victim's."""
        pending = bus.entries_pending("track", 0)
        assert [p["consumer"] for p in pending] == [b"track-victim"], pending
        return int(bus.conn.xlen(track_entries))

    # a clean run of the stream: what its events, samples and state are without a kill
    first_hold(bus, "clean", t0)
    the_rest(bus, "clean", t0)
    wait_for(lambda: bus.stream_done("clean", SESSION), 30, "the clean stream to be done")

    # the same stream; the track worker stops in its second hold, at frame STALL_AT
    first_hold(bus, "killed", t0)
    sampled = samples(bus, "killed")
    held = holders(bus, "killed")[:FIRST] + [["pipeline"]] * (FRAMES - FIRST)
    ids = the_rest(bus, "killed", t0)
    wait_for(marker.exists, 30, "the track worker to stop mid-hold")
    # it stepped 0 .. FIRST - 1 in the first hold, FIRST .. STALL_AT - 1 in this one
    assert json.loads(marker.read_text()) == list(range(STALL_AT))

    def the_hold_is_open() -> None:
        """Nothing of the hold was written: the lock is the victim's, the state, the
        frames and the encodings are as they were before the hold."""
        assert (lock_holder(bus, "killed") or "").startswith("track-victim|")
        assert state(bus, "killed")["next_seq"] == FIRST
        assert bus.buffer_seqs("killed", SESSION) == list(range(FIRST, FRAMES))
        assert bus.conn.llen(bus.key("encodings", "killed", SESSION)) == 1
        assert samples(bus, "killed") == sampled
        assert bus.stream_counts("killed", SESSION)["processed"] == FIRST
        assert holders(bus, "killed") == held  # no image let go of, none held more

    the_hold_is_open()
    # the track stage is a stream stage: the hold's message is an entry of the track
    # stream, taken (pending) by the victim
    assert victims_entry() == 1

    # a second track worker: while the victim's heartbeat lives, it leaves the stream alone
    standby = procs.start("worker", "track", "--name", "track-standby",
                          name="worker-track-standby")  # fmt: skip
    wait_for(lambda: len(workers_of(bus, "track")) == 2, 60, "the second track worker")
    bus.poke_track("killed", SESSION)
    # its job's first step (atomic with trying the lock) clears the stream's pending flag
    wait_for(lambda: not bus.track_pending("killed", SESSION), 20, "the standby to try")
    # ... and, the lock being the victim's, lets its message go: only the victim's is left
    wait_for(lambda: bus.conn.xlen(track_entries) == 1, 20, "the standby's message to be done")
    the_hold_is_open()
    assert victims_entry() == 1

    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(10) == -signal.SIGKILL
    killed_at = time.monotonic()
    the_hold_is_open()  # the dead hold never ended
    assert victims_entry() == 1

    # the victim's job is recovered once its heartbeat expires; the standby runs it and
    # takes the dead worker's lock over
    wait_for(lambda: bus.stream_done("killed", SESSION), 30, "the killed stream to be done")
    took = time.monotonic() - killed_at
    print(f"the stream was done {took:.1f} s after the kill")
    wait_for(lambda: bus.depth("sink") == 0 and bus.busy("sink") == 0, 30, "the sink to finish")
    assert standby.poll() is None, procs.log(standby)
    assert "took over the tracker lock of a dead worker" in procs.log(standby)

    metrics = Metrics(bus)
    assert metrics.total("facepipe_tracker_takeovers_total", stream="killed") == 1
    assert metrics.total("facepipe_tracker_takeovers_total") == 1
    assert metrics.total("facepipe_jobs_recovered_total", stage="track") == 1
    # no message left behind or failed: the track and sink streams are empty
    wait_for(lambda: bus.conn.xlen(track_entries) == 0, 10, "the track stream to be empty")
    for stage in ("track", "sink"):
        assert bus.conn.xlen(bus.entries_key(stage)) == 0, stage
        assert bus.entries_pending(stage, 0) == [], stage
        assert bus.failed(stage) == 0, bus.failed_entries(stage)
    assert metrics.total("facepipe_jobs_recovered_total", stage="sink") == 0
    # every frame accounted for once: processed (none dropped), none sent to the sink twice
    for stream in ("clean", "killed"):
        counts = bus.stream_counts(stream, SESSION)
        assert counts["captured"] == counts["processed"] == FRAMES, (stream, counts)
        assert not any(k.startswith("dropped") for k in counts), (stream, counts)
    assert metrics.total("facepipe_frames_duplicate_total") == 0
    assert lock_holder(bus, "killed") is None
    assert bus.buffer_len("killed", SESSION) == 0
    assert bus.conn.llen(bus.key("encodings", "killed", SESSION)) == 0

    # the answers applied once (A's name unsettled: 2 votes; B's track ended), the same
    # samples sent, each once, and the same events stored as without the kill
    killed, clean = state(bus, "killed"), state(bus, "clean")
    assert killed["next_seq"] == FRAMES
    assert killed["names"] == {str(ids["A"]): {"alice": 2}}
    assert killed["answered"] == {str(ids["A"]): 2}
    assert (killed["names"], killed["answered"]) == (clean["names"], clean["answered"])
    assert samples(bus, "killed") == samples(bus, "clean")
    assert holders(bus, "killed") == holders(bus, "clean")
    store = EventStore(load_config().store_url)

    def events(stream: str) -> list[tuple[object, ...]]:
        return [tuple(e[k] for k in EVENT_FIELDS) for e in store.events(stream=stream)]

    assert len(events("clean")) == 2, events("clean")  # faces A and B
    assert events("killed") == events("clean")


def stall_at(spec: str) -> None:
    """In the victim's process: ``StreamTracker.step`` stops for good (until the process
    is killed) at frame ``seq`` of ``stream``, once it has written the frames of that
    stream it stepped (a JSON list) to ``marker``. ``spec``: JSON of those three."""
    import threading

    from pipeline.tracking.stream import StreamTracker

    where = json.loads(spec)
    step = StreamTracker.step
    stepped: list[int] = []

    def stalling_step(self: StreamTracker, rec: FrameRecord) -> Any:
        if rec.stream == where["stream"]:
            if rec.seq == where["seq"]:
                tmp = Path(where["marker"] + ".tmp")
                tmp.write_text(json.dumps(stepped))
                tmp.replace(where["marker"])
                threading.Event().wait()  # mid-hold, for good
            stepped.append(rec.seq)
        return step(self, rec)

    StreamTracker.step = stalling_step  # type: ignore[method-assign]


if __name__ == "__main__":  # the victim: `facepipe` with a track stage that stops mid-hold
    stall_at(os.environ[STALL_ENV])
    from pipeline.cli import main

    main()
