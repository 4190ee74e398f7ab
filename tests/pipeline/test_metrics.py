"""The exporter's view: series a dashboard needs exist at 0, dead workers do not count."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, generate_latest
from rq import Worker

import pipeline
from pipeline.bus import Bus, connect
from pipeline.metrics import DROP_REASONS, Metrics, RedisCollector
from pipeline.stages import STAGE_NAMES


def scrape(bus: Bus) -> dict[str, float]:
    reg = CollectorRegistry()
    reg.register(RedisCollector(bus))
    text = generate_latest(reg).decode()
    return {m[0]: float(m[1]) for m in re.findall(r"^(\S+\{[^}]*\}|\S+) (\S+)$", text, re.M)}


def test_a_registered_stream_has_every_series_at_zero(redis_url):
    bus = Bus(connect(redis_url), "t0")
    before = scrape(bus)
    assert not any('stream="door"' in k for k in before)
    bus.register_stream("door", "s1", {"source": "rtsp://x", "live": True})
    got = scrape(bus)
    assert got['facepipe_frames_captured_total{stream="door"}'] == 0
    for reason in DROP_REASONS:
        assert got[f'facepipe_frames_dropped_total{{reason="{reason}",stream="door"}}'] == 0
    assert got['facepipe_recognitions_total{result="unknown",stream="door"}'] == 0
    assert got['facepipe_source_reconnects_total{stream="door"}'] == 0
    assert got['facepipe_source_down_seconds_total{stream="door"}'] == 0
    for stage in STAGE_NAMES:
        assert got[f'facepipe_jobs_refused_total{{reason="function",stage="{stage}"}}'] == 0
    # a real count replaces the zero; a reason nobody listed still shows
    m = Metrics(bus)
    m.inc("facepipe_frames_dropped_total", {"stream": "door", "reason": "stale"}, 3)
    m.inc("facepipe_frames_dropped_total", {"stream": "yard", "reason": "odd"}, 1)
    got = scrape(bus)
    assert got['facepipe_frames_dropped_total{reason="stale",stream="door"}'] == 3
    assert got['facepipe_frames_dropped_total{reason="odd",stream="yard"}'] == 1
    assert got['facepipe_frames_captured_total{stream="yard"}'] == 0  # known from a counter


def test_workers_count_only_while_their_heartbeat_is_fresh(redis_url):
    bus = Bus(connect(redis_url), "t1")
    queue = bus.queue("detect")
    worker = Worker([queue], connection=bus.conn, name="t1-detect-1")
    worker.register_birth()  # registered with rq, as a killed worker stays for minutes
    assert scrape(bus)['facepipe_workers{stage="detect"}'] == 0
    bus.beat(worker.name, 30)
    assert scrape(bus)['facepipe_workers{stage="detect"}'] == 1
    bus.forget(worker.name)  # the heartbeat lapses (or a clean stop withdraws it)
    assert scrape(bus)['facepipe_workers{stage="detect"}'] == 0
    worker.register_death()


def test_build_info(redis_url):
    got = scrape(Bus(connect(redis_url), "t2"))
    (key,) = [k for k in got if k.startswith("facepipe_build_info")]
    assert f'version="{pipeline.__version__}"' in key and got[key] == 1


def test_a_batch_writes_its_metrics_when_it_ends_and_only_this_threads(redis_url):
    import threading

    bus = Bus(connect(redis_url), prefix="batchtest")
    m, reader = Metrics(bus), Metrics(bus)
    with m.batch():
        m.inc("facepipe_frames_processed_total", {"stream": "a"}, 2)
        with m.batch():  # nested: joins the outer batch
            m.observe("facepipe_stage_seconds", {"stage": "sink"}, 0.02)
        # another thread (a worker's watchdog) writes at once, not into this batch
        t = threading.Thread(
            target=m.inc, args=("facepipe_jobs_recovered_total", {"stage": "track"})
        )
        t.start()
        t.join()
        assert reader.total("facepipe_jobs_recovered_total") == 1
        assert reader.total("facepipe_frames_processed_total") == 0
        assert reader.histogram_sums("facepipe_stage_seconds") == {}
    assert reader.total("facepipe_frames_processed_total", stream="a") == 2
    assert reader.histogram_sums("facepipe_stage_seconds") == {(("stage", "sink"),): (0.02, 1)}
    m.inc("facepipe_frames_processed_total", {"stream": "a"})  # no batch: written at once
    assert reader.total("facepipe_frames_processed_total", stream="a") == 3
