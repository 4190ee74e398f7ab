import base64
import json
import time
import zlib

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rq.job import Job
from rq.serializers import JSONSerializer

from pipeline.bus import Bus, connect
from pipeline.metrics import Metrics, RedisCollector
from pipeline.record import Encodings, Face, FrameBatch, FrameRecord, Merge, Samples, TrackJob
from pipeline.stages import STAGES


def test_jobs_are_json_not_pickle(redis_url):
    bus = Bus(connect(redis_url), "t")
    rec = FrameRecord(stream="cam", seq=1, ts=2.0, session="s", key="t:frame:cam:s:1")
    bus.send("detect", rec)
    assert bus.depth("detect") == 1
    (job_id,) = bus.queue("detect").job_ids
    raw = bus.conn.hget(f"rq:job:{job_id}", "data")
    payload = json.loads(zlib.decompress(raw))  # rq compresses; the content is JSON
    assert payload[0] == "workers.detect.handle"
    assert FrameRecord.from_dict(payload[2][0]) == rec
    job = Job.fetch(job_id, connection=bus.conn, serializer=JSONSerializer)
    assert job.args[0]["seq"] == 1


def test_stream_accounting(redis_url):
    bus = Bus(connect(redis_url), "t")
    bus.register_stream("cam", "s", {"source": "x.mp4", "live": False})
    bus.count_frame("cam", "s", "captured", 5)
    bus.count_frame("cam", "s", "processed", 3)
    bus.count_frame("cam", "s", "dropped:stale", 2)
    assert not bus.stream_done("cam", "s")  # source not finished yet
    bus.set_end("cam", "s", 2)
    assert bus.stream_done("cam", "s")
    bus.count_frame("cam", "s", "captured", 1)
    assert not bus.stream_done("cam", "s")
    assert "cam/s" in bus.streams()


def test_metrics_are_shared_and_scraped(redis_url):
    bus = Bus(connect(redis_url), "t")
    m1, m2 = Metrics(bus), Metrics(Bus(connect(redis_url), "t"))  # two "processes"
    m1.inc("facepipe_frames_captured_total", {"stream": "cam"}, 3)
    m2.inc("facepipe_frames_captured_total", {"stream": "cam"}, 2)
    m1.inc("facepipe_recognitions_total", {"stream": "cam", "result": "known"})
    for v in (0.004, 0.02, 0.3):
        m2.observe("facepipe_stage_seconds", {"stage": "detect"}, v)
    bus.poke_track("cam", "s")
    assert m1.total("facepipe_frames_captured_total", stream="cam") == 5
    reg = CollectorRegistry()
    reg.register(RedisCollector(bus))
    text = generate_latest(reg).decode()
    assert 'facepipe_frames_captured_total{stream="cam"} 5.0' in text
    assert 'facepipe_recognitions_total{result="known",stream="cam"} 1.0' in text
    assert 'facepipe_stage_seconds_bucket{le="0.005",stage="detect"} 1.0' in text
    assert 'facepipe_stage_seconds_bucket{le="+Inf",stage="detect"} 3.0' in text
    assert 'facepipe_stage_seconds_count{stage="detect"} 3.0' in text
    assert 'facepipe_queue_depth{stage="track"} 1.0' in text
    assert 'facepipe_queue_depth{stage="detect"} 0.0' in text


def test_histogram_quantiles_interpolate_like_prometheus(redis_url):
    m = Metrics(Bus(connect(redis_url), "t"))
    for v in [0.03] * 50 + [0.2] * 50:  # buckets (0.025, 0.05] and (0.1, 0.25]
        m.observe("facepipe_capture_to_event_seconds", {"stream": "a"}, v)
    q = m.quantiles("facepipe_capture_to_event_seconds", (0.5, 0.95))
    assert abs(q[0.5] - 0.05) < 1e-9  # the top of the first filled bucket
    assert 0.1 < q[0.95] <= 0.25
    assert m.quantiles("facepipe_stage_seconds") == {}


def test_a_stage_takes_only_its_message_type(redis_url):
    bus = Bus(connect(redis_url), "t")
    rec = FrameRecord(stream="cam", seq=1, ts=2.0, session="s")
    with pytest.raises(TypeError, match="sink stage takes SinkMessage"):
        bus.send("sink", rec)
    with pytest.raises(ValueError, match="unknown stage 'detekt'"):
        bus.send("detekt", rec)
    bus.send("sink", Samples("identity", rec))
    # a stream stage's message is its payload alone: no function name to run
    ((_, fields),) = bus.conn.xrange(bus.entries_key("sink"))
    assert set(fields) == {b"p", b"n"} and fields[b"n"] == b"0"
    assert json.loads(fields[b"p"]) == {
        "type": "samples", "kind": "identity", "records": [rec.to_dict()]
    }  # fmt: skip
    bus.send("detect", rec)  # an rq stage's: the stage's job function, one payload
    (job_id,) = bus.queue("detect").job_ids
    job = Job.fetch(job_id, connection=bus.conn, serializer=JSONSerializer)
    assert job.func_name == "workers.detect.handle"
    assert job.args[0] == FrameBatch([rec]).to_dict()


def test_the_stage_table_names_real_job_functions_and_worker_classes():
    import importlib

    from workers.base import Stage

    assert tuple(STAGES) == ("detect", "track", "recognize", "attributes", "sink")
    for name, spec in STAGES.items():
        module, _, attr = spec.job.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr))
        module, _, attr = spec.worker.rpartition(".")
        worker = getattr(importlib.import_module(module), attr)
        assert issubclass(worker, Stage) and worker.spec() is spec
        assert spec.queue_name("p") == f"p.{name}"
    # `facepipe run` starts workers.<stage> processes of every stage in the table
    from pipeline.config import load_config

    counts = load_config(None, environ={}).workers.model_dump()
    assert all(isinstance(counts[name], int) and counts[name] >= 1 for name in STAGES)


def test_the_ordered_buffer(redis_url):
    bus = Bus(connect(redis_url), "t")
    for seq in (2, 0):  # detect workers finish out of order
        bus.buffer_put(FrameRecord(stream="cam", session="s", seq=seq, ts=1.0 + seq))
    assert bus.buffer_len("cam", "s") == 2 and bus.buffer_seqs("cam", "s") == [0, 2]
    assert bus.buffer_has("cam", "s", 0) and not bus.buffer_has("cam", "s", 1)
    assert bus.buffer_len("cam", "other-session") == 0
    assert bus.buffer_take("cam", "s", 1) is None
    rec = bus.buffer_take("cam", "s", 0)
    assert rec == FrameRecord(stream="cam", session="s", seq=0, ts=1.0)
    assert bus.buffer_take("cam", "s", 0) is None  # taken once
    assert bus.buffer_seqs("cam", "s") == [2]
    # each frame put pokes the stream's track stage: one job waits for both
    jobs = [TrackJob.from_dict(p) for p in bus.peek("track")]
    assert jobs == [TrackJob("cam", "s")] and bus.track_pending("cam", "s")


def test_a_run_of_consecutive_frames_is_taken_at_once(redis_url):
    bus = Bus(connect(redis_url), "run")
    bus.register_stream("cam", "s", {})
    for seq in (3, 5, 4, 7, 8):
        bus.buffer_put(FrameRecord(stream="cam", session="s", seq=seq, ts=1.0 + seq))
    got = bus.buffer_take_run("cam", "s", 4, most=10)
    assert [r.seq for r in got.frames] == [4, 5] and got.frames[0].ts == 5.0
    # 3 arrived after it was given up (older than the seq asked for): dropped; 7, 8 wait;
    # 4 and 5 stay until the hold that consumes them ends (Bus.track_end)
    assert got.waiting == 2 and got.end_seq is None
    assert bus.buffer_seqs("cam", "s") == [4, 5, 7, 8]
    assert bus.buffer_take_run("cam", "s", 6, most=10, below=4).frames == []  # 6 is missing
    assert bus.buffer_seqs("cam", "s") == [4, 5, 7, 8]  # (kept: older than 6, not than 4)
    bus.set_end("cam", "s", 8)
    got = bus.buffer_take_run("cam", "s", 7, most=1)  # at most one
    assert [r.seq for r in got.frames] == [7] and got.waiting == 1 and got.end_seq == 8
    assert bus.buffer_seqs("cam", "s") == [7, 8]
    assert bus.track_work_waiting("cam", "s", 8) and not bus.track_work_waiting("cam", "s", 9)


def test_a_hold_ends_with_its_writes_only_while_its_token_holds_the_lock(redis_url):
    bus = Bus(connect(redis_url), "end")
    bus.register_stream("cam", "s", {})
    for seq in range(4):
        bus.buffer_put(FrameRecord(stream="cam", session="s", seq=seq, ts=1.0))
    begun = bus.track_begin("cam", "s", "mine", 30.0, 2)
    assert [r.seq for r in begun.taken.frames] == [0, 1] and begun.state is None
    assert bus.track_begin("cam", "s", "other", 30.0, 2) is None  # held

    # the lock expired and another worker took it: the late hold writes nothing
    bus.conn.set(bus.key("tracker-lock", "cam", "s"), "other")
    pipe = bus.pipeline()
    bus.track_end("cam", "s", "mine", {"next_seq": 2}, pipe)
    assert pipe.execute()[-1][0] == 0  # not released
    assert bus.load_tracker_state("cam", "s") is None
    assert bus.buffer_seqs("cam", "s") == [0, 1, 2, 3]

    pipe = bus.pipeline()  # the holder's end: state, consumed frames out, released
    bus.track_end("cam", "s", "other", {"next_seq": 2}, pipe)
    assert pipe.execute()[-1] == [1, 1]  # frame 2 waits
    assert bus.load_tracker_state("cam", "s") == {"next_seq": 2}
    assert bus.buffer_seqs("cam", "s") == [2, 3]
    assert not bus.conn.exists(bus.key("tracker-lock", "cam", "s"))


def test_a_dead_workers_tracker_lock_is_taken_over_a_live_ones_is_not(redis_url):
    bus = Bus(connect(redis_url), "takeover")
    lock = bus.key("tracker-lock", "cam", "s")
    bus.buffer_put(FrameRecord(stream="cam", session="s", seq=0, ts=1.0))
    bus.beat("track-alive", 30)
    for holder in ("track-alive|abc", "plain-token"):  # alive, or names no worker
        bus.conn.set(lock, holder, px=30_000)
        assert bus.track_begin("cam", "s", "track-b|xyz", 30.0, 10) is None
        assert bus.conn.get(lock).decode() == holder
    bus.conn.set(lock, "track-dead|abc", px=30_000)  # its heartbeat is gone
    begun = bus.track_begin("cam", "s", "track-b|xyz", 30.0, 10)
    assert begun is not None and begun.took_over and [r.seq for r in begun.taken.frames] == [0]
    assert bus.conn.get(lock).decode() == "track-b|xyz"
    bus.conn.delete(lock)
    begun = bus.track_begin("cam", "s", "track-b|xyz", 30.0, 10)  # a free lock
    assert begun is not None and not begun.took_over


def test_a_holds_encodings_leave_the_list_only_when_it_ends(redis_url):
    bus = Bus(connect(redis_url), "enc-hold")
    face = Face(box=(1, 2, 3, 4), track_id=1, encoding=[0.5] * 4)
    bus.send_encodings(Encodings("cam", "s", 0, [face]))
    begun = bus.track_begin("cam", "s", "t1", 0.2, 10)
    assert [m.seq for m in begun.encodings] == [0]
    time.sleep(0.3)  # its worker died: the lock expires, the encodings are still there
    begun = bus.track_begin("cam", "s", "t2", 30.0, 10)
    assert [m.seq for m in begun.encodings] == [0]
    bus.send_encodings(Encodings("cam", "s", 5, [face]))  # arrives during the hold
    pipe = bus.pipeline()
    bus.track_end("cam", "s", "t2", {"next_seq": 0}, pipe, len(begun.encodings))
    assert pipe.execute()[-1] == [1, 1]  # released; the later encodings wait
    assert [m.seq for m in bus.take_encodings("cam", "s")] == [5]


def test_encodings_for_the_track_stage(redis_url):
    bus = Bus(connect(redis_url), "t")
    assert bus.take_encodings("cam", "s") == [] and not bus.encodings_waiting("cam", "s")
    msgs = [
        Encodings("cam", "s", seq, [Face(box=(1, 2, 3, 4), track_id=seq, encoding=[0.5] * 4)])
        for seq in (3, 5)
    ]
    for m in msgs:
        bus.send_encodings(m)
    assert bus.encodings_waiting("cam", "s") and not bus.encodings_waiting("cam", "x")
    assert 0 < bus.conn.ttl(bus.key("encodings", "cam", "s"))  # an idle stream's expire
    assert bus.take_encodings("cam", "s") == msgs  # in order, once
    assert bus.take_encodings("cam", "s") == [] and not bus.encodings_waiting("cam", "s")
    assert bus.depth("track") == 1  # both sends poked; one job of the stream waits


def test_tracker_state_and_lock_keys(redis_url):
    bus = Bus(connect(redis_url), "t")
    assert bus.load_tracker_state("cam", "s") is None
    bus.save_tracker_state("cam", "s", {"next_seq": 4})
    assert bus.load_tracker_state("cam", "s") == {"next_seq": 4}
    assert bus.conn.ttl(bus.key("tracker", "cam", "s")) > 0
    lock = bus.tracker_lock("cam", "s", 5.0)
    assert lock.name == "t:tracker-lock:cam:s" and lock.acquire(blocking=False)
    assert not bus.tracker_lock("cam", "s", 5.0).acquire(blocking=False)
    lock.release()


def test_sink_messages_travel_as_tagged_json(redis_url):
    bus = Bus(connect(redis_url), "t")
    bus.send("sink", Merge("cam", "s", 2, 1))
    ((_, fields),) = bus.conn.xrange(bus.entries_key("sink"))
    assert json.loads(fields[b"p"]) == {
        "type": "merge", "stream": "cam", "session": "s", "from_id": 2, "into_id": 1,
    }  # fmt: skip


def test_frames_are_accounted_once_by_seq(redis_url):
    bus = Bus(connect(redis_url), "t")
    bus.register_stream("cam", "s", {})
    assert bus.account_frames("cam", "s", {0: "processed", 1: "dropped:lost"}) == {0, 1}
    # a retried batch: frames 0 and 1 again, 2 new
    assert bus.account_frames("cam", "s", {0: "processed", 1: "dropped:lost", 2: "processed"}) == {
        2
    }
    c = bus.stream_counts("cam", "s")
    assert c["processed"] == 2 and c["dropped:lost"] == 1


def test_every_per_session_key_expires(redis_url):
    bus = Bus(connect(redis_url), "t", session_ttl_s=120)
    bus.register_stream("cam", "s", {})
    bus.count_frame("cam", "s", "captured", 3)
    bus.set_end("cam", "s", 2)
    bus.buffer_put(FrameRecord(stream="cam", session="s", seq=0, ts=0.0))
    bus.send_encodings(Encodings("cam", "s", 0, []))
    bus.save_tracker_state("cam", "s", {"x": 1})
    bus.account_frames("cam", "s", {0: "processed"})
    session_keys = [k for k in bus.conn.keys("t:*") if b"cam" in k and b"streams" not in k]
    # stream, detected, encodings, tracker, accounted, track-pending
    assert len(session_keys) == 6, session_keys
    for key in session_keys:
        assert 0 < bus.conn.ttl(key) <= 120, key


def test_dead_letters_keep_the_entry_and_the_reason(redis_url):
    bus = Bus(connect(redis_url), "t")
    bus.dead_letter("sink", b"\x00\xff{{{", "undecodable job id")
    (d,) = bus.dead_letters("sink")
    assert d["reason"] == "undecodable job id" and d["size"] == 5
    assert base64.b64decode(d["entry"]) == b"\x00\xff{{{"
