"""Only the project's job functions run; unreadable queue entries never kill a worker.

Real worker processes on a real Redis: each hostile entry is refused or set aside, then
a good job is still processed by the same worker process. The detect stage's messages are
rq jobs (a queue's list and job hashes); the sink's are entries of a Redis stream
(``pipeline/stages.py``: transport "stream"), attacked as such.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from pipeline.config import load_config
from pipeline.metrics import Metrics
from pipeline.record import FrameRecord, Observations
from pipeline.runtime import Runtime

from .conftest import start_workers, wait_for

pytestmark = pytest.mark.slow


def test_foreign_jobs_are_refused_and_unreadable_entries_set_aside(
    redis_proc, bus, procs, env, tmp_path: Path
) -> None:
    env["FACEPIPE__WORKERS__MAX_JOB_BYTES"] = "65536"
    # 0. left in the intermediate queue by an earlier worker (rq's cleanup raises on it)
    bus.conn.rpush(f"rq:queue:{bus.queue_name('detect')}:intermediate", b"\xfe\x00stuck")
    workers = start_workers(procs, bus, ("detect", "sink"))
    pids = {s: p.pid for s, p in workers.items()}
    metrics = Metrics(bus)
    conn = bus.conn
    detect_q = Queue(bus.queue_name("detect"), connection=conn, serializer=JSONSerializer)

    def refused(reason: str) -> float:
        return metrics.total("facepipe_jobs_refused_total", stage="detect", reason=reason)

    wait_for(lambda: bus.dead_letters("detect"), 20, "the stuck entry to be set aside")
    assert bus.dead_letters("detect")[0]["reason"] == "undecodable job id"

    # 1. a job naming os.system on the detect queue: failed with the reason, never run
    pwned = tmp_path / "pwned"
    job = detect_q.enqueue("os.system", f"touch {pwned}")
    wait_for(lambda: refused("function") == 1, 20, "the os.system job to be refused")
    failed = FailedJobRegistry(queue=detect_q)
    assert job.id in failed.get_job_ids()
    job = Job.fetch(job.id, connection=conn, serializer=JSONSerializer)
    assert "refused" in (job.latest_result().exc_string or "")
    assert "os.system" in job.latest_result().exc_string
    assert not pwned.exists()

    # 2. the stage's own job function with a payload that is no FrameRecord
    bad = detect_q.enqueue("workers.detect.handle", {"stream": "x", "seq": "not a number"})
    wait_for(lambda: refused("payload") == 1, 20, "the malformed payload to be refused")
    assert bad.id in failed.get_job_ids()
    # ... a batch of frames with garbage in it (a number, a record without its fields)
    bad_batch = detect_q.enqueue("workers.detect.handle", {"records": [1, {"stream": "x"}]})
    wait_for(lambda: refused("payload") == 2, 20, "the malformed batch to be refused")
    assert bad_batch.id in failed.get_job_ids()
    # ... or with extra arguments
    detect_q.enqueue("workers.detect.handle", {}, "rm -rf /")
    wait_for(lambda: refused("arguments") == 1, 20, "the extra arguments to be refused")

    # 3. raw bytes pushed on the detect queue: set aside, counted (the stuck entry of
    # step 0 was the first)
    conn.lpush(f"rq:queue:{bus.queue_name('detect')}", b"\x00\xff{{{")

    def dead(stage: str, reason: str | None = None) -> float:
        labels = {"stage": stage} if reason is None else {"stage": stage, "reason": reason}
        return metrics.total("facepipe_queue_entries_dead_total", **labels)

    wait_for(lambda: dead("detect") == 2, 20, "the raw bytes to be set aside")
    letters = bus.dead_letters("detect")
    assert len(letters) == 2, letters
    assert letters[0]["reason"] == "undecodable job id"
    assert base64.b64decode(letters[0]["entry"]) == b"\x00\xff{{{"

    # 4. a job hash that does not deserialize
    job_id = uuid.uuid4().hex
    conn.hset(f"rq:job:{job_id}", mapping={"data": b"\x00\xff not json", "origin": "x"})
    conn.lpush(f"rq:queue:{bus.queue_name('detect')}", job_id)
    wait_for(lambda: dead("detect") == 3, 20, "the undecodable job to be set aside")
    assert len(bus.dead_letters("detect")) == 3
    assert bus.dead_letters("detect")[0]["reason"].startswith("undecodable job:")
    assert not conn.exists(f"rq:job:{job_id}")

    # 5. an oversized job (workers.max_job_bytes is 64 KiB here)
    big = detect_q.enqueue("workers.detect.handle", {"records": ["x" * 100_000]})
    wait_for(lambda: dead("detect") == 4, 20, "the oversized job to be set aside")
    assert len(bus.dead_letters("detect")) == 4
    assert bus.dead_letters("detect")[0]["reason"].startswith("oversized job")
    assert not conn.exists(big.key)
    assert not conn.llen(f"rq:queue:{bus.queue_name('detect')}:intermediate")
    assert not conn.llen(f"rq:queue:{bus.queue_name('detect')}")
    assert refused("payload") == 2 and refused("function") == 1  # none of them was run

    # the sink is a stream stage: its messages are entries of a Redis stream (field p:
    # the payload's JSON; n: the runs it had), with no function name in them to refuse
    entries = bus.entries_key("sink")

    def sink_refused() -> float:
        return metrics.total("facepipe_jobs_refused_total", stage="sink", reason="payload")

    # 6. entries that are no readable message: set aside, counted, never run
    unreadable = [
        ({"n": 0}, "undecodable job: no payload"),
        ({"p": b"\x00\xff{{{", "n": 0}, "undecodable job:"),
        ({"p": json.dumps([{"type": "observations"}]), "n": 0}, "undecodable job: not an object"),
        (
            {"p": json.dumps({"type": "observations", "records": ["x" * 100_000]}), "n": 0},
            "oversized job: over workers.max_job_bytes (65536)",
        ),
    ]
    for i, (fields, reason) in enumerate(unreadable, 1):
        conn.xadd(entries, fields)
        wait_for(lambda i=i: dead("sink") == i, 20, f"sink entry {fields!r:.60} set aside")
        letters = bus.dead_letters("sink")
        assert len(letters) == i, letters
        assert letters[0]["stage"] == "sink"
        assert letters[0]["reason"].startswith(reason), (letters[0]["reason"], reason)
        wait_for(lambda: conn.xlen(entries) == 0, 10, "the entry to leave the stream")
    assert b"p=\x00\xff{{{" in base64.b64decode(bus.dead_letters("sink")[2]["entry"])
    assert dead("sink", "undecodable job") == 3 and dead("sink", "oversized job") == 1
    assert bus.failed("sink") == 0 and sink_refused() == 0

    # 7. JSON that is no sink message (one naming a function, a malformed batch): refused,
    # filed as failed at once (never retried), never run
    sink_pwned = tmp_path / "sink-pwned"
    hostile = [
        {"func": "os.system", "args": [f"touch {sink_pwned}"]},
        {"type": "observations", "records": [1]},
    ]
    for i, payload in enumerate(hostile, 1):
        conn.xadd(entries, {"p": json.dumps(payload), "n": 0})
        wait_for(lambda i=i: sink_refused() == i, 20, f"sink payload {payload!r:.60} refused")
        failed = bus.failed_entries("sink")
        assert len(failed) == i, failed
        assert failed[0]["stage"] == "sink" and failed[0]["attempts"] == 1, failed[0]
        assert json.loads(failed[0]["payload"]) == payload
        assert "refused" in failed[0]["reason"] and "payload" in failed[0]["reason"], failed[0]
        wait_for(lambda: conn.xlen(entries) == 0, 10, "the entry to leave the stream")
    assert not sink_pwned.exists()
    assert dead("sink") == 4  # refused, not set aside
    assert conn.xlen(entries) == 0
    assert bus.entries_pending("sink", 0) == []
    assert bus.depth("sink") == 0 and bus.busy("sink") == 0

    # good jobs are still processed, by the same worker processes
    rt = Runtime.from_config(load_config(None, environ={}), redis_proc.url)
    rec = FrameRecord(stream="s", session="a", seq=0, ts=0.0, width=64, height=48)
    rec.key = bus.frame_key(rec)
    rt.frames.put(rec.key, np.zeros((48, 64, 3), np.uint8))
    bus.send("detect", rec)
    wait_for(lambda: bus.buffer_has("s", "a", 0), 20, "the good detect job's result")
    bus.send("sink", Observations([FrameRecord(stream="s", session="b", seq=0, ts=0.0)]))
    wait_for(lambda: bus.stream_counts("s", "b").get("processed") == 1, 20, "the sink job")
    for stage, proc in workers.items():
        assert proc.poll() is None, procs.log(proc)
        assert proc.pid == pids[stage]
    assert "Traceback" not in procs.log(workers["sink"])
    assert conn.xlen(entries) == 0 and bus.failed("sink") == 2 and dead("sink") == 4
