import json
import zlib

from prometheus_client import CollectorRegistry, generate_latest
from rq.job import Job
from rq.serializers import JSONSerializer

from pipeline.bus import Bus, connect
from pipeline.metrics import Metrics, RedisCollector
from pipeline.record import FrameRecord


def test_jobs_are_json_not_pickle(redis_url):
    bus = Bus(connect(redis_url), "t")
    rec = FrameRecord(stream="cam", seq=1, ts=2.0, session="s", key="t:frame:cam:s:1")
    bus.enqueue("detect", rec.to_dict())
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
    bus.enqueue("track", {"stream": "cam", "session": "s"})
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
