"""Streams added and removed at run time, end to end: a real `facepipe run --keep-running`
(its stage worker processes, its API) on a real redis-server, started with no source; a
camera (the demo clip served as MJPEG by pipeline/camera_server.py) and a clip file are
added through `POST /api/streams`, processed into events, the camera removed with
`DELETE /api/streams/door`, and every frame of both is accounted for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pipeline.camera_server import MjpegCamera
from tests.helpers import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def end(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> int:
    """Send ``sig`` to a process still running; its exit code (killed after ``timeout``)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def wait_for(cond: Callable[[], object], what: str, proc: subprocess.Popen[bytes], log: Path,
             timeout: float = 300.0) -> object:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"facepipe run exited ({proc.returncode}):\n{log.read_text()}")
        try:
            value = cond()
        except httpx.HTTPError:
            value = None
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{log.read_text()}")


def test_add_and_remove_streams_while_facepipe_run_runs(redis_url, home, demo_media, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "FACEPIPE_HOME": str(home),
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "FACEPIPE__API__PORT": str(port),
        "FACEPIPE__METRICS__PORT": "0",
        "FACEPIPE__WORKERS__DETECT": "1",
        "FACEPIPE__ATTRIBUTES__ENABLED": "false",
    }
    log = tmp_path / "run.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", "--keep-running", "--progress-every", "0"],
            cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    cam = MjpegCamera(demo_media["video"], fps=10).start()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}/api", timeout=30)

    def stream(name: str) -> dict:  # type: ignore[type-arg]
        return {s["name"]: s for s in http.get("/streams").json()}.get(name, {})

    def events(name: str) -> int:
        return int(http.get("/events", params={"stream": name}).json()["total"])

    try:
        wait_for(lambda: "web UI:" in log.read_text(), "the run's workers and API", proc, log)
        assert http.get("/streams").json() == []
        r = http.post("/streams", json={"name": "door", "source": cam.url})
        assert r.status_code == 201, r.text
        # the running pipeline picks the camera up: frames processed, an event stored
        wait_for(lambda: stream("door").get("status") == "capturing", "door capturing", proc, log)
        assert stream("door")["added"]["state"] == "capturing"
        wait_for(lambda: events("door") >= 1, "an event of door", proc, log)
        door = stream("door")["sessions"][0]
        assert door["live"] is True and door["processed"] > 0

        r = http.post("/streams", json={"name": "clip", "source": str(demo_media["video"])})
        assert r.status_code == 201, r.text
        r = http.delete("/streams/door")
        assert r.status_code == 200, r.text
        # door stops; every frame it captured is processed or dropped with a reason
        wait_for(lambda: stream("door")["sessions"][0]["status"] == "done", "door done", proc, log)
        assert stream("door").get("added") is None
        door = stream("door")["sessions"][0]
        assert door["captured"] == door["processed"] + door["dropped"] and door["processed"] > 0
        time.sleep(2.0)  # the camera is still up, but nothing captures it any more
        assert stream("door")["sessions"][0]["captured"] == door["captured"]
        assert len(stream("door")["sessions"]) == 1  # and it was not started again

        # the clip runs to its end (a file never drops a frame)
        wait_for(lambda: stream("clip").get("status") == "done", "clip done", proc, log)
        ended = lambda: stream("clip")["added"]["state"] == "ended"  # noqa: E731
        wait_for(ended, "the follower to say the clip ended", proc, log)
        clip = stream("clip")
        assert clip["sessions"][0]["captured"] == clip["sessions"][0]["processed"] == 30
        assert events("clip") >= 1
    finally:
        http.close()
        cam.close()
        code = end(proc, signal.SIGINT, 120)
    out = log.read_text()
    assert code == 130, out  # interrupted (--keep-running ends with Ctrl-C)
    assert "stream door" in out and "stream clip" in out, out  # both in the summary
    assert "Traceback" not in out, out


def test_a_capture_process_follows_the_camera_set(redis_url, home, demo_media, tmp_path):
    """`facepipe capture --follow-streams` (a capture host of a distributed deployment, no
    workers needed here): it runs the cameras the set gains and stops those it loses."""
    from pipeline.bus import Bus, connect

    bus = Bus(connect(redis_url), "facepipe")
    env = {**os.environ, "REDIS_URL": redis_url, "FACEPIPE_HOME": str(home),
           "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "FACEPIPE__CAPTURE__MAX_QUEUE": "100000"}  # fmt: skip
    log = tmp_path / "capture.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "capture", "--follow-streams"],
            cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    cam = MjpegCamera(demo_media["video"], fps=10).start()

    def counts(name: str) -> dict[str, int]:
        sids = [s for s in bus.streams() if s.startswith(f"{name}/")]
        return bus.stream_counts(*sids[0].split("/")) if sids else {}

    try:
        wait_for(lambda: "following the cameras" in log.read_text(), "the start", proc, log)
        bus.add_camera("door", {"source": cam.url, "id": "1"})
        wait_for(lambda: counts("door").get("captured", 0) >= 5, "door's frames", proc, log)
        assert bus.camera_status()["door"]["state"] == "capturing"
        bus.remove_camera("door")
        stopped = lambda: bus.camera_status().get("door", {}).get("state") == "stopped"  # noqa: E731
        wait_for(stopped, "door to stop", proc, log)
        assert "end_seq" in counts("door")  # the session ended: its frames can be accounted
    finally:
        cam.close()
        code = end(proc, signal.SIGTERM, 60)
    out = log.read_text()
    assert code == 0, out
    assert f"door: captured {counts('door')['captured']} (session" in out, out
