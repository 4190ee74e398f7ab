"""The sink keeps Redis bounded without losing a total: finished sessions leave the
registry, idle streams' metric series fold into stream="(retired)" (a real redis-server)."""

import threading
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from pipeline.config import ConfigError, load_config
from pipeline.metrics import RETIRED_STREAM, RedisCollector
from pipeline.runtime import Runtime
from workers.sink import prune_redis


def runtime(redis_url: str, **env: str) -> Runtime:
    environ = {"FACEPIPE__REDIS__PREFIX": "t", **env}
    return Runtime.from_config(load_config(None, environ=environ), redis_url)


def traffic(rt: Runtime, stream: str, frames: int) -> None:
    m = rt.metrics
    m.inc("facepipe_frames_captured_total", {"stream": stream}, frames)
    m.inc("facepipe_frames_processed_total", {"stream": stream}, frames - 1)
    m.inc("facepipe_frames_dropped_total", {"stream": stream, "reason": "stale"}, 1)
    for _ in range(frames):
        m.observe("facepipe_capture_to_event_seconds", {"stream": stream}, 0.2)
    m.inc("facepipe_jobs_recovered_total", {"stage": "sink"})  # no stream label: kept


def series(rt: Runtime) -> dict[tuple, float]:
    return {(n, labels): v for (n, labels), v in rt.metrics.counter_values().items()}


def test_idle_streams_metrics_fold_into_retired_and_totals_stay(redis_url, home):
    rt = runtime(redis_url, FACEPIPE__REDIS__STREAM_RETENTION_S="3600")
    bus = rt.bus
    for i in range(3):  # three one-off streams (say, one per video file) and a camera
        traffic(rt, f"file{i}", 10 + i)
    traffic(rt, "door", 100)
    bus.register_stream("door", "s1", {})
    bus.register_stream("file0", "s1", {})
    bus.conn.delete(bus.key("stream", "file0/s1"))  # its counts expired: finished
    totals = {
        name: rt.metrics.total(name)
        for name in ("facepipe_frames_captured_total", "facepipe_frames_processed_total")
    }
    captured_hist = rt.metrics.histogram_sums("facepipe_capture_to_event_seconds")
    fields_before = bus.conn.hlen(rt.metrics.counters_key) + bus.conn.hlen(rt.metrics.hist_key)

    t0 = time.time()
    first = prune_redis(rt, now=t0)
    assert first.sessions == ["file0/s1"] and first.retired_streams == []  # idle from now
    assert prune_redis(rt, now=t0 + 3599).retired_streams == []
    done = prune_redis(rt, now=t0 + 3600)
    assert done.retired_streams == ["file0", "file1", "file2"]  # door has a session

    values = series(rt)
    streams = {dict(labels).get("stream") for _, labels in values}
    assert streams == {"door", RETIRED_STREAM, None}
    retired = (("stream", RETIRED_STREAM),)
    assert values[("facepipe_frames_captured_total", retired)] == 10 + 11 + 12
    assert values[("facepipe_frames_dropped_total", (("reason", "stale"), *retired))] == 3
    assert values[("facepipe_jobs_recovered_total", (("stage", "sink"),))] == 4
    for name, total in totals.items():
        assert rt.metrics.total(name) == total
    hist = rt.metrics.histogram_sums("facepipe_capture_to_event_seconds")
    assert hist[retired][1] == 33 and abs(hist[retired][0] - 33 * 0.2) < 1e-6
    assert sum(c for _, c in hist.values()) == sum(c for _, c in captured_hist.values())
    fields_after = bus.conn.hlen(rt.metrics.counters_key) + bus.conn.hlen(rt.metrics.hist_key)
    assert fields_after < fields_before  # three streams' series became one

    # the scrape shows the retired series as an ordinary label value
    registry = CollectorRegistry()
    registry.register(RedisCollector(bus))
    text = generate_latest(registry).decode()
    assert 'facepipe_frames_captured_total{stream="(retired)"} 33.0' in text
    assert 'facepipe_capture_to_event_seconds_count{stream="(retired)"} 33.0' in text

    # a later stream retires into the same series: it only grows
    traffic(rt, "file3", 5)
    prune_redis(rt, now=t0 + 4000)
    assert prune_redis(rt, now=t0 + 7600).retired_streams == ["file3"]
    assert series(rt)[("facepipe_frames_captured_total", retired)] == 33 + 5


def test_a_stream_that_comes_back_is_not_retired(redis_url, home):
    rt = runtime(redis_url, FACEPIPE__REDIS__STREAM_RETENTION_S="60")
    traffic(rt, "cam", 5)
    t0 = time.time()
    prune_redis(rt, now=t0)  # idle: no session
    rt.bus.register_stream("cam", "s2", {})  # back before the retention ran out
    assert prune_redis(rt, now=t0 + 61).retired_streams == []
    rt.bus.conn.delete(rt.bus.key("stream", "cam/s2"))  # gone again: idle from now
    assert prune_redis(rt, now=t0 + 100).retired_streams == []
    assert prune_redis(rt, now=t0 + 161).retired_streams == ["cam"]


def test_null_retention_keeps_every_streams_series(redis_url, home):
    rt = runtime(redis_url, FACEPIPE__REDIS__STREAM_RETENTION_S="null")
    traffic(rt, "cam", 5)
    t0 = time.time()
    for dt in (0, 10**9):
        assert prune_redis(rt, now=t0 + dt).retired_streams == []
    assert rt.metrics.total("facepipe_frames_captured_total", stream="cam") == 5


def test_several_sinks_pruning_at_once_fold_each_count_once(redis_url, home):
    rt = runtime(redis_url, FACEPIPE__REDIS__STREAM_RETENTION_S="60")
    for i in range(20):
        traffic(rt, f"file{i}", 7)
    t0 = time.time()
    prune_redis(rt, now=t0)
    sinks = [runtime(redis_url, FACEPIPE__REDIS__STREAM_RETENTION_S="60") for _ in range(4)]
    threads = [threading.Thread(target=prune_redis, args=(s,), kwargs={"now": t0 + 61})
               for s in sinks]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    retired = (("stream", RETIRED_STREAM),)
    assert series(rt)[("facepipe_frames_captured_total", retired)] == 20 * 7
    assert rt.metrics.total("facepipe_frames_captured_total") == 20 * 7
    hist = rt.metrics.histogram_sums("facepipe_capture_to_event_seconds")
    assert set(hist) == {retired} and hist[retired][1] == 20 * 7


def test_the_sink_prunes_in_the_background_once_per_period_across_sinks(redis_url, home):
    from workers.sink import SinkStage

    rt = runtime(redis_url)
    rt.bus.register_stream("cam", "done", {})
    rt.bus.conn.delete(rt.bus.key("stream", "cam/done"))  # finished: its counts expired
    sink = SinkStage(rt)
    sink.warmup()  # what the worker does before its loop
    deadline = time.monotonic() + 10
    while rt.bus.streams() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rt.bus.streams() == {}
    # the pass holds the lock for most of a period, so a second sink skips it
    assert rt.bus.conn.pttl(rt.bus.key("prune-lock")) > 60_000
    rt.bus.register_stream("cam", "done2", {})
    rt.bus.conn.delete(rt.bus.key("stream", "cam/done2"))
    SinkStage(rt).warmup()
    time.sleep(0.5)
    assert set(rt.bus.streams()) == {"cam/done2"}  # left for the next period's pass


def test_the_retention_is_validated_and_named_in_the_error():
    assert load_config(None, environ={}).redis.stream_retention_s == 30 * 86400
    with pytest.raises(ConfigError, match=r"redis\.stream_retention_s"):
        load_config(None, environ={"FACEPIPE__REDIS__STREAM_RETENTION_S": "10"})
