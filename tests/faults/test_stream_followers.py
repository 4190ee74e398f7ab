"""Cameras added at run time (POST /api/streams) under faults: real `facepipe capture
--follow-streams` processes, a real MJPEG camera on 127.0.0.1, a real redis-server.

* Redis restarts without persistence: the desired camera set is gone from Redis, and the
  followers put it back (they saw its epoch change) instead of stopping every camera.
* kill -9 of the follower that runs a camera: another follower takes it over once the dead
  one's claim expires, and never two run it at once.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from pipeline.camera_server import MjpegCamera
from pipeline.stream_control import CLAIM_TTL_S
from tests.helpers import wait_for

pytestmark = pytest.mark.slow


def captured_since(bus, name: str, sessions_before: set[str]) -> int:  # type: ignore[no-untyped-def]
    """Frames captured of camera ``name`` in sessions not in ``sessions_before``."""
    total = 0
    for sid in bus.streams():
        stream, session = sid.split("/")
        if stream == name and session not in sessions_before:
            total += bus.stream_counts(stream, session).get("captured", 0)
    return total


def sessions(bus, name: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {sid.split("/")[1] for sid in bus.streams() if sid.split("/")[0] == name}


def owner_pid(status: dict) -> int:  # type: ignore[type-arg]
    return int(status["owner"].split(":")[1])


@pytest.fixture()
def camera(demo_media):  # type: ignore[no-untyped-def]
    cam = MjpegCamera(demo_media["video"], fps=10).start()
    yield cam
    cam.close()


def test_cameras_added_at_run_time_survive_a_redis_restart(redis_proc, bus, procs, env, camera):
    env["FACEPIPE__CAPTURE__MAX_QUEUE"] = "100000"  # no workers here: never backpressure
    follower = procs.start("capture", "--follow-streams", name="follower")
    wait_for(lambda: "following the cameras" in procs.log(follower), 60, "the follower")
    assert bus.add_camera("door", {"source": camera.url, "id": "1"})
    wait_for(lambda: captured_since(bus, "door", set()) >= 5, 60, "door's first frames")

    redis_proc.restart(down_s=1.0)  # empty: the camera set, its status, the claims are gone
    assert bus.conn.exists(bus.key("cameras")) == 0

    # the follower puts the set back and goes on capturing the camera
    wait_for(lambda: "door" in bus.cameras(), 30, "the camera set to be put back")
    assert bus.cameras()["door"] == {"source": camera.url, "id": "1"}
    wait_for(lambda: captured_since(bus, "door", set()) >= 5, 60, "door's frames after it")
    status = wait_for(lambda: bus.camera_status().get("door"), 30, "door's status")
    assert status["state"] == "capturing", status
    assert owner_pid(status) == follower.pid
    assert follower.poll() is None, procs.log(follower)
    assert "put back door" in procs.log(follower)

    # removing it still stops it: the epoch does not bring back what was taken out
    assert bus.remove_camera("door")
    wait_for(
        lambda: bus.camera_status()["door"]["state"] == "stopped", 30, "door to stop"
    )  # fmt: skip
    time.sleep(2.5)  # two more polls
    assert "door" not in bus.cameras()


def test_a_killed_followers_camera_moves_to_another_once(redis_proc, bus, procs, env, camera):
    env["FACEPIPE__CAPTURE__MAX_QUEUE"] = "100000"
    followers = [procs.start("capture", "--follow-streams", name=f"follower-{i}") for i in (1, 2)]
    for f in followers:
        wait_for(lambda f=f: "following the cameras" in procs.log(f), 60, "the followers")
    assert bus.add_camera("door", {"source": camera.url, "id": "1"})
    status = wait_for(
        lambda: (
            (bus.camera_status().get("door") or {}).get("state") == "capturing"
            and bus.camera_status()["door"]
        ),
        60,
        "door to be captured",
    )
    (running,) = [f for f in followers if f.pid == owner_pid(status)]
    (other,) = [f for f in followers if f is not running]
    wait_for(lambda: captured_since(bus, "door", set()) >= 5, 60, "door's frames")
    before = sessions(bus, "door")

    os.kill(running.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    running.wait(10)

    def taken_over() -> bool:
        st = bus.camera_status()["door"]
        return st["state"] == "capturing" and owner_pid(st) == other.pid

    wait_for(taken_over, CLAIM_TTL_S + 45, "the other follower to take the camera over")
    # not before the dead one's claim expired: never two captures of one camera
    assert time.monotonic() - killed_at >= CLAIM_TTL_S - 2.0
    wait_for(lambda: captured_since(bus, "door", before) >= 5, 60, "frames of the new session")
    assert other.poll() is None, procs.log(other)
