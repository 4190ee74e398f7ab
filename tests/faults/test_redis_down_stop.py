"""A wait for Redis that a stop or a deadline ends: with the server gone for good, no
wait of `facepipe run`'s stop path lasts past its bound (see test_sigterm.py for the
whole run)."""

from __future__ import annotations

import time

import pytest

from pipeline.bus import connect
from pipeline.capture import wait_accounted
from pipeline.config import load_config
from pipeline.retry import RedisHealth, Stopped
from pipeline.runtime import Runtime


def test_a_call_gives_up_at_its_deadline_while_redis_is_down(redis_proc):
    conn = connect(redis_proc.url)
    redis_proc.stop()
    health = RedisHealth(conn, who="test", base_s=0.02, cap_s=5.0)
    t0 = time.monotonic()
    with pytest.raises(Stopped):
        health.call(conn.ping, deadline=t0 + 0.5)
    assert 0.4 <= time.monotonic() - t0 < 2
    assert not health.up and health.down_s() > 0.4


def test_waiting_for_frames_ends_at_its_deadline_while_redis_is_down(redis_proc):
    rt = Runtime.from_config(load_config(None, environ={}), redis_proc.url)
    rt.bus.register_stream("cam", "s", {})
    rt.bus.count_frame("cam", "s", "captured", 5)  # never accounted for: the wait goes on
    redis_proc.stop()
    t0 = time.monotonic()
    waited = wait_accounted(rt, [("cam", "s")], deadline=t0 + 1.0)
    assert 0.9 <= time.monotonic() - t0 < 3
    assert not waited.done and waited.reason == "stopped" and waited.redis_down
    assert waited.by_stream == {}  # nothing could be read


def test_waiting_for_frames_ends_at_its_deadline_with_the_last_counts_read(redis_proc):
    rt = Runtime.from_config(load_config(None, environ={}), redis_proc.url)
    rt.bus.register_stream("cam", "s", {})
    rt.bus.count_frame("cam", "s", "captured", 5)
    rt.bus.count_frame("cam", "s", "processed", 2)
    t0 = time.monotonic()
    waited = wait_accounted(rt, [("cam", "s")], deadline=t0 + 0.5)  # Redis up: just late
    assert 0.4 <= time.monotonic() - t0 < 2
    assert not waited.done and waited.reason == "stopped" and not waited.redis_down
    assert waited.by_stream == {"cam/s": {"captured": 5, "processed": 2}}
