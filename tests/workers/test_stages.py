"""The stages on a real Redis, run in this process by rq's SimpleWorker (burst mode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.capture import Capture
from pipeline.config import load_config
from pipeline.record import (
    Encodings,
    Face,
    FrameBatch,
    FrameRecord,
    Merge,
    sink_message_from_dict,
)
from pipeline.runtime import Runtime
from pipeline.sources import Source
from pipeline.store import EventStore
from workers import base
from workers.base import stage_worker


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
    stage_worker(stage, rt, name=f"{stage}-test").work(burst=True, logging_level="WARNING")


def run_all(rt: Runtime) -> None:
    for _ in range(10):
        for stage in ("detect", "track", "recognize", "attributes", "sink"):
            burst(rt, stage)
        if not any(rt.bus.depth(s) for s in ("detect", "track", "recognize", "attributes", "sink")):
            return


@pytest.mark.slow
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
    assert rt.bus.depth("sink") == 0 and rt.bus.conn.xlen(rt.bus.entries_key("sink")) == 0
    assert rt.bus.stream_counts("demo", res.session)["processed"] == 30
    assert rt.bus.load_tracker_state("demo", res.session)["next_seq"] == 30
    store = EventStore(rt.config.store_url)
    assert len(store.events()) == 1  # one face, one track, despite the shuffled order


def test_missing_frame_is_skipped_after_gap_timeout_and_counted(rt):
    rt.config.tracker.gap_timeout_s = 0.2
    bus = rt.bus
    bus.register_stream("cam", "s", {"source": "x", "live": False})
    bus.count_frame("cam", "s", "captured", 3)
    for seq in (0, 2):  # the detect result of frame 1 never arrives
        rec = FrameRecord(stream="cam", session="s", seq=seq, ts=1.0, last=seq == 2)
        bus.buffer_put(rec)
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
    # frame 1's detect job, recovered from a dead worker, arrives too late: discarded
    bus.buffer_put(FrameRecord(stream="cam", session="s", seq=1, ts=1.0))
    track.handle({"stream": "cam", "session": "s"})
    assert bus.buffer_len("cam", "s") == 0
    assert bus.stream_counts("cam", "s") == c


def test_stale_live_frame_dropped_by_detect(rt):
    bus = rt.bus
    rec = FrameRecord(stream="cam", session="s", seq=0, ts=1.0, live=True, key="gone")
    base.get_stage("detect").handle(rec.to_dict())
    assert bus.buffer_take("cam", "s", 0).dropped == "stale"
    rec2 = FrameRecord(stream="cam", session="s", seq=1, ts=9e12, key="expired-key")
    base.get_stage("detect").handle(rec2.to_dict())
    assert bus.buffer_take("cam", "s", 1).dropped == "expired"
    sums = rt.metrics.histogram_sums("facepipe_stage_seconds")
    assert sums[(("stage", "detect"),)][1] == 2 and np.isfinite(sums[(("stage", "detect"),)][0])
    # no model ran on either frame: no inference time
    assert rt.metrics.total("facepipe_inference_cpu_seconds_total") == 0


def test_detect_counts_the_cpu_time_of_its_model_as_inference(rt):
    bus = rt.bus
    rec = FrameRecord(stream="cam", session="s", seq=0, ts=9e12, key="frame-0")
    rt.frames.put("frame-0", np.full((360, 640, 3), 128, np.uint8))
    base.get_stage("detect").handle(rec.to_dict())
    assert bus.buffer_take("cam", "s", 0).dropped is None
    assert rt.metrics.total("facepipe_inference_cpu_seconds_total", stage="detect") > 0


def make_cut_video(path, frames=30, cut=12, gap=3):
    """The astronaut on the left for ``cut`` frames, ``gap`` empty frames, then on the
    right (a jump no motion model follows): one person, two tracks unless re-identified."""
    import cv2

    from pipeline.demo import astronaut_rgb

    w, h = 640, 360
    portrait = cv2.cvtColor(astronaut_rgb(), cv2.COLOR_RGB2BGR)[0:300, 100:340]
    ph, pw = 270, 216
    face = cv2.resize(portrait, (pw, ph), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (w, h))
    for i in range(frames):
        frame = np.full((h, w, 3), 70, np.uint8)
        if i < cut:
            x = 20 + 2 * i
        elif i >= cut + gap:
            x = 380 + 2 * (i - cut - gap)
        else:
            x = None
        if x is not None:
            frame[40 : 40 + ph, x : x + pw] = face
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.slow
@pytest.mark.parametrize("reid_window", [60, 0])
def test_a_track_that_comes_back_after_a_cut_is_merged_into_one_event(rt, tmp_path, reid_window):
    rt.config.tracker.reid_window = reid_window
    video = make_cut_video(tmp_path / "cut.mp4")
    res = Capture(rt, Source(str(video)), "cam").run()
    run_all(rt)
    assert rt.bus.stream_counts("cam", res.session)["processed"] == 30
    evs = EventStore(rt.config.store_url).events()
    merged = rt.metrics.total("facepipe_tracks_merged_total", stream="cam")
    if reid_window == 0:  # merging off: the motion model alone splits at the jump
        assert len(evs) == 2 and merged == 0
        return
    (ev,) = evs
    assert merged == 1
    assert ev["track_id"] == 1 and ev["ended"]
    assert ev["n_frames"] == 27  # every frame with the face, both sides of the cut
    assert ev["identity_samples"] >= 3 and ev["attribute_samples"] >= 3
    assert ev["snapshot"]
    # the losing track's snapshot and context image are gone: one pair per event
    snap = Path(ev["snapshot"])
    assert sorted(snap.parent.glob("*.jpg")) == sorted([snap, Path(ev["context"])])
    # the tracker state knows the merge: the second track is an alias of the first
    state = rt.bus.load_tracker_state("cam", res.session)
    assert [2, 1] in state["tracker"]["aliases"]


def test_a_track_job_that_meets_the_lock_leaves_the_work_to_the_holder(rt, monkeypatch):
    """A track job that finds the stream's lock held returns at once; the holder looks
    again as it releases it, for frames and for encodings that arrived meanwhile."""
    from pipeline.tracking.state import TrackerStates

    bus = rt.bus
    bus.buffer_put(FrameRecord(stream="cam", session="s", seq=0, ts=1.0))
    track = base.get_stage("track")
    with TrackerStates(bus, rt.config.tracker).locked("cam", "s") as held:
        assert held
        track.handle({"stream": "cam", "session": "s"})  # refused
    assert bus.buffer_has("cam", "s", 0)  # not consumed
    assert not bus.track_pending("cam", "s")  # the refused job cleared the flag

    end = bus.track_end
    calls = []

    def recognize_sends_then_end(stream, session, token, state, pipeline, encodings=0):
        if not calls:  # while this job holds the lock, recognize sends encodings; the
            # track job that send queued meets the lock and returns
            face = Face(box=(0, 0, 40, 40), track_id=3, encoding=[0.1] * 128, quality=0.5)
            bus.send_encodings(Encodings("cam", "s", 0, [face]))
            assert bus.depth("track") == 2  # (the flag was cleared: a new job)
            track.handle({"stream": "cam", "session": "s"})
        calls.append(state["next_seq"])
        end(stream, session, token, state, pipeline, encodings)

    monkeypatch.setattr(bus, "track_end", recognize_sends_then_end)
    track.handle({"stream": "cam", "session": "s"})
    assert calls == [1, 1]  # a second hold took the encodings
    assert not bus.encodings_waiting("cam", "s") and not bus.buffer_has("cam", "s", 0)


@pytest.mark.slow
def test_detection_on_every_third_frame_tracks_and_names_through_the_gaps(rt, demo_media):
    from pipeline.demo import DEMO_NAME
    from pipeline.recognition.enroll import encode_photos

    rt.config.detector.every_n_frames = 3
    store = EventStore(rt.config.store_url)
    store.enroll(DEMO_NAME, encode_photos([str(demo_media["photo"])]), ["photo"])
    res = Capture(rt, Source(str(demo_media["video"])), "demo").run()
    q = rt.bus.queue("detect")
    detected = [
        r.seq for i in q.job_ids for r in FrameBatch.from_dict(q.fetch_job(i).args[0]).records
    ]
    assert detected == list(range(0, 30, 3))  # detection runs on 10 frames (in batches)
    run_all(rt)
    assert rt.bus.stream_counts("demo", res.session)["processed"] == 30
    (ev,) = store.events()
    assert ev["person"] == DEMO_NAME and ev["ended"]
    # confirmed on its 2nd detection (frame 3); predicted boxes count on skipped frames
    assert ev["n_frames"] >= 27


@pytest.mark.slow
def test_skipped_frames_report_only_tracks_seen_in_the_latest_detection(rt, tmp_path):
    rt.config.detector.every_n_frames = 3
    rt.config.tracker.reid_window = 0  # keep the two sides of the cut apart
    res = Capture(rt, Source(str(make_cut_video(tmp_path / "cut.mp4"))), "cam").run()
    run_all(rt)
    assert rt.bus.stream_counts("cam", res.session)["processed"] == 30
    first, second = EventStore(rt.config.store_url).events()
    # seen by detection on frames 0-9, predicted on 10-11; gone when detection ran at 12,
    # so frames 13-14 carry no predicted face
    assert (first["first_frame"], first["last_frame"]) == (0, 11)
    assert second["first_frame"] == 15 and second["last_frame"] == 29


@pytest.mark.slow
def test_one_stranger_on_two_cameras_becomes_one_unknown(rt, demo_media, tmp_path):
    Capture(rt, Source(str(demo_media["video"])), "door").run()
    Capture(rt, Source(str(make_cut_video(tmp_path / "cut.mp4"))), "hall").run()
    run_all(rt)
    evs = EventStore(rt.config.store_url).events()
    assert {e["stream"] for e in evs} == {"door", "hall"}
    assert all(e["person"] is None for e in evs)
    (unknown,) = {e["unknown_id"] for e in evs}
    assert unknown is not None and unknown.startswith("unknown-")


def test_a_shot_cut_ends_every_track(rt):
    """After a cut, a face at the same place is someone else as far as motion knows."""
    bus = rt.bus
    bus.register_stream("cam", "s", {"source": "x", "live": False})
    for seq in range(8):
        rec = FrameRecord(stream="cam", session="s", seq=seq, ts=1.0 + seq, cut=seq == 4)
        rec.faces = [Face(box=(100 + seq, 50, 60, 60), score=0.9)]
        bus.buffer_put(rec)
    base.get_stage("track").handle({"stream": "cam", "session": "s"})
    burst(rt, "sink")
    before, after = EventStore(rt.config.store_url).events()
    assert (before["first_frame"], before["last_frame"], before["ended"]) == (0, 3, True)
    assert after["track_id"] != before["track_id"] and after["first_frame"] == 4


def test_encodings_of_a_merged_track_resend_the_merge(rt):
    """A merge whose sink message was lost (the worker died after saving the tracker state)
    is completed by the next encodings of the merged track."""
    from pipeline.tracking.kalman import KalmanTrack
    from pipeline.tracking.state import TrackerStates
    from pipeline.tracking.stream import StreamState

    states = TrackerStates(rt.bus, rt.config.tracker)
    tracker = states.new_tracker()
    tracker.tracks.append(
        KalmanTrack(id=1, box=(0, 0, 40, 40), first_seq=0, last_seq=9, confirmed=True,
                    mean=[20.0, 20.0, 40.0, 40.0, 0, 0, 0, 0], cov=[0.0] * 64)
    )  # fmt: skip
    tracker.aliases = [[2, 1]]
    states.save("cam", "s", StreamState(tracker, next_seq=10))
    store = EventStore(rt.config.store_url)
    for tid in (1, 2):  # both events exist: the merge never reached the sink
        store.observe([FrameRecord(stream="cam", session="s", seq=tid, ts=1.0,
                                   faces=[Face(box=(0, 0, 40, 40), track_id=tid)])])  # fmt: skip
    face = Face(box=(0, 0, 40, 40), track_id=2, encoding=[0.1] * 128, quality=0.5)
    rt.bus.send_encodings(Encodings("cam", "s", 9, [face]))
    burst(rt, "track")
    (msg,) = [sink_message_from_dict(p) for p in rt.bus.peek("sink")]
    assert msg == Merge("cam", "s", 2, 1)
    assert rt.metrics.total("facepipe_tracks_merged_total") == 0  # not a new merge
    burst(rt, "sink")
    assert [e["track_id"] for e in store.events()] == [1]


@pytest.mark.slow
def test_recognize_sends_encodings_and_never_touches_the_tracker_state(rt, demo_media):
    """One writer: the recognize stage's only way to the tracker is an Encodings message.
    Any write (or lock) of a tracker key while it runs fails this test."""
    from workers.recognize import RecognizeStage

    res = Capture(rt, Source(str(demo_media["video"])), "demo").run()
    for stage in ("detect", "track"):
        burst(rt, stage)
    bus = rt.bus
    state_before = bus.load_tracker_state("demo", res.session)
    assert state_before is not None and bus.depth("recognize") >= 1
    bus.conn.config_set("notify-keyspace-events", "KA")
    events = bus.conn.pubsub()
    events.psubscribe(f"__keyspace@*__:{bus.key('tracker')}*")  # state and lock keys
    events.get_message(timeout=1.0)  # the subscription's confirmation
    stage = RecognizeStage(rt)
    q = bus.queue("recognize")
    jobs = [q.fetch_job(i) for i in q.job_ids]
    q.empty()
    for job in jobs:
        stage.handle(job.args[0])
    touched = []
    while (m := events.get_message(timeout=0.2)) is not None:
        touched.append((m["channel"], m["data"]))
    events.close()
    bus.conn.config_set("notify-keyspace-events", "")
    assert touched == []
    assert bus.load_tracker_state("demo", res.session) == state_before
    sent = bus.take_encodings("demo", res.session)
    # one message per job (the samples of one track hold), each sample's faces in order
    assert len(sent) == len(jobs)
    batches = [FrameBatch.from_dict(job.args[0]).records for job in jobs]
    assert sum(len(b) for b in batches) >= 2
    assert [m.seq for m in sent] == [b[0].seq for b in batches]
    assert [len(m.faces) for m in sent] == [sum(len(r.faces) for r in b) for b in batches]
    assert all(
        f.track_id == 1 and len(f.encoding) == 128 and f.quality for m in sent for f in m.faces
    )
    # each send pokes the track stage; one waiting job of the stream takes them all
    assert bus.depth("track") == 1 and bus.track_pending("demo", res.session)


def test_samples_are_the_best_face_of_each_window(rt):
    """The first sample at confirmation, then the best face (by detection quality) of each
    window of sampling.every_n_frames frames; a track's pending best face is sent when the
    track ends."""
    rt.config.sampling.every_n_frames = 5
    bus = rt.bus
    bus.register_stream("cam", "s", {"source": "x", "live": False})
    eyes_nose = [(120.0, 70.0), (140.0, 70.0), (130.0, 80.0)]
    for seq in range(14):
        rec = FrameRecord(stream="cam", session="s", seq=seq, ts=1.0 + seq, key=f"k{seq}",
                          last=seq == 13)  # fmt: skip
        score = 0.99 if seq == 4 else 0.5
        face = Face(box=(100, 50, 60, 60), score=score, landmarks=eyes_nose)
        if seq == 9:  # a turned head: nose under one eye
            face.score, face.landmarks = 0.99, [(120.0, 70.0), (140.0, 70.0), (121.0, 80.0)]
        rec.faces = [face]
        bus.buffer_put(rec)
    base.get_stage("track").handle({"stream": "cam", "session": "s"})
    q = bus.queue("recognize")
    (job,) = [q.fetch_job(i) for i in q.job_ids]  # one hold: its samples in one job
    sampled = FrameBatch.from_dict(job.args[0]).records
    # confirmed at 1 (min_hits 2); best of 2-6 is the confident face at 4; 7-11 are
    # equal but for the turned head at 9 (not chosen); 12-13 pending when the track ends
    assert [r.seq for r in sampled] == [1, 4, 7, 12]
    assert all(r.key == f"k{r.seq}" and r.faces[0].track_id == 1 for r in sampled)


def test_a_backlog_is_worked_off_in_batches_by_one_job(rt, monkeypatch):
    import workers.track

    monkeypatch.setattr(workers.track, "MAX_FRAMES_PER_HOLD", 4)
    bus = rt.bus
    bus.register_stream("cam", "s", {"source": "x", "live": False})
    for seq in range(10):
        rec = FrameRecord(stream="cam", session="s", seq=seq, ts=1.0, last=seq == 9)
        bus.buffer_put(rec)
    base.get_stage("track").handle({"stream": "cam", "session": "s"})
    assert bus.depth("sink") == 3  # 4 + 4 + 2 frames, one lock hold each
    burst(rt, "sink")
    assert bus.stream_counts("cam", "s")["processed"] == 10


def test_a_track_worker_that_dies_mid_hold_loses_no_frame(rt, monkeypatch):
    """A hold that never ends (its worker died after consuming some frames: nothing of
    its end transaction was sent) leaves the frames in the buffer and the state as they
    were; the next hold consumes every frame, each once: once the lock expires or, if the
    lock names a worker, as soon as that worker's heartbeat is gone."""
    import time

    import workers.track
    from pipeline.tracking.stream import StreamTracker

    monkeypatch.setattr(workers.track, "LOCK_S", 0.3)
    bus = rt.bus
    bus.register_stream("cam", "s", {"source": "x", "live": False})
    bus.count_frame("cam", "s", "captured", 6)
    bus.set_end("cam", "s", 5)
    for seq in range(6):
        bus.buffer_put(FrameRecord(stream="cam", session="s", seq=seq, ts=1.0 + seq))
    step, seen = StreamTracker.step, []

    def dies_at_the_fourth_frame(self, rec):
        if len(seen) == 3:
            raise SystemExit("killed")  # the process ends here, mid-hold
        seen.append(rec.seq)
        return step(self, rec)

    monkeypatch.setattr(StreamTracker, "step", dies_at_the_fourth_frame)
    track = base.get_stage("track")
    with pytest.raises(SystemExit):
        track.handle({"stream": "cam", "session": "s"})
    assert seen == [0, 1, 2]
    assert bus.buffer_seqs("cam", "s") == [0, 1, 2, 3, 4, 5]  # nothing consumed for good
    assert bus.load_tracker_state("cam", "s") is None and bus.depth("sink") == 0
    track.handle({"stream": "cam", "session": "s"})  # the lock is still the dead hold's
    assert bus.buffer_seqs("cam", "s") == [0, 1, 2, 3, 4, 5]

    monkeypatch.setattr(StreamTracker, "step", step)
    time.sleep(0.4)  # the dead hold's lock expires
    track.handle({"stream": "cam", "session": "s"})
    assert bus.buffer_len("cam", "s") == 0
    assert bus.load_tracker_state("cam", "s")["next_seq"] == 6
    burst(rt, "sink")
    c = bus.stream_counts("cam", "s")
    assert c["processed"] == 6 and not any(k.startswith("dropped") for k in c), c
    assert bus.stream_done("cam", "s")

    # a worker that beats: its dead hold's lock is taken over without waiting for LOCK_S
    monkeypatch.setattr(workers.track, "LOCK_S", 30.0)
    bus.register_stream("cam", "s2", {"source": "x", "live": False})
    for seq in range(6):
        bus.buffer_put(FrameRecord(stream="cam", session="s2", seq=seq, ts=1.0 + seq))
    monkeypatch.setattr(base, "_beating", "track-dying")
    bus.beat("track-dying", 30)
    seen.clear()
    monkeypatch.setattr(StreamTracker, "step", dies_at_the_fourth_frame)
    with pytest.raises(SystemExit):
        track.handle({"stream": "cam", "session": "s2"})
    monkeypatch.setattr(StreamTracker, "step", step)
    monkeypatch.setattr(base, "_beating", "track-next")
    track.handle({"stream": "cam", "session": "s2"})  # the dying worker still beats
    assert bus.buffer_len("cam", "s2") == 6
    bus.forget("track-dying")  # its heartbeat is gone
    track.handle({"stream": "cam", "session": "s2"})
    assert bus.buffer_len("cam", "s2") == 0
    assert bus.load_tracker_state("cam", "s2")["next_seq"] == 6
    assert rt.metrics.total("facepipe_tracker_takeovers_total", stream="cam") == 1


def test_a_finished_job_leaves_nothing_behind_and_is_counted(rt):
    from rq.registry import StartedJobRegistry

    bus = rt.bus
    bus.send("detect", FrameRecord(stream="cam", session="s", seq=0, ts=9e12, key="gone"))
    (job_id,) = bus.queue("detect").job_ids
    worker = stage_worker("detect", rt, name="detect-count")
    worker.work(burst=True, logging_level="WARNING")
    assert bus.buffer_take("cam", "s", 0).dropped == "expired"  # the job ran
    assert not bus.conn.exists(f"rq:job:{job_id}")  # result_ttl 0: deleted
    assert StartedJobRegistry(queue=bus.queue("detect")).count == 0
    assert not bus.conn.keys(f"rq:execution*{job_id}*")  # nor its execution record
    assert not bus.conn.keys(f"rq:job:{job_id}*")  # nor its dependents' keys
    assert bus.conn.llen(bus.queue("detect").intermediate_queue_key) == 0
    assert not bus.conn.smembers(f"rq:worker:{worker.name}:executions")
    worker.refresh()
    assert worker.get_state() == "idle"
    assert worker.successful_job_count == 1 and worker.failed_job_count == 0
    assert worker.total_working_time > 0


def test_a_batched_detect_job_puts_every_frame_once_with_one_poke(rt):
    bus = rt.bus
    rt.frames.put("frame-a", np.full((120, 160, 3), 90, np.uint8))
    rt.frames.put("frame-c", np.full((120, 160, 3), 90, np.uint8))
    recs = [
        FrameRecord(stream="cam", session="s", seq=0, ts=9e12, key="frame-a"),
        FrameRecord(stream="cam", session="s", seq=1, ts=9e12, detected=False),
        FrameRecord(stream="cam", session="s", seq=2, ts=9e12, key="frame-c"),
        FrameRecord(stream="cam", session="s", seq=3, ts=9e12, key="gone"),
    ]
    bus.send("detect", FrameBatch(recs))
    assert bus.depth("detect") == 1
    burst(rt, "detect")
    assert bus.buffer_seqs("cam", "s") == [0, 1, 2, 3]
    assert bus.depth("track") == 1  # one poke for the batch
    got = [bus.buffer_take("cam", "s", s) for s in range(4)]
    assert [r.dropped for r in got] == [None, None, None, "expired"]
    assert not got[1].detected  # passed through: the track stage predicts its faces
    sums = rt.metrics.histogram_sums("facepipe_stage_seconds")
    assert sums[(("stage", "detect"),)][1] == 1  # one job
    # the detector ran on the two frames whose images were there
    assert rt.metrics.total("facepipe_inference_cpu_seconds_total", stage="detect") > 0


def test_a_jobs_metrics_are_written_with_its_bookkeeping_or_after_its_failure(rt):
    """A stage job's metrics go to Redis with rq's bookkeeping of the finished job (one
    round trip); a job that fails still has them written."""
    bus = rt.bus
    bus.send("sink", Merge("cam", "s", 2, 1))  # no such tracks: a no-op merge
    bus.send("sink", Merge("../up", "s", 2, 1))  # a stream name the sink refuses
    worker = stage_worker("sink", rt, name="sink-metrics")
    worker.work(burst=True, logging_level="WARNING")
    worker.refresh()
    assert worker.successful_job_count == 1 and worker.failed_job_count == 3  # 2 retries
    sums = rt.metrics.histogram_sums("facepipe_stage_seconds")
    assert sums[(("stage", "sink"),)][1] == 4  # every run observed
    assert rt.metrics.total("facepipe_events_updated_total", stream="cam") == 1
