"""Redis restarts mid-run: every process survives, reconnects, and work resumes.

Real redis-server, real worker / capture / metrics processes. The server is restarted
without persistence (what `--save ""` Redis does), so the first capture's session is
lost with it: the capture says so and ends instead of hanging; a second capture after the
restart is processed completely by the same worker processes.
"""

from __future__ import annotations

import signal
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
        try:
            wait_for(lambda s=stage: workers_of(bus, s), 20, f"the {stage} worker to register")
        except AssertionError as exc:
            pytest.fail(f"{exc} again:\n{procs.log(workers[stage])}")
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
    # (or, if it was starved of CPU through the whole outage, found its registration gone
    # on the new server: the case of the test below)
    for stage, proc in workers.items():
        log = procs.log(proc)
        assert (
            "Redis reachable again after" in log
            or "lost this worker's registration (the server restarted)" in log
        ), stage
    outages = Metrics(bus).total("facepipe_redis_outages_total")
    assert outages >= len(STAGE_NAMES)


def test_a_worker_that_slept_through_a_restart_registers_again(
    redis_proc, bus, procs, env, tmp_path
):
    """A worker that never saw the outage (paused: a stalled VM, a long GC, a loaded
    machine) reconnects without an error: redis-py retries its blocked dequeue on the
    new server. It must still notice that the restarted server lost its registration,
    register again and count the outage, and work must go on through it."""
    workers = start_workers(procs, bus, STAGE_NAMES)
    paused = workers["track"]
    paused.send_signal(signal.SIGSTOP)
    try:
        redis_proc.stop(keep_dir=True)
        time.sleep(0.5)
        redis_proc.start()  # empty
        wait_for(lambda: bus.conn.ping(), 10, "Redis to answer")
        time.sleep(0.5)
    finally:
        paused.send_signal(signal.SIGCONT)
    try:
        wait_for(lambda: workers_of(bus, "track"), 20, "the paused track worker to register")
    except AssertionError as exc:
        pytest.fail(f"{exc} again:\n{procs.log(paused)}")
    assert "lost this worker's registration (the server restarted)" in procs.log(paused)
    assert Metrics(bus).total("facepipe_redis_outages_total") >= 1

    video = str(make_demo_video(tmp_path / "clip.mp4", frames=20))
    capture = procs.start("capture", video, "--stream", "cam", name="capture")
    assert capture.wait(60) == 0, procs.log(capture)
    assert "all frames accounted for" in procs.log(capture)
    for proc in workers.values():
        assert proc.poll() is None, procs.log(proc)


def test_a_flush_under_a_running_worker_registers_it_again_without_an_outage(
    redis_proc, bus, procs, env
):
    """FLUSHALL by hand (same server, no restart): the worker notices at its next
    heartbeat, registers again, and does not count an outage that did not happen."""
    worker = start_workers(procs, bus, ("track",))["track"]
    bus.conn.flushall()
    try:
        wait_for(lambda: workers_of(bus, "track"), 20, "the track worker to register")
    except AssertionError as exc:
        pytest.fail(f"{exc} again:\n{procs.log(worker)}")
    assert "lost this worker's registration (flushed or expired)" in procs.log(worker)
    assert Metrics(bus).total("facepipe_redis_outages_total") == 0
    assert worker.poll() is None
