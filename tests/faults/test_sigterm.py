"""SIGTERM stops `facepipe run` like Ctrl-C: the summary is printed and every frame in it
is accounted for (processed, or dropped with a reason)."""

from __future__ import annotations

import json
import signal

import pytest

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
