"""SIGTERM stops `facepipe run` like Ctrl-C: the summary is printed and every frame in it
is accounted for (processed, or dropped with a reason)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.camera_server import MjpegCamera
from pipeline.demo import make_demo_video

from .conftest import wait_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_run_prints_a_summary_that_adds_up(bus, procs, env, tmp_path, sig):
    env["FACEPIPE__CAPTURE__REALTIME"] = "true"  # 90 frames at 15 fps: 6 s of capture
    video = make_demo_video(tmp_path / "clip.mp4", frames=90)
    run = procs.start("run", str(video), "--stream", "cam", "--json", name="run")

    def captured() -> int:
        sid = next(s for s in bus.streams() if s.startswith("cam/"))
        return bus.stream_counts(*sid.split("/")).get("captured", 0)

    wait_for(lambda: captured() >= 15, 60, "the run to capture some frames")
    run.send_signal(sig)
    assert run.wait(30) == 130, procs.log(run)
    line = next(ln for ln in procs.log(run).splitlines() if ln.startswith("{"))
    summary = json.loads(line)
    assert summary["interrupted"] is True
    cam = summary["streams"]["cam"]
    dropped = sum(v for k, v in cam.items() if k.startswith("dropped:"))
    assert 15 <= cam["captured"] < 90
    assert cam["captured"] == cam["processed"] + dropped, cam
    assert summary["frames"] == cam["captured"]


def _ppid_state(pid: int) -> tuple[int, str] | None:
    """(parent pid, state) of a process (Linux ``/proc``); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]  # after the name, which may hold spaces
    return int(ppid), state


def _workers_of(pid: int) -> list[int]:
    """The `facepipe worker` processes that ``pid`` started."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or (_ppid_state(int(d.name)) or (0, ""))[0] != pid:
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"worker" in cmdline:
            out.append(int(d.name))
    return out


def _running(pid: int) -> bool:
    st = _ppid_state(pid)
    return st is not None and st[1] not in ("Z", "X")  # a zombie has exited


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_run_stops_while_redis_is_down(redis_proc, bus, procs, env, tmp_path, sig):
    """Redis gone for good under a live camera, then SIGTERM (or SIGINT): the run does not
    wait for Redis past its 10 s to drain. It prints a summary from what it knows (the
    frames it cannot account for without Redis as dropped:redis_unreachable, and why),
    stops its workers and exits with 130 (bound: 5 s for the captures to stop, 10 s to
    drain, 15 s for the workers to stop; it takes about 12 s)."""
    video = make_demo_video(tmp_path / "clip.mp4", frames=30)
    with MjpegCamera(video, fps=15) as cam:
        run = procs.start(
            "run", cam.url, "--stream", "cam", "--json", "--no-serve", "--progress-every", "0",
            name="run",
        )  # fmt: skip

        def captured() -> int:
            sid = next(s for s in bus.streams() if s.startswith("cam/"))
            return bus.stream_counts(*sid.split("/")).get("captured", 0)

        wait_for(lambda: captured() >= 15, 60, "the run to capture some frames")
        workers = _workers_of(run.pid)
        assert workers, procs.log(run)
        redis_proc.stop()
        wait_for(lambda: "Redis unreachable" in procs.log(run), 10, "the capture to see it")
        time.sleep(1.0)  # frames dropped meanwhile (redis_down)
        run.send_signal(sig)
        t0 = time.monotonic()
        try:
            rc = run.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run did not stop on {sig!r} with Redis down:\n" + procs.log(run))
        took = time.monotonic() - t0
    out = procs.log(run)
    assert rc == 130, out
    assert "Traceback" not in out, out
    assert took >= 9, took  # the frames in flight had their 10 s (Redis might come back)
    summary = json.loads(next(ln for ln in out.splitlines() if ln.startswith("{")))
    assert summary["interrupted"] is True
    assert "Redis unreachable" in summary["incomplete"], summary
    c = summary["streams"]["cam"]
    dropped = sum(v for k, v in c.items() if k.startswith("dropped:"))
    assert c["captured"] >= 15 and c["captured"] == c.get("processed", 0) + dropped, c
    assert c["dropped:redis_unreachable"] > 0 and c["dropped:redis_down"] > 0, c
    # one camera at 15 frames/s never runs out of detection: a frame lost to the outage is
    # redis_down, not backpressure (it was, while Redis could not say what was in flight)
    assert "dropped:backpressure" not in c, c
    assert summary["frames"] == c["captured"]
    wait_for(lambda: not any(_running(p) for p in workers), 5, "the workers to be gone")
