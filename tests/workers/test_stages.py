"""The stages on a real Redis, run in this process by rq's SimpleWorker (burst mode)."""

from __future__ import annotations

import numpy as np
import pytest
from rq.serializers import JSONSerializer

from pipeline.capture import Capture
from pipeline.config import load_config
from pipeline.record import FrameRecord
from pipeline.runtime import Runtime
from pipeline.sources import Source
from pipeline.store import EventStore
from workers import base
from workers.base import StageWorker


@pytest.fixture()
def rt(redis_url, home):
    cfg = load_config(None, environ={})
    cfg.tracker.min_hits = 2
    cfg.capture.max_queue = 1000  # captured before the stages run in this process
    rt = Runtime.from_config(cfg, redis_url)
    base.set_runtime(rt)
    yield rt
    base.set_runtime(rt)  # drop cached stages


def burst(rt: Runtime, stage: str) -> None:
    StageWorker([rt.bus.queue(stage)], connection=rt.bus.conn, serializer=JSONSerializer).work(
        burst=True, logging_level="WARNING"
    )


def run_all(rt: Runtime) -> None:
    for _ in range(10):
        for stage in ("detect", "track", "recognize", "attributes", "sink"):
            burst(rt, stage)
        if not any(rt.bus.depth(s) for s in ("detect", "track", "recognize", "attributes", "sink")):
            return


def test_pipeline_in_process_names_the_enrolled_face(rt, demo_media):
    from pipeline.demo import DEMO_NAME
    from pipeline.recognition.enroll import encode_photos
    from workers.detect import DetectStage

    loads_before = DetectStage.loads
    store = EventStore(rt.config.store_url)
    store.enroll(DEMO_NAME, encode_photos([str(demo_media["photo"])]), ["photo"])
    res = Capture(rt, Source(str(demo_media["video"])), "demo").run()
    run_all(rt)
    counts = rt.bus.stream_counts("demo", res.session)
    assert counts["processed"] == 30 and rt.bus.stream_done("demo", res.session)
    (ev,) = store.events()
    assert ev["person"] == DEMO_NAME
    assert ev["n_frames"] >= 25 and ev["ended"]
    assert ev["gender"] in ("female", None) and 15 < ev["age"] < 60
    assert ev["snapshot"] and ev["identity_samples"] >= 2
    # one model load per process, however many jobs (30 detect jobs here)
    assert DetectStage.loads - loads_before == 1
    assert rt.metrics.total("facepipe_frames_processed_total", stream="demo") == 30
    assert rt.metrics.total("facepipe_recognitions_total", result="known") >= 2


def test_tracker_consumes_out_of_order_detections_in_order(rt, demo_media):
    res = Capture(rt, Source(str(demo_media["video"])), "demo").run()
    q = rt.bus.queue("detect")
    jobs = [q.fetch_job(i) for i in q.job_ids]
    q.empty()
    # detect workers finishing in reverse order
    for job in reversed(jobs):
        base.get_stage("detect").handle(job.args[0])
    burst(rt, "track")
    burst(rt, "sink")
    sink_jobs = rt.bus.queue("sink")
    assert sink_jobs.count == 0
    assert rt.bus.stream_counts("demo", res.session)["processed"] == 30
    state = rt.bus.conn.get(rt.bus.key("tracker", "demo", res.session))
    assert b'"next_seq": 30' in state
    store = EventStore(rt.config.store_url)
    assert len(store.events()) == 1  # one face, one track, despite the shuffled order


def test_missing_frame_is_skipped_after_gap_timeout_and_counted(rt):
    rt.config.tracker.gap_timeout_s = 0.2
    bus = rt.bus
    bus.register_stream("cam", "s", {"source": "x", "live": False})
    bus.count_frame("cam", "s", "captured", 3)
    for seq in (0, 2):  # the detect result of frame 1 never arrives
        rec = FrameRecord(stream="cam", session="s", seq=seq, ts=1.0, last=seq == 2)
        bus.conn.hset(bus.key("detected", "cam", "s"), str(seq), rec.to_json())
    bus.set_end("cam", "s", 2)
    track = base.get_stage("track")
    track.handle({"stream": "cam", "session": "s"})
    burst(rt, "sink")
    assert bus.stream_counts("cam", "s").get("processed") == 1  # frame 0 only, so far
    import time

    time.sleep(0.3)
    track.handle({"stream": "cam", "session": "s"})
    burst(rt, "sink")
    c = bus.stream_counts("cam", "s")
    assert c["processed"] == 2 and c["dropped:lost"] == 1
    assert bus.stream_done("cam", "s")


def test_stale_live_frame_dropped_by_detect(rt):
    bus = rt.bus
    rec = FrameRecord(stream="cam", session="s", seq=0, ts=1.0, live=True, key="gone")
    base.get_stage("detect").handle(rec.to_dict())
    raw = bus.conn.hget(bus.key("detected", "cam", "s"), "0")
    assert FrameRecord.from_json(raw).dropped == "stale"
    rec2 = FrameRecord(stream="cam", session="s", seq=1, ts=9e12, key="expired-key")
    base.get_stage("detect").handle(rec2.to_dict())
    raw = bus.conn.hget(bus.key("detected", "cam", "s"), "1")
    assert FrameRecord.from_json(raw).dropped == "expired"
    sums = rt.metrics.histogram_sums("facepipe_stage_seconds")
    assert sums[(("stage", "detect"),)][1] == 2 and np.isfinite(sums[(("stage", "detect"),)][0])
