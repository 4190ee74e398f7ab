"""Cameras added and removed at run time (pipeline/stream_control.py): the checks of a
camera spec, and :class:`CameraWatcher` following the desired set in a real redis-server
with a real MJPEG camera (pipeline/camera_server.py) and a real clip file; no stage
workers here (tests/system/test_runtime_streams.py runs the whole pipeline)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.camera_server import MjpegCamera
from pipeline.config import ConfigError, load_config
from pipeline.runtime import Runtime
from pipeline.stream_control import CameraWatcher, check_camera
from tests.helpers import wait_for


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"source": "x.mp4", "capture": {"max_queue": 0}},
         "cameras.door.capture.max_queue: Input should be greater than or equal to 1"),
        ({"source": "x.mp4", "capture": {"max_qeue": 3}},
         "cameras.door.capture: unknown capture key"),
        ({"source": "x.mp4", "every_n_frames": 0},
         "cameras.door.every_n_frames: Input should be greater than or equal to 1"),
        ({"source": ""}, "cameras.door.source: String should have at least 1 character"),
        ({"source": "x.mp4", "colour": "red"}, "cameras.door.colour: unknown key"),
        ({}, "cameras.door.source: Field required"),
    ],
)  # fmt: skip
def test_a_bad_camera_spec_names_the_key(spec, error):
    with pytest.raises(ConfigError) as exc:
        check_camera("door", spec)
    assert str(exc.value).startswith(error), str(exc.value)


def test_a_bad_camera_name_is_refused():
    for name in ("../etc", "", "a b", "x" * 65):
        with pytest.raises(ConfigError, match="^cameras: camera"):
            check_camera(name, {"source": "0"})
    assert check_camera("door", {"source": "0", "every_n_frames": 2}).every_n_frames == 2


def runtime(redis_url: str) -> Runtime:
    cfg = load_config(None, environ={})
    cfg.capture.max_queue = 10_000  # no workers here: the queue only fills
    return Runtime.from_config(cfg, redis_url)


def state(rt: Runtime, name: str) -> str | None:
    """A camera's state, None before its capture process first reports it."""
    return rt.bus.camera_status().get(name, {}).get("state")


def session_counts(rt: Runtime, name: str) -> dict[str, int]:
    sids = [s for s in rt.bus.streams() if s.startswith(f"{name}/")]
    return rt.bus.stream_counts(*sids[-1].split("/")) if sids else {}


def test_the_watcher_starts_and_stops_cameras_of_the_set(redis_url, home, demo_media):
    rt = runtime(redis_url)
    cam = MjpegCamera(demo_media["video"], fps=15).start()
    watcher = CameraWatcher(rt, poll_s=0.2).start()
    try:
        assert rt.bus.add_camera("door", {"source": cam.url, "id": "a1"})
        wait_for(lambda: session_counts(rt, "door").get("captured", 0) >= 5, 60, "door's frames")
        wait_for(lambda: state(rt, "door") == "capturing", 60, "door's status")
        st = rt.bus.camera_status()["door"]
        assert st["state"] == "capturing" and st["id"] == "a1" and st["live"] is True
        assert st["owner"] == watcher.owner and watcher.active()

        assert not rt.bus.add_camera("door", {"source": cam.url, "id": "a2"})  # taken
        assert rt.bus.remove_camera("door")
        wait_for(lambda: state(rt, "door") == "stopped", 60, "door to stop")
        counts = session_counts(rt, "door")
        assert "end_seq" in counts  # the session ended: its frames can be accounted for
        wait_for(lambda: not watcher.active(), 60, "the capture thread to end")
        time.sleep(0.5)  # a few polls: nothing restarts it
        assert session_counts(rt, "door")["captured"] == counts["captured"]
        assert len(watcher.captures) == 1
    finally:
        watcher.stop()
        cam.close()


def test_a_file_runs_once_and_a_missing_file_fails_with_the_reason(
    redis_url, home, demo_media, tmp_path
):
    rt = runtime(redis_url)
    watcher = CameraWatcher(rt, poll_s=0.2).start()
    try:
        rt.bus.add_camera("clip", {"source": str(demo_media["video"]), "id": "f1"})
        missing = tmp_path / "nothing.mp4"
        rt.bus.add_camera("gone", {"source": str(missing), "id": "f2"})
        wait_for(lambda: state(rt, "clip") == "ended", 60, "clip")
        st = rt.bus.camera_status()
        assert st["clip"]["captured"] == 30 and session_counts(rt, "clip")["captured"] == 30
        wait_for(lambda: state(rt, "gone") == "failed", 60, "gone to fail")
        assert "nothing.mp4" in rt.bus.camera_status()["gone"]["error"]
        time.sleep(0.6)  # several polls: neither is started again
        assert len(watcher.captures) == 1 and not watcher.active()
        assert len([s for s in rt.bus.streams() if s.startswith("clip/")]) == 1
        # the same name added anew (a new id) runs again
        rt.bus.remove_camera("clip")
        rt.bus.add_camera("clip", {"source": str(demo_media["video"]), "id": "f3"})
        wait_for(
            lambda: (
                rt.bus.camera_status().get("clip", {}).get("id") == "f3"
                and state(rt, "clip") == "ended"
            ),
            60,
            "the second clip",
        )
        assert len(watcher.captures) == 2
    finally:
        watcher.stop()


def test_one_process_runs_a_camera_and_another_takes_over_when_it_stops(
    redis_url, home, demo_media
):
    rt = runtime(redis_url)
    cam = MjpegCamera(demo_media["video"], fps=15).start()
    first = CameraWatcher(rt, poll_s=0.2).start()
    second = CameraWatcher(rt, poll_s=0.2)
    try:
        rt.bus.add_camera("door", {"source": cam.url, "id": "a1"})
        wait_for(lambda: first.active(), 60, "the first watcher to run door")
        second.start()
        time.sleep(1.0)  # five polls of the second: the camera is claimed
        assert not second.active() and not second.captures
        first.stop()  # a process that ends releases its claims
        wait_for(lambda: second.active(), 60, "the second watcher to take door over")
        st = rt.bus.camera_status()["door"]
        assert st["owner"] == second.owner and st["state"] == "capturing"
        sessions = [s for s in rt.bus.streams() if s.startswith("door/")]
        assert len(sessions) == 2  # a new capture session
    finally:
        first.stop()
        second.stop()
        cam.close()


def test_watcher_stop_ends_every_capture(redis_url, home, demo_media):
    rt = runtime(redis_url)
    cam = MjpegCamera(demo_media["video"], fps=15).start()
    watcher = CameraWatcher(rt, poll_s=0.2).start()
    try:
        rt.bus.add_camera("a", {"source": cam.url, "id": "1"})
        rt.bus.add_camera("b", {"source": cam.url, "id": "2"})
        wait_for(lambda: len(watcher.captures) == 2, 60, "both cameras")
        watcher.stop()
        assert not watcher.active()
        for name in ("a", "b"):
            assert "end_seq" in session_counts(rt, name)
        assert Path(str(demo_media["video"])).is_file()
    finally:
        watcher.stop()
        cam.close()


def test_only_cameras_added_since_a_time_count_as_active_and_a_stopped_process_hands_over(
    redis_url, home, demo_media
):
    """`facepipe run` waits for cameras added while it runs, not for those of the set from
    before; when the process stops, those still in the set are left `waiting`."""
    rt = runtime(redis_url)
    cam = MjpegCamera(demo_media["video"], fps=15).start()
    watcher = CameraWatcher(rt, poll_s=0.2).start()
    t0 = time.time()
    try:
        rt.bus.add_camera("old", {"source": cam.url, "id": "1", "added": t0 - 100})
        wait_for(lambda: watcher.active(), 60, "old to run")
        assert not watcher.active(added_since=t0)
        rt.bus.add_camera("new", {"source": cam.url, "id": "2", "added": t0 + 1})
        wait_for(lambda: watcher.active(added_since=t0), 60, "new to run")
        rt.bus.remove_camera("new")
        wait_for(lambda: not watcher.active(added_since=t0), 60, "new to stop")
        assert watcher.active()  # old still runs
        watcher.stop()
        st = rt.bus.camera_status()
        assert st["new"]["state"] == "stopped" and st["old"]["state"] == "waiting"
        assert "old" in rt.bus.cameras()  # still wanted: the next follower runs it
    finally:
        watcher.stop()
        cam.close()
