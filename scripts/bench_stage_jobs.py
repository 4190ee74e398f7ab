#!/usr/bin/env python
"""CPU and Redis round trips per track and sink job, in long-lived stage workers.

    python scripts/bench_stage_jobs.py --frames 400

As a live camera whose track stage keeps up: against a private Redis server, one frame
at a time (a 640x360 image stored, two detected faces written to the ordered buffer with
the detect stage's poke), then the track worker runs the jobs waiting, then the sink
worker runs the jobs the track stage sent (recognize jobs are discarded). The workers are
rq ``StageWorker``s in this process (registered once, as ``facepipe worker`` runs them);
reported: CPU milliseconds per job (``time.process_time``: the worker's bookkeeping, the
stage's handler, Redis client work; not redis-server's), and client round trips per job
(requests sent, the dequeue's two included). A benchmark to run by hand, not a test: CPU
figures move with the machine's load; round trips do not. ``--commands`` also counts the
Redis commands a job sends (all of them, by name: a round trip may carry many, and each
costs the client packing and parsing), the dequeue's included.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=400, help="frames to put through (400)")
    ap.add_argument("--commands", action="store_true",
                    help="also count the Redis commands per job, by name")  # fmt: skip
    args = ap.parse_args(argv)

    import numpy as np
    import redis.connection

    os.environ.setdefault("FACEPIPE_HOME", tempfile.mkdtemp(prefix="facepipe-jobs-"))
    from pipeline.config import load_config
    from pipeline.record import Face, FrameRecord
    from pipeline.redis_server import PrivateRedis
    from pipeline.runtime import Runtime
    from workers import base
    from workers.base import stage_worker

    sent = [0]
    send = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, *a: Any, **k: Any) -> Any:
        sent[0] += 1
        return send(self, *a, **k)

    redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    commands: Counter[tuple[str, str]] = Counter()  # (stage, command name) -> count
    running: list[str] = [""]  # the stage whose job runs now ("" outside jobs)
    if args.commands:  # every command goes through one of the two serializers
        for packer in (redis.connection.HiredisRespSerializer,
                       redis.connection.PythonRespSerializer):  # fmt: skip
            def pack(self: Any, *a: Any, _pack: Any = packer.pack) -> Any:
                if running[0]:
                    name = a[0].decode() if isinstance(a[0], bytes) else str(a[0])
                    commands[(running[0], name.upper())] += 1
                return _pack(self, *a)

            packer.pack = pack  # type: ignore[method-assign]
    stages = ("track", "sink")
    with PrivateRedis() as server:
        rt = Runtime.from_config(load_config(None, environ={}), server.url)
        base.set_runtime(rt)
        bus = rt.bus
        bus.register_stream("cam", "s", {"live": True, "fps": 30, "source": "bench"})
        workers = {s: stage_worker(s, rt, name=f"{s}-bench") for s in stages}
        for s, w in workers.items():
            base.get_stage(s)
            w.register_birth()
            w.set_state("idle")
        cpu = dict.fromkeys(stages, 0.0)
        jobs = dict.fromkeys(stages, 0)
        trips = dict.fromkeys(stages, 0)

        def run(stage: str) -> None:
            w = workers[stage]
            while bus.depth(stage):
                t0, n0 = time.process_time(), sent[0]
                running[0] = stage
                got = w.dequeue_job_and_maintain_ttl(timeout=1)
                if got is None:
                    running[0] = ""
                    return
                w.execute_job(*got)
                running[0] = ""
                cpu[stage] += time.process_time() - t0
                trips[stage] += sent[0] - n0
                jobs[stage] += 1

        image = np.zeros((360, 640, 3), np.uint8)
        for i in range(args.frames):
            rec = FrameRecord("cam", i, time.time(), "s", width=640, height=360, live=True)
            rec.key = bus.frame_key(rec)
            rt.frames.put(rec.key, image)
            x = 100 + i % 50
            rec.faces = [Face((x, 80, 60, 60), 0.9), Face((x + 300, 90, 50, 50), 0.8)]
            bus.buffer_put_many([rec])
            run("track")
            bus.queue("recognize").empty()
            run("sink")
        counts = bus.stream_counts("cam", "s")
    load = os.getloadavg()[0]
    print(f"frames {args.frames}, processed {counts.get('processed', 0)}; load average {load:.1f}")
    for s in stages:
        n = max(1, jobs[s])
        print(f"{s}: {jobs[s]} jobs, {1000 * cpu[s] / n:.2f} ms CPU/job, "
              f"{trips[s] / n:.1f} round trips/job")  # fmt: skip
        if args.commands:
            mine = sorted(((c, name) for (st, name), c in commands.items() if st == s),
                          reverse=True)  # fmt: skip
            print(f"  {sum(c for c, _ in mine) / n:.1f} Redis commands/job: "
                  + ", ".join(f"{name} {c / n:.1f}" for c, name in mine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
