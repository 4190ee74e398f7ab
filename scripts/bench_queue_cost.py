#!/usr/bin/env python
"""What a message costs to queue and to take, before any work: an rq stage job against
a Redis stream read by a consumer group.

    python scripts/bench_queue_cost.py --messages 2000

Against a private Redis server, in this process: ``--messages`` track messages (a
:class:`~pipeline.record.TrackJob`) are enqueued through the bus as the pipeline sends
them and run by the project's own ``StageWorker`` with the track handler replaced by a
no-op (so only rq's side of a job is measured: the dequeue, the start and success
bookkeeping, the payload's check); then the same number of the same payloads are added to
a stream (``XADD``, trimmed) and read by one consumer of a group (``XREADGROUP`` one at a
time, then ``XACK``), which keeps what rq's registries give the stage (an entry taken by a
consumer that dies stays pending and can be claimed by another). Reported: client CPU
milliseconds per message on each side (``time.process_time``; redis-server's CPU not
included). A benchmark to run by hand, not a test: the figures move with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000, help="messages per way (2000)")
    args = ap.parse_args(argv)
    n = args.messages

    os.environ.setdefault("FACEPIPE_HOME", tempfile.mkdtemp(prefix="facepipe-queue-"))
    from pipeline.config import load_config
    from pipeline.record import TrackJob
    from pipeline.redis_server import PrivateRedis
    from pipeline.runtime import Runtime
    from workers import base, track
    from workers.base import stage_worker

    with PrivateRedis() as server:
        rt = Runtime.from_config(load_config(None, environ={}), server.url)
        base.set_runtime(rt)
        bus, conn = rt.bus, rt.bus.conn
        track.TrackStage.process = lambda self, job: None  # type: ignore[method-assign]
        worker = stage_worker("track", rt, name="track-bench")
        base.get_stage("track")
        worker.register_birth()
        worker.set_state("idle")

        t0 = time.process_time()
        for _ in range(n):
            bus.send("track", TrackJob("cam", "s"))
        rq_put = (time.process_time() - t0) / n
        t0, ran = time.process_time(), 0
        while bus.depth("track"):
            got = worker.dequeue_job_and_maintain_ttl(timeout=1)
            if got is None:
                break
            worker.execute_job(*got)
            ran += 1
        rq_take = (time.process_time() - t0) / max(1, ran)

        payload = json.dumps(TrackJob("cam", "s").to_dict())
        key = bus.key("bench-stream")
        conn.xgroup_create(key, "track", id="0", mkstream=True)
        t0 = time.process_time()
        for _ in range(n):
            conn.xadd(key, {"m": payload}, maxlen=100_000, approximate=True)
        st_put = (time.process_time() - t0) / n
        t0, taken = time.process_time(), 0
        while taken < n:
            for _, entries in conn.xreadgroup("track", "w1", {key: ">"}, count=1, block=100):
                for entry_id, fields in entries:
                    TrackJob.from_dict(json.loads(fields[b"m"]))
                    conn.xack(key, "track", entry_id)
                    taken += 1
        st_take = (time.process_time() - t0) / n

    load = os.getloadavg()[0]
    print(f"{n} messages each way; load average {load:.1f}; client CPU ms per message")
    print(f"rq job (StageWorker, no-op handler): enqueue {1000 * rq_put:.3f}, "
          f"take and run {1000 * rq_take:.3f} ({ran} jobs)")  # fmt: skip
    print(f"stream + consumer group: XADD {1000 * st_put:.3f}, "
          f"XREADGROUP + XACK {1000 * st_take:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
