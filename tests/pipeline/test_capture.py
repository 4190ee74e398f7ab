import threading
import time

import pytest

from pipeline.capture import Capture, CaptureResult
from pipeline.config import load_config
from pipeline.record import FrameBatch, FrameRecord
from pipeline.runtime import Runtime
from pipeline.sources import Source, describe
from tests.helpers import FastCamera


def runtime(redis_url, **capture):
    cfg = load_config(None, environ={})
    for k, v in capture.items():
        setattr(cfg.capture, k, v)
    return Runtime.from_config(cfg, redis_url)


def frames_of(job) -> list[FrameRecord]:
    """The frames of a detect job (a batch of one or more)."""
    return FrameBatch.from_dict(job.args[0]).records


def queued_frames(q) -> list[FrameRecord]:
    return [r for i in q.job_ids for r in frames_of(q.fetch_job(i))]


def test_describe_sources():
    assert describe("0") == ("webcam", True)
    assert describe("rtsp://cam/stream") == ("url", True)
    assert describe("https://cam/x.ts") == ("url", True)
    assert describe("clip.mp4") == ("file", False)


def test_missing_file_is_a_clear_error(tmp_path):
    import pytest

    from pipeline.sources import SourceError

    with pytest.raises(SourceError, match="not found"):
        Source(str(tmp_path / "nope.mp4"))


def test_file_source_never_drops_and_marks_last(redis_url, demo_media):
    rt = runtime(redis_url, max_queue=2)
    bus = rt.bus
    got: list[FrameRecord] = []
    stop = threading.Event()

    def consumer():  # a slow detect stage
        q = bus.queue("detect")
        while not stop.is_set() or q.count:
            ids = q.job_ids
            if ids:
                j = q.fetch_job(ids[0])
                q.remove(ids[0])
                got.extend(frames_of(j))
            stop.wait(0.01)

    t = threading.Thread(target=consumer)
    t.start()
    cap = Capture(rt, Source(str(demo_media["video"])), "clip")
    res = cap.run()
    stop.set()
    t.join()
    assert res.captured == 30 and res.enqueued == 30 and res.dropped == 0
    assert [r.seq for r in got] == list(range(30))
    assert [r.last for r in got] == [False] * 29 + [True]
    assert all(not r.live for r in got)
    img = rt.frames.get(got[0].key)
    assert img.shape == (360, 640, 3)
    assert 0 < bus.conn.ttl(got[0].key) <= rt.config.redis.frame_ttl_s
    c = bus.stream_counts("clip", res.session)
    assert c["captured"] == 30 and c["end_seq"] == 29


def capture_as_live(rt: Runtime, video: str) -> tuple[CaptureResult, dict[str, int]]:
    """Capture a file as if it were a camera for 1.5 s; the result and the stream counts."""
    src = Source(video)
    src.live = True  # read the file as if it were a camera: nobody consumes the queue
    src.reconnect_s = 60.0  # at the end of the file, the "camera" fails; we stop it
    cap = Capture(rt, src, "cam")
    timer = threading.Timer(1.5, cap.stop)
    timer.start()
    res = cap.run()
    timer.cancel()
    return res, rt.bus.stream_counts("cam", res.session)


def blank_frames(n: int) -> list:
    import numpy as np

    return [np.full((48, 64, 3), i, np.uint8) for i in range(n)]


def live_runtime(redis_url, **capture) -> Runtime:
    # frames never age out of "in flight" while a slow test machine runs them
    rt = runtime(redis_url, max_frame_age_s=600.0, **capture)
    rt.config.capture.shot_cut_threshold = None
    return rt


def taken(rt: Runtime, session: str) -> dict[int, FrameRecord]:
    """The frames the capture sent, by seq: detect jobs and the track stage's buffer."""
    recs = {r.seq: r for r in queued_frames(rt.bus.queue("detect")) if r.stream == "cam"}
    recs |= {s: rt.bus.buffer_take("cam", session, s) for s in rt.bus.buffer_seqs("cam", session)}
    return recs


def test_a_live_source_without_room_tracks_frames_undetected_instead_of_dropping(redis_url):
    """Nobody detects: the camera's first live_max_in_flight frames go to detection, the
    next max_undetected go straight to the tracker (undetected: load, processed, never
    lost), and only then, the camera's own detections still in flight, are frames dropped
    (backpressure). Every frame is accounted for."""
    rt = live_runtime(redis_url, max_queue=16, live_max_in_flight=2, max_undetected=3)
    cap = Capture(rt, FastCamera(blank_frames(12)), "cam")  # type: ignore[arg-type]
    res = cap.run()
    recs = taken(rt, res.session)
    assert sorted(recs) == [0, 1, 2, 3, 4]
    assert [s for s, r in recs.items() if r.detected] == [0, 1]
    assert all(r.key and rt.bus.conn.exists(r.key) for r in recs.values() if r.detected)
    load = [r for r in recs.values() if not r.detected]
    assert [r.seq for r in load] == [2, 3, 4]
    assert all(r.undetected == "load" and r.key is None for r in load)  # no image stored
    assert rt.bus.detections_in_flight("cam", res.session) == [0, 1]
    # they wait behind frames in detection, whose results will poke the track stage
    assert rt.bus.depth("track") == 0
    c = rt.bus.stream_counts("cam", res.session)
    assert res.captured == c["captured"] == 12
    assert res.enqueued == 5 and res.dropped == c["dropped:backpressure"] == 7
    assert c["end_seq"] == 4 and recs[4].last


def test_the_detect_stage_frees_a_live_camera_s_room(redis_url):
    """Detection results (what the detect stage writes) take frames out of flight: the
    camera detects again at once."""
    rt = live_runtime(redis_url, live_max_in_flight=2, max_undetected=3)
    bus = rt.bus

    def detect_stage(i: int) -> None:  # before frame 4: the detect stage catches up
        if i == 4:
            q = bus.queue("detect")
            for job_id in q.job_ids:
                bus.buffer_put_many(frames_of(q.fetch_job(job_id)))
            q.empty()

    res = Capture(rt, FastCamera(blank_frames(8), detect_stage), "cam").run()  # type: ignore[arg-type]
    recs = {s: bus.buffer_take("cam", res.session, s) for s in bus.buffer_seqs("cam", res.session)}
    recs |= {r.seq: r for r in queued_frames(bus.queue("detect"))}
    # 0, 1 detected; 2, 3 (no room) not; the stage catches up: 4, 5 detected; 6, 7 not
    assert sorted(recs) == list(range(8)) and res.dropped == 0
    assert [s for s in range(8) if recs[s].detected] == [0, 1, 4, 5]
    assert bus.detections_in_flight("cam", res.session) == [4, 5]


def test_after_max_undetected_frames_a_camera_is_detected_despite_a_full_queue(redis_url):
    """Fairness between cameras: the detect queue is full of other cameras' frames; this
    camera's frames skip detection, but never more than max_undetected in a row while its
    own detections in flight are below their bound."""
    rt = live_runtime(redis_url, max_queue=2, live_max_in_flight=2, max_undetected=2)
    for _ in range(2):  # the detect stage is behind with another camera's frames
        rt.bus.send("detect", FrameRecord(stream="other", seq=0, ts=0.0))
    res = Capture(rt, FastCamera(blank_frames(10)), "cam").run()  # type: ignore[arg-type]
    recs = taken(rt, res.session)
    assert sorted(recs) == list(range(8))
    assert [s for s, r in recs.items() if r.detected] == [2, 5]
    assert all(recs[s].undetected == "load" for s in (0, 1, 3, 4, 6, 7))
    # then two detections of its own in flight and max_undetected reached: dropped
    c = rt.bus.stream_counts("cam", res.session)
    assert c["captured"] == 10 and c["dropped:backpressure"] == 2 == res.dropped


def test_fairness_never_lets_the_detect_queue_grow_past_twice_its_bound(redis_url):
    """With the detect stage gone (no worker), cameras detected for fairness would fill
    the queue for ever: past 2 x max_queue their frames are dropped instead."""
    rt = live_runtime(redis_url, max_queue=2, live_max_in_flight=2, max_undetected=2)
    for _ in range(4):
        rt.bus.send("detect", FrameRecord(stream="other", seq=0, ts=0.0))
    res = Capture(rt, FastCamera(blank_frames(5)), "cam").run()  # type: ignore[arg-type]
    recs = taken(rt, res.session)
    assert sorted(recs) == [0, 1] and not any(r.detected for r in recs.values())
    assert res.dropped == 3 and rt.bus.depth("detect") == 4


def test_a_live_source_keeps_the_every_n_frames_schedule_after_skips(redis_url):
    """detector.every_n_frames on a live camera: n frames after the last detected one
    (skipped frames: schedule); a frame skipped for load moves the next detection on."""
    rt = live_runtime(redis_url, live_max_in_flight=1, max_undetected=4)
    rt.config.detector.every_n_frames = 2
    res = Capture(rt, FastCamera(blank_frames(6)), "cam").run()  # type: ignore[arg-type]
    recs = taken(rt, res.session)
    # 0 detected; 1 schedule; 2 due, but 0 is in flight: load, 3, 4 too; 4 in a row (the
    # schedule's count as well): the next frame, no room of its own, is dropped
    assert sorted(recs) == list(range(5))
    assert [recs[s].detected for s in range(5)] == [True] + [False] * 4
    assert [recs[s].undetected for s in range(5)] == [None, "schedule", "load", "load", "load"]
    assert res.dropped == 1


def test_every_nth_frame_detected_the_rest_go_straight_to_the_tracker(redis_url, demo_media):
    rt = runtime(redis_url)
    rt.config.detector.every_n_frames = 3
    bus = rt.bus
    res = Capture(rt, Source(str(demo_media["video"])), "clip").run()
    assert res.captured == 30 and res.enqueued == 30 and res.dropped == 0
    q = bus.queue("detect")
    detect = queued_frames(q)
    assert [r.seq for r in detect] == list(range(0, 30, 3))
    assert all(r.detected and r.key for r in detect)
    assert bus.buffer_seqs("clip", res.session) == [s for s in range(30) if s % 3]
    skipped = [bus.buffer_take("clip", res.session, s) for s in range(30) if s % 3]
    assert [r.seq for r in skipped] == [s for s in range(30) if s % 3]
    assert all(not r.detected and r.key is None for r in skipped)  # no image stored
    assert skipped[-1].last and skipped[-1].seq == 29
    # the stream's track stage is poked for them (once per batch sent)
    assert 1 <= bus.depth("track") <= 20


def test_the_first_frame_of_a_new_shot_is_marked(redis_url, tmp_path):
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "two-shots.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (320, 180))
    for i in range(10):
        colour = (40, 90, 160) if i < 6 else (160, 120, 40)
        frame = np.zeros((180, 320, 3), np.uint8) + np.array(colour, np.uint8)
        w.write(np.clip(frame + rng.integers(0, 30, frame.shape), 0, 255).astype(np.uint8))
    w.release()
    rt = runtime(redis_url)
    Capture(rt, Source(str(path)), "clip").run()
    q = rt.bus.queue("detect")
    recs = queued_frames(q)
    assert [r.seq for r in recs if r.cut] == [6]
    rt.config.capture.shot_cut_threshold = None
    q.empty()
    Capture(rt, Source(str(path)), "clip").run()
    assert not any(r.cut for r in queued_frames(q))


def test_waiting_for_a_stream_with_a_lost_job_ends(redis_url):
    """Frames whose job was lost for good (failed, no retries left): the wait gives up
    after tracker.gap_timeout_s + 3 x workers.job_recovery_s without progress."""
    import time

    from pipeline.capture import wait_accounted

    rt = runtime(redis_url)
    rt.config.tracker.gap_timeout_s = 0.2
    rt.config.workers.job_recovery_s = 1.0
    bus = rt.bus
    bus.register_stream("cam", "s", {})
    bus.count_frame("cam", "s", "captured", 5)
    bus.account_frames("cam", "s", {0: "processed", 1: "processed"})
    bus.set_end("cam", "s", 4)
    t0 = time.monotonic()
    waited = wait_accounted(rt, [("cam", "s")])
    assert not waited.done and waited.unaccounted == 3
    assert "no progress" in waited.reason
    assert time.monotonic() - t0 < 10


def test_waiting_for_a_done_stream_does_not_wait_for_other_streams_for_ever(redis_url):
    """A capture that shares the pipeline with other cameras: once its frames are
    accounted for, their jobs are waited for only ``settle_s``."""
    import time

    from pipeline.capture import wait_accounted

    rt = runtime(redis_url)
    bus = rt.bus
    bus.register_stream("cam", "s", {})
    bus.count_frame("cam", "s", "captured", 2)
    bus.account_frames("cam", "s", {0: "processed", 1: "processed"})
    bus.set_end("cam", "s", 1)
    bus.send("detect", FrameRecord(stream="other", seq=0, ts=0.0))  # another camera's job
    t0 = time.monotonic()
    waited = wait_accounted(rt, [("cam", "s")], settle_s=0.5)
    took = time.monotonic() - t0
    assert waited.done and waited.counts == {"captured": 2, "processed": 2}
    assert 0.5 <= took < 3, took
    assert bus.depth("detect") == 1  # still there: it was not this stream's


def test_waiting_for_a_stream_redis_lost_ends_at_once(redis_url):
    from pipeline.capture import wait_accounted

    rt = runtime(redis_url)
    rt.bus.register_stream("cam", "s", {})
    rt.bus.count_frame("cam", "s", "captured", 5)
    rt.bus.conn.delete(rt.bus.key("stream", "cam/s"))  # what a restart without persistence does
    rt.bus.count_frame("cam", "s", "processed", 1)  # a late worker re-creates the counts
    waited = wait_accounted(rt, [("cam", "s")])
    assert not waited.done and "lost the state" in waited.reason


class PacedCamera:
    """A live source at 30 frames/s until stopped (a camera that never fails)."""

    live, spec, unreadable = True, "fake-camera", 0

    def __init__(self) -> None:
        self._stop = threading.Event()

    def __iter__(self):
        import time

        import numpy as np

        from pipeline.sources import Frame

        while not self._stop.wait(1 / 30):
            yield Frame(bgr=np.zeros((48, 64, 3), np.uint8), ts=time.time())

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        pass


def test_a_live_capture_goes_on_through_a_redis_restart(home):
    """While Redis is down a live source goes on; Redis comes back empty: the capture says
    which session was lost and goes on in a new one, whose frames are all counted."""
    import time

    from pipeline.redis_server import PrivateRedis

    with PrivateRedis() as server:
        cfg = load_config(None, environ={})
        cfg.redis.reconnect_max_s = 0.2
        cfg.capture.max_queue = 1000
        rt = Runtime.from_config(cfg, server.url)
        cap = Capture(rt, PacedCamera(), "cam")  # type: ignore[arg-type]
        first = cap.session

        results = []
        t = threading.Thread(target=lambda: results.append(cap.run()))
        t.start()
        time.sleep(0.5)
        # restarted from this thread: the server's parent-death signal follows its thread
        server.stop(keep_dir=True)
        time.sleep(0.5)
        server.start()
        time.sleep(1.5)
        cap.stop()
        t.join(10)
        (res,) = results
        assert res.lost_sessions and res.lost_sessions[0][0] == first
        assert res.session != first and cap.health.outages == 1
        c = rt.bus.stream_counts("cam", res.session)
        dropped = sum(v for k, v in c.items() if k.startswith("dropped:"))
        assert c["captured"] == res.captured - res.lost > 20
        assert c["end_seq"] + 1 + dropped == c["captured"]  # every frame enqueued or dropped


def test_a_backed_up_detect_queue_gets_batches_every_frame_once_in_order(redis_url, demo_media):
    """Nobody consumes the detect queue: the first frame goes alone (the queue was empty),
    the rest in batches of at most capture.batch_frames; every frame once, in order."""
    rt = runtime(redis_url, max_queue=1000, batch_frames=4, batch_wait_s=600.0)
    res = Capture(rt, Source(str(demo_media["video"])), "clip").run()
    assert res.captured == 30 and res.enqueued == 30 and res.dropped == 0
    q = rt.bus.queue("detect")
    jobs = [frames_of(q.fetch_job(i)) for i in q.job_ids]
    assert [len(j) for j in jobs] == [1] + [4] * 7 + [1]  # the last: at the end of the file
    seqs = [r.seq for j in jobs for r in j]
    assert seqs == list(range(30))
    assert [r.last for j in jobs for r in j] == [False] * 29 + [True]
    # every image was stored with its job
    assert all(rt.bus.conn.exists(r.key) for j in jobs for r in j)


def test_batch_frames_1_sends_a_job_per_frame(redis_url, demo_media):
    rt = runtime(redis_url, max_queue=1000, batch_frames=1)
    Capture(rt, Source(str(demo_media["video"])), "clip").run()
    q = rt.bus.queue("detect")
    assert [len(frames_of(q.fetch_job(i))) for i in q.job_ids] == [1] * 30


class JpegCamera(FastCamera):
    """An MJPEG camera read with capture.mjpeg_passthrough: frames carry their JPEG."""

    def __iter__(self):  # noqa: ANN204
        from pipeline.sources import Frame

        for data in self.frames:
            yield Frame(jpeg=data, ts=time.time())


@pytest.mark.parametrize("resize_width", [None, 64])
def test_a_camera_s_jpegs_go_to_redis_as_sent_unless_resized(redis_url, resize_width):
    import numpy as np

    from pipeline.camera_server import encode_jpeg
    from pipeline.frames import decode_bgr, is_jpeg

    rng = np.random.default_rng(1)
    jpegs = [encode_jpeg(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)) for _ in range(3)]
    rt = live_runtime(redis_url, live_max_in_flight=4, resize_width=resize_width)
    res = Capture(rt, JpegCamera(jpegs), "cam").run()  # type: ignore[arg-type]
    recs = taken(rt, res.session)
    assert sorted(recs) == [0, 1, 2] and all(r.detected for r in recs.values())
    stored = [rt.bus.conn.get(recs[s].key) for s in range(3)]
    if resize_width is None:
        assert stored == jpegs  # not decoded, not re-encoded
        assert all((r.width, r.height) == (128, 96) for r in recs.values())
    else:  # wider than resize_width: decoded, downscaled, encoded again
        assert all((r.width, r.height) == (64, 48) for r in recs.values())
        for data in stored:  # (in the store's format: JPEG, or raw over a unix socket)
            assert is_jpeg(data) != rt.frames.raw
            assert decode_bgr(data).shape == (48, 64, 3)


def test_a_job_a_worker_took_but_has_not_started_keeps_the_wait_going(redis_url):
    """Between a worker's dequeue (rq moves the job into its intermediate queue) and the
    job's start, the job is in neither the queue nor the started registry: it counts as
    waiting, or a run would stop its workers and lose what the job sends on (the last
    samples of a file; docs/benchmarks.md, "one recognize job per track hold")."""
    import threading
    import time

    from rq.intermediate_queue import IntermediateQueue

    from pipeline.capture import pipeline_activity, wait_accounted

    rt = runtime(redis_url)
    bus = rt.bus
    bus.register_stream("cam", "s", {})
    bus.count_frame("cam", "s", "captured", 1)
    bus.account_frames("cam", "s", {0: "processed"})
    bus.set_end("cam", "s", 0)
    bus.send("attributes", FrameRecord(stream="cam", session="s", seq=0, ts=0.0))
    q = bus.queue("attributes")
    taken = IntermediateQueue(q.key, bus.conn).key
    bus.conn.lmove(q.key, taken)  # a worker's dequeue
    assert bus.depth("attributes") == 0
    assert pipeline_activity(bus) == (True, False)
    threading.Timer(0.6, lambda: bus.conn.delete(taken)).start()  # the job ran
    t0 = time.monotonic()
    waited = wait_accounted(rt, [("cam", "s")])
    assert waited.done and time.monotonic() - t0 >= 0.5
    assert pipeline_activity(bus) == (False, False)
