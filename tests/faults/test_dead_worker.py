"""A worker killed mid-job (kill -9): its job is recovered within a few heartbeats, and
the retried sink batch counts no frame twice. A sink message that fails every time is
retried twice, then filed as failed, and the worker goes on.

The sink is a stream stage (``pipeline/stages.py``): its messages are entries of a Redis
stream read by a consumer group; the detect stage's are rq jobs."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pytest
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from pipeline.metrics import Metrics
from pipeline.record import Face, FrameRecord, Observations

from .conftest import start_workers, wait_for, workers_of

pytestmark = pytest.mark.slow

RECOVERY_S = 2.0  # workers.job_recovery_s in the test's environment (conftest)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_a_killed_sinks_batch_is_recovered_and_counted_once(bus, procs, env, home):
    start_workers(procs, bus, ("sink",))
    procs.start("worker", "sink", name="worker-sink-2")
    wait_for(lambda: len(workers_of(bus, "sink")) == 2, 30, "a second sink worker")
    pids = {w.name: w.pid for w in workers_of(bus, "sink")}

    # hold the event store's write lock: the sink's batch stops mid-message, deterministically
    db = sqlite3.connect(home / "events.db", timeout=30, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    records = [
        FrameRecord(stream="cam", session="s", seq=i, ts=time.time(),
                    faces=[Face(box=(10, 10, 40, 40), score=0.9, track_id=1)])
        for i in range(20)
    ]  # fmt: skip
    bus.register_stream("cam", "s", {"source": "test", "live": False})
    bus.count_frame("cam", "s", "captured", len(records))
    bus.set_end("cam", "s", len(records) - 1)
    bus.send("sink", Observations(records))
    entries = bus.entries_key("sink")
    # the batch is an entry of the sink's stream, taken (pending) by one of the two workers
    (pending,) = wait_for(lambda: bus.entries_pending("sink", 0), 20, "the batch to be taken")
    entry_id, consumer = _text(pending["message_id"]), _text(pending["consumer"])
    assert consumer in pids, (consumer, pids)
    (only,) = bus.conn.xrange(entries)
    assert _text(only[0]) == entry_id and only[1][b"n"] == b"0", only
    # the worker has counted the frames (its first step) and now waits for the lock:
    # killed before that, its retry would count them fresh and see no duplicate
    wait_for(
        lambda: bus.stream_counts("cam", "s").get("processed") == len(records),
        20,
        "the batch's frames to be counted",
    )
    assert bus.busy("sink") == 1 and bus.depth("sink") == 0
    victim = pids[consumer]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    db.execute("ROLLBACK")
    db.close()
    # nobody runs it until the watchdog sends it again: the dead worker's entry stays
    time.sleep(RECOVERY_S / 4)  # its heartbeat lives 3/4 RECOVERY_S longer at least
    assert [_text(e[0]) for e in bus.conn.xrange(entries)] == [entry_id]
    assert _text(bus.entries_pending("sink", 0)[0]["consumer"]) == consumer

    # the other sink worker's watchdog sends it again; the other sink runs it
    wait_for(
        lambda: bus.conn.xlen(entries) == 0 and bus.busy("sink") == 0 and bus.depth("sink") == 0,
        6 * RECOVERY_S,
        "the batch to be recovered and run again",
    )
    took = time.monotonic() - killed_at
    print(f"sink batch recovered {took:.1f} s after the kill")
    assert took < 3 * RECOVERY_S + 2, took  # a few heartbeats, not rq's minutes
    assert Metrics(bus).total("facepipe_jobs_recovered_total", stage="sink") == 1

    # the frames were counted by the killed worker already: counted once, not twice
    counts = bus.stream_counts("cam", "s")
    assert counts["processed"] == len(records), counts
    assert bus.stream_done("cam", "s")
    assert Metrics(bus).total("facepipe_frames_duplicate_total") == len(records)
    assert bus.entries_pending("sink", 0) == []
    assert bus.failed("sink") == 0, bus.failed_entries("sink")
    # and the dead worker, holding nothing now, leaves the consumer group
    from pipeline.bus import STREAM_GROUP

    def consumers() -> set[str]:
        return {_text(c["name"]) for c in bus.conn.xinfo_consumers(entries, STREAM_GROUP)}

    wait_for(lambda: consumer not in consumers(), 3 * RECOVERY_S, "the dead consumer to go")
    assert consumers() == set(pids) - {consumer}


def test_a_sink_message_that_always_fails_is_retried_twice_then_filed_as_failed(bus, procs, env):
    """A sink message whose handler raises every time (a stream name the sink refuses:
    names become paths) runs three times, then is filed in the sink's failed list with
    the traceback; the worker goes on with the next message."""
    (worker,) = start_workers(procs, bus, ("sink",)).values()
    bad = Observations([FrameRecord(stream="../up", session="s", seq=0, ts=time.time())])
    bus.send("sink", bad)
    wait_for(lambda: bus.failed("sink") == 1, 30, "the message to be filed as failed")
    (failed,) = bus.failed_entries("sink")
    assert failed["stage"] == "sink" and failed["attempts"] == 3, failed
    assert json.loads(failed["payload"]) == bad.to_dict()
    assert failed["reason"].startswith("failed in sink-"), failed["reason"]
    assert "Traceback" in failed["reason"] and "BadName" in failed["reason"], failed["reason"]
    assert "bad stream name '../up'" in failed["reason"], failed["reason"]
    assert "refused" not in failed["reason"]  # it ran: a failure, not a refusal
    assert bus.conn.xlen(bus.entries_key("sink")) == 0
    assert bus.entries_pending("sink", 0) == []
    assert bus.busy("sink") == 0 and bus.depth("sink") == 0
    metrics = Metrics(bus)
    assert metrics.total("facepipe_jobs_refused_total", stage="sink") == 0
    assert metrics.total("facepipe_jobs_recovered_total", stage="sink") == 0
    assert not bus.stream_counts("../up", "s")  # nothing of it was counted
    log = procs.log(worker)
    for attempt in (1, 2, 3):
        assert f"failed (attempt {attempt} of 3)" in log, log
    assert "failed for good" in log, log

    # the same worker process goes on with the next message
    bus.send("sink", Observations([FrameRecord(stream="cam", session="s", seq=0, ts=0.0)]))
    wait_for(lambda: bus.stream_counts("cam", "s").get("processed") == 1, 20, "the next message")
    assert worker.poll() is None, procs.log(worker)
    assert [w.pid for w in workers_of(bus, "sink")] == [worker.pid]
    assert bus.failed("sink") == 1
    wait_for(lambda: bus.conn.xlen(bus.entries_key("sink")) == 0, 10, "the stream to be empty")


def test_a_detect_worker_killed_mid_batch_loses_no_frame(bus, procs, env):
    """A batch of frames whose detect worker is killed (kill -9) while it works: nothing
    of the batch was written (its results go out in one transaction at its end), the
    other detect worker runs it again, and every frame reaches the track stage once."""
    import numpy as np

    from pipeline.frames import FrameStore
    from pipeline.record import FrameBatch

    # a slow detector on large frames: the batch takes seconds, so it is killed mid-way
    env.update(FACEPIPE__DETECTOR__BACKEND="hog", FACEPIPE__DETECTOR__OPTIONS__UPSAMPLE="1")
    start_workers(procs, bus, ("detect",))
    procs.start("worker", "detect", name="worker-detect-2")
    wait_for(lambda: len(workers_of(bus, "detect")) == 2, 60, "a second detect worker")
    pids = {w.name: w.pid for w in workers_of(bus, "detect")}

    frames = FrameStore(bus.conn)
    rng = np.random.default_rng(0)
    records = []
    for seq in range(6):
        key = f"facepipe:frame:cam:s:{seq}"
        frames.put(key, rng.integers(0, 255, (1080, 1920, 3), np.uint8))
        records.append(FrameRecord(stream="cam", session="s", seq=seq, ts=time.time(), key=key))
    bus.register_stream("cam", "s", {"source": "test", "live": False})
    bus.count_frame("cam", "s", "captured", len(records))
    bus.set_end("cam", "s", len(records) - 1)
    bus.send("detect", FrameBatch(records))
    registry = StartedJobRegistry(queue=bus.queue("detect"))
    (job_id,) = wait_for(registry.get_job_ids, 20, "the batch to start")
    job = Job.fetch(job_id, connection=bus.conn, serializer=JSONSerializer)
    wait_for(lambda: job.refresh() or job.worker_name, 20, "the batch's worker")
    time.sleep(0.5)  # into the batch
    assert bus.buffer_len("cam", "s") == 0 and bus.conn.exists(job.key)  # not done yet
    os.kill(pids[job.worker_name], signal.SIGKILL)

    # the other detect worker's watchdog requeues the batch, and runs it
    wait_for(lambda: bus.buffer_len("cam", "s") == len(records), 120, "the batch to be run again")
    assert Metrics(bus).total("facepipe_jobs_recovered_total", stage="detect") == 1
    assert bus.buffer_seqs("cam", "s") == list(range(len(records)))
    # the track and sink stages count each frame once
    start_workers(procs, bus, ("track", "sink"))
    wait_for(lambda: bus.stream_done("cam", "s"), 60, "every frame accounted for")
    assert bus.stream_counts("cam", "s")["processed"] == len(records)
    assert Metrics(bus).total("facepipe_frames_duplicate_total") == 0
