"""The one reconnect helper: capped exponential backoff with jitter, outages counted."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.bus import connect
from pipeline.redis_server import PrivateRedis
from pipeline.retry import RedisHealth, Stopped, backoff_delays


def test_backoff_doubles_up_to_the_cap_with_jitter():
    delay = backoff_delays(0.1, 2.0)
    for attempt, full in [(0, 0.1), (1, 0.2), (3, 0.8), (5, 2.0), (50, 2.0)]:
        got = [delay(attempt) for _ in range(200)]
        assert all(full / 2 <= d < full for d in got), (attempt, min(got), max(got))
        assert max(got) - min(got) > full / 10  # jittered, not lock-step


def test_a_call_waits_out_an_outage_and_counts_it_once():
    server = PrivateRedis().start()
    try:
        conn = connect(server.url)
        health = RedisHealth(conn, who="test", base_s=0.02, cap_s=0.1)
        seen: list[float] = []
        health.on_reconnect.append(seen.append)
        server.stop(keep_dir=True)
        results: list[object] = []
        t = threading.Thread(target=lambda: results.append(health.call(lambda: conn.set("k", 1))))
        t.start()
        time.sleep(0.5)
        assert not results and not health.up
        server.start()  # from this thread: the server's parent-death signal follows it
        t.join(10)
        assert results == [True] and health.up
        assert health.outages == 1 and len(seen) == 1 and seen[0] >= 0.4
    finally:
        server.stop()


def test_a_stop_ends_the_wait():
    server = PrivateRedis().start()
    conn = connect(server.url)
    server.stop()
    health = RedisHealth(conn, who="test", base_s=0.02, cap_s=0.1)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(Stopped):
        health.call(conn.ping, stop)
    assert not health.wait(timeout=0.2)
