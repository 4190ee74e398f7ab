"""Redis paused mid-run (SIGSTOP, then SIGCONT: a network partition that keeps the data):
every process survives, the file run completes with every frame accounted for, and the
events are those of a clean run, nothing doubled.

Real redis-server, real worker / capture / metrics processes. While the server is stopped
its clients' commands hang (the socket stays open), then go through once it resumes; the
workers' heartbeats expire meanwhile, which must not make them recover (and so run twice)
each other's jobs in a way that doubles anything.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from pipeline.config import load_config
from pipeline.demo import make_demo_video
from pipeline.metrics import Metrics
from pipeline.stages import STAGE_NAMES
from pipeline.store import EventStore

from .conftest import start_workers, wait_for, workers_of

pytestmark = pytest.mark.slow

FRAMES = 60  # at 15 fps (realtime): 4 s of capture
PAUSE_S = 5.0
EVENT_FIELDS = ("track_id", "n_frames", "first_frame", "last_frame", "identity_samples",
                "attribute_samples", "ended")  # fmt: skip


def session_of(bus, stream: str) -> str:  # type: ignore[no-untyped-def]
    return next(s.split("/")[1] for s in bus.streams() if s.startswith(f"{stream}/"))


def run_capture(procs, video: str, stream: str) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
    return procs.start("capture", video, "--stream", stream, name=f"capture-{stream}")


def test_a_redis_pause_loses_nothing_and_doubles_nothing(
    redis_proc, bus, procs, env, tmp_path, home
):
    env["FACEPIPE__CAPTURE__REALTIME"] = "true"
    workers = start_workers(procs, bus, STAGE_NAMES)
    video = str(make_demo_video(tmp_path / "clip.mp4", frames=FRAMES))

    # a clean run: what the events of this clip are
    clean = run_capture(procs, video, "clean")
    assert clean.wait(90) == 0, procs.log(clean)

    paused = run_capture(procs, video, "paused")
    wait_for(
        lambda: bus.stream_counts("paused", session_of(bus, "paused")).get("captured", 0) >= 10,
        30,
        "the capture to be under way",
    )
    assert redis_proc.proc is not None
    os.kill(redis_proc.proc.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        time.sleep(PAUSE_S)
        for proc in (paused, *workers.values()):
            assert proc.poll() is None, procs.log(proc)  # nobody gave up or crashed
    finally:
        os.kill(redis_proc.proc.pid, signal.SIGCONT)
    print(f"Redis paused {time.monotonic() - stopped_at:.1f} s")

    try:
        rc = paused.wait(90)
    except subprocess.TimeoutExpired:
        pytest.fail("the capture hung after the pause:\n" + procs.log(paused))
    out = procs.log(paused)
    assert rc == 0, out
    assert "all frames accounted for" in out, out
    counts = bus.stream_counts("paused", session_of(bus, "paused"))
    assert counts["captured"] == counts["processed"] == FRAMES, counts  # none dropped, none lost

    # every worker is alive and registered
    for stage, proc in workers.items():
        assert proc.poll() is None, procs.log(proc)
        assert workers_of(bus, stage), stage

    # the same events as the clean run, nothing counted or stored twice
    store = EventStore(load_config().store_url)

    def events(stream: str) -> list[tuple[object, ...]]:
        return [tuple(e[k] for k in EVENT_FIELDS) for e in store.events(stream=stream)]

    assert events("clean"), "the clip makes at least one event"
    assert events("paused") == events("clean")
    metrics = Metrics(bus)
    assert metrics.total("facepipe_frames_processed_total", stream="paused") == FRAMES
    assert metrics.total("facepipe_frames_captured_total", stream="paused") == FRAMES
    recovered = metrics.total("facepipe_jobs_recovered_total")
    duplicate = metrics.total("facepipe_frames_duplicate_total")
    print(
        f"jobs recovered after the pause: {recovered:.0f}; "
        f"duplicate frames skipped: {duplicate:.0f}"
    )
