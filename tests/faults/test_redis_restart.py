"""Redis restarts mid-run: every process survives, reconnects, and work resumes.

Real redis-server, real worker / capture / metrics processes. The server is restarted
without persistence (what `--save ""` Redis does), so the first capture's session is
lost with it: the capture says so and ends instead of hanging; a second capture after the
restart is processed completely by the same worker processes.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest

from pipeline.demo import make_demo_video
from pipeline.metrics import Metrics
from pipeline.stages import STAGE_NAMES
from tests.helpers import free_port

from .conftest import start_workers, wait_for, workers_of

pytestmark = pytest.mark.slow


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_every_process_survives_a_redis_restart(redis_proc, bus, procs, env, tmp_path):
    env["FACEPIPE__CAPTURE__REALTIME"] = "true"  # 45 frames at 15 fps: 3 s of capture
    env["FACEPIPE__METRICS__HOST"] = "127.0.0.1"
    workers = start_workers(procs, bus, STAGE_NAMES)
    port = free_port()
    exporter = procs.start("metrics", "--port", str(port), name="metrics")
    wait_for(lambda: "facepipe_redis_up 1.0" in scrape(port), 20, "the metrics endpoint")

    video = str(make_demo_video(tmp_path / "clip.mp4", frames=45))
    first = procs.start("capture", video, "--stream", "cam", name="capture-1")
    wait_for(lambda: bus.streams(), 20, "the first capture to register")
    time.sleep(1.0)  # mid-capture
    redis_proc.stop(keep_dir=True)
    time.sleep(0.5)
    assert "facepipe_redis_up 0.0" in scrape(port)  # the outage shows
    time.sleep(1.5)
    redis_proc.start()  # empty: nothing was persisted

    # the first capture notices its session is gone and ends, it does not hang
    try:
        rc = first.wait(40)
    except subprocess.TimeoutExpired:
        pytest.fail("the capture hung after the restart:\n" + procs.log(first))
    out = procs.log(first)
    assert rc == 3, out
    assert "Redis lost session" in out

    # every worker reconnected and registered again, none died
    for stage in STAGE_NAMES:
        wait_for(lambda s=stage: workers_of(bus, s), 20, f"the {stage} worker to register again")
    for proc in (*workers.values(), exporter):
        assert proc.poll() is None, procs.log(proc)
    assert "facepipe_redis_up 1.0" in scrape(port)

    # work resumes: a second capture is processed completely
    env["FACEPIPE__CAPTURE__REALTIME"] = "false"
    second = procs.start("capture", video, "--stream", "cam2", name="capture-2")
    assert second.wait(60) == 0, procs.log(second)
    assert "all frames accounted for" in procs.log(second)
    counts = next(
        bus.stream_counts("cam2", sid.split("/")[1]) for sid in bus.streams() if "cam2/" in sid
    )
    assert counts["captured"] == counts["processed"] == 45

    # each worker logged its outage with its duration and counted it once Redis was back
    for stage, proc in workers.items():
        assert "Redis reachable again after" in procs.log(proc), stage
    outages = Metrics(bus).total("facepipe_redis_outages_total")
    assert outages >= len(STAGE_NAMES)
