"""Frames' images leave Redis once no stage needs them (not after redis.frame_ttl_s), and
live cameras' frames tracked without detection are accounted for: the stages on a real
Redis, run in this process by rq's SimpleWorker (burst mode)."""

from __future__ import annotations

import cv2
import pytest

from pipeline.bus import sample_holder
from pipeline.capture import Capture
from pipeline.config import load_config
from pipeline.record import Face, FrameBatch, FrameRecord
from pipeline.runtime import Runtime
from pipeline.sources import Source
from tests.helpers import FastCamera
from workers import base
from workers.base import stage_worker
from workers.track import frame_holders

STAGES = ("detect", "track", "recognize", "attributes", "sink")


@pytest.fixture()
def rt(redis_url, home):
    cfg = load_config(None, environ={})
    cfg.tracker.min_hits = 2
    cfg.capture.max_queue = 1000  # captured before the stages run in this process
    cfg.capture.max_frame_age_s = 600.0  # a slow machine: no frame is stale here
    rt = Runtime.from_config(cfg, redis_url)
    base.set_runtime(rt)
    yield rt
    base.set_runtime(rt)  # drop cached stages


def burst(rt: Runtime, *stages: str) -> None:
    for stage in stages:
        stage_worker(stage, rt, name=f"{stage}-test").work(burst=True, logging_level="WARNING")


def run_all(rt: Runtime) -> None:
    for _ in range(10):
        burst(rt, *STAGES)
        if not any(rt.bus.depth(s) for s in STAGES):
            return


def frame_keys(rt: Runtime) -> set[str]:
    return {k.decode() for k in rt.bus.conn.scan_iter(rt.bus.key("frame", "*"))}


def latest_key(rt: Runtime, stream: str) -> str | None:
    rec = rt.bus.latest(stream)
    return None if rec is None else rec.key


def video_frames(path) -> list:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            return out
        out.append(bgr)


def rec(seq: int, key: str | None = None, dropped: str | None = None) -> FrameRecord:
    return FrameRecord(stream="cam", session="s", seq=seq, ts=1.0, key=key, dropped=dropped)


def sample(key: str, *tids: int) -> FrameRecord:
    r = rec(0, key)
    r.faces = [Face(box=(0, 0, 30, 30), track_id=t) for t in tids]
    return r


def test_who_holds_the_frames_a_track_hold_saw():
    out = [rec(0, "f0"), rec(1), rec(2, "f2"), rec(3, "f3"), rec(4, "f4", dropped="stale")]
    changes = frame_holders(
        out,
        samples=[sample("f0", 2, 1), sample("old", 3)],
        held_before={"old", "kept"},  # a window's best face from an earlier hold
        held_after={"kept", "f2"},  # f2: now the best face of an open window
    )
    # frames seen for the first time: the stages before tracking ("pipeline") let go
    assert changes == {
        "f0": (["sample:1,2"], ["pipeline"]),  # sampled now: held until the sink has it
        "f2": (["track"], ["pipeline"]),  # waits in the state
        "f3": (["latest"], ["pipeline"]),  # the newest shown frame: the live view's
        "f4": ([], ["pipeline"]),  # dropped: nobody needs it, deleted
        "old": (["sample:3"], ["track"]),  # its window closed: sent to recognition
    }  # "kept" still waits: unchanged


def test_hold_frames_deletes_a_frame_nobody_holds(redis_url):
    from pipeline.bus import Bus, connect

    bus = Bus(connect(redis_url))
    for k in ("a", "b", "c", "d"):
        bus.conn.set(k, b"jpeg", ex=300)
    assert bus.frame_holders("a") == {"pipeline"}  # before tracking
    let_go = ["pipeline"]
    bus.hold_frames({"a": ([], let_go), "b": (["sample:1", "latest"], let_go),
                     "c": (["track"], let_go)})  # fmt: skip
    assert not bus.conn.exists("a") and bus.frame_holders("a") == set()
    assert bus.frame_holders("b") == {"sample:1", "latest"}
    assert 0 < bus.conn.ttl(bus.frame_holders_key("b")) <= 300  # expires with its frame
    bus.hold_frames({"b": ([], ["sample:1"]), "c": ([], ["track"])})
    assert bus.conn.exists("b") and not bus.conn.exists("c")
    bus.hold_frames({"b": ([], ["latest"])})
    assert not bus.conn.exists("b") and not bus.conn.exists(bus.frame_holders_key("b"))
    bus.hold_frames({"b": ([], ["latest"])})  # told again (a retried job): harmless
    # a frame the track stage never saw (a sink fed by hand) is never deleted by a holder
    # letting go, and keeps no holders set
    bus.hold_frames({"d": ([], ["sample:1", "latest"])})
    assert bus.conn.exists("d") and not bus.conn.exists(bus.frame_holders_key("d"))


def test_frames_nobody_samples_leave_redis_after_tracking(rt, demo_media):
    """Without samples (faces too small to sample), every frame's image goes as soon as
    the track stage has seen it, but the newest shown one (the web UI's live view)."""
    rt.config.sampling.min_face_px = 10_000
    res = Capture(rt, Source(str(demo_media["video"])), "demo").run()
    assert len(frame_keys(rt)) == 30  # stored with the detect jobs
    burst(rt, "detect")
    assert len(frame_keys(rt)) == 30  # the track stage has not seen them yet
    burst(rt, "track")
    assert len(frame_keys(rt)) == 1
    (last,) = frame_keys(rt)
    assert rt.bus.frame_holders(last) == {"latest"}
    burst(rt, "sink")
    assert rt.bus.stream_counts("demo", res.session)["processed"] == 30
    assert frame_keys(rt) == {last} == {latest_key(rt, "demo")}
    # another stream's newest frame takes the live view of its own stream only; a newer
    # frame of this one replaces it, and the replaced one goes
    rt.frames.put("newer", cv2.imread(str(demo_media["photo"])))
    rt.bus.hold_frames({"newer": (["latest"], [])})
    rt.bus.set_latest(FrameRecord(stream="demo", session=res.session, seq=30, ts=1.0,
                                  key="newer"), 60)  # fmt: skip
    assert frame_keys(rt) == set() and rt.bus.conn.exists("newer")


@pytest.mark.slow
def test_sampled_frames_keep_their_images_until_the_sink_has_the_samples(rt, demo_media):
    res = Capture(rt, Source(str(demo_media["video"])), "demo").run()
    burst(rt, "detect", "track")
    kept = frame_keys(rt)
    samples = [r for j in rt.bus.queue("recognize").get_jobs()
               for r in FrameBatch.from_dict(j.args[0]).records]  # fmt: skip
    assert samples and {s.key for s in samples} <= kept
    for s in samples:
        assert sample_holder(s) in rt.bus.frame_holders(s.key)
    # frames of open windows (their best face waits) and the newest shown one, no more
    state = rt.bus.load_tracker_state("demo", res.session)
    waiting = {c["key"] for c in state["candidates"].values()}
    shown = [k for k in kept if "latest" in rt.bus.frame_holders(k)]
    assert len(shown) == 1
    assert kept == {s.key for s in samples} | waiting | set(shown)
    assert len(kept) < 30
    run_all(rt)
    assert rt.bus.stream_counts("demo", res.session)["processed"] == 30
    # every sample went through recognize, attributes and the sink: only the live view's
    assert frame_keys(rt) == {latest_key(rt, "demo")}


def test_a_live_camera_s_frames_tracked_without_detection_are_accounted(rt, demo_media):
    """Nobody detects while the camera runs: 2 frames go to detection
    (live_max_in_flight), 3 are tracked without (max_undetected, `load`), the rest are
    dropped. Then the stages run: captured = processed + dropped, processed = detected +
    undetected, counted per reason in the stream's counts and in the metric."""
    cfg = rt.config.capture
    cfg.live_max_in_flight, cfg.max_undetected = 2, 3
    cfg.shot_cut_threshold = None
    rt.config.sampling.min_face_px = 10_000  # no samples: no recognition needed here
    cap = Capture(rt, FastCamera(video_frames(demo_media["video"])), "cam")  # type: ignore[arg-type]
    res = cap.run()
    run_all(rt)
    c = rt.bus.stream_counts("cam", res.session)
    assert c["captured"] == 30 == c["processed"] + c["dropped:backpressure"]
    assert c["processed"] == 5 and c["detected"] == 2 and c["undetected:load"] == 3
    assert rt.bus.stream_done("cam", res.session)
    m = rt.metrics
    assert m.total("facepipe_frames_undetected_total", stream="cam", reason="load") == 3
    assert m.total("facepipe_frames_undetected_total", stream="cam", reason="schedule") == 0
    assert m.total("facepipe_frames_processed_total", stream="cam") == 5
    assert rt.bus.detections_in_flight("cam", res.session) == []  # detected: out of flight
    from pipeline.bus import detection_rate

    assert detection_rate(c) == pytest.approx(2 / 5)
    assert frame_keys(rt) == {latest_key(rt, "cam")}  # the images of the others are gone
