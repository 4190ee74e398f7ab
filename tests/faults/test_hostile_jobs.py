"""Only the project's job functions run; unreadable queue entries never kill a worker.

Real worker processes on a real Redis: each hostile entry is refused or set aside, then
a good job is still processed by the same worker process.
"""

from __future__ import annotations

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
    sink_q = Queue(bus.queue_name("sink"), connection=conn, serializer=JSONSerializer)

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

    # 3. raw bytes pushed on the sink queue: set aside, counted
    conn.lpush(f"rq:queue:{bus.queue_name('sink')}", b"\x00\xff{{{")

    def dead(stage: str) -> float:
        return metrics.total("facepipe_queue_entries_dead_total", stage=stage)

    wait_for(lambda: dead("sink") == 1, 20, "the raw bytes to be set aside")
    (letter,) = bus.dead_letters("sink")
    assert letter["reason"] == "undecodable job id"

    # 4. a job hash that does not deserialize
    job_id = uuid.uuid4().hex
    conn.hset(f"rq:job:{job_id}", mapping={"data": b"\x00\xff not json", "origin": "x"})
    conn.lpush(f"rq:queue:{bus.queue_name('sink')}", job_id)
    wait_for(lambda: dead("sink") == 2, 20, "the undecodable job to be set aside")
    assert bus.dead_letters("sink")[0]["reason"].startswith("undecodable job")
    assert not conn.exists(f"rq:job:{job_id}")

    # 5. an oversized job (workers.max_job_bytes is 64 KiB here)
    sink_q.enqueue("workers.sink.handle", {"type": "observations", "records": ["x" * 100_000]})
    wait_for(lambda: dead("sink") == 3, 20, "the oversized job to be set aside")
    assert bus.dead_letters("sink")[0]["reason"].startswith("oversized job")
    assert not conn.llen(f"rq:queue:{bus.queue_name('sink')}:intermediate")

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
