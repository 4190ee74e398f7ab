"""The bus keeps Redis bounded: the session registry is pruned and a session that runs
for months keeps only recent frame-accounting bitmaps (a real redis-server)."""

import time

from pipeline.bus import ACCOUNT_CHUNK, Bus, connect


def test_finished_sessions_leave_the_registry(redis_url):
    bus = Bus(connect(redis_url), "t", session_ttl_s=1)
    bus.register_stream("cam", "old", {"source": "a.mp4"})
    bus.register_stream("door", "old", {"source": "b.mp4"})
    time.sleep(1.3)  # their counts expire: the sessions are finished
    bus.register_stream("cam", "new", {"source": "rtsp://cam"})
    assert set(bus.streams()) == {"cam/old", "door/old", "cam/new"}  # the registry alone stays

    done = bus.prune_sessions()
    assert sorted(done.pruned) == ["cam/old", "door/old"]
    assert done.live_streams == {"cam"}
    assert set(bus.streams()) == {"cam/new"}
    assert bus.stream_exists("cam", "new")
    assert bus.prune_sessions().pruned == []  # nothing left to do; idempotent


def test_a_session_being_counted_is_never_pruned(redis_url):
    bus = Bus(connect(redis_url), "t", session_ttl_s=2)
    bus.register_stream("cam", "live", {})
    for _ in range(3):  # every write renews the session's counts
        time.sleep(1.0)
        bus.count_frame("cam", "live", "captured")
        assert bus.prune_sessions().pruned == []
    assert set(bus.streams()) == {"cam/live"}


def test_frame_accounting_bitmaps_are_chunked_so_old_ones_expire(redis_url):
    bus = Bus(connect(redis_url), "t", session_ttl_s=1)
    bus.register_stream("cam", "s", {})
    assert bus.account_frames("cam", "s", {0: "processed", 1: "dropped:stale"}) == {0, 1}
    time.sleep(1.3)
    # months later in the same session: frames far beyond the first chunk
    late = 5 * ACCOUNT_CHUNK + 7
    edge = {late - 8: "processed", late: "processed"}  # two chunks in one batch
    bus.register_stream("cam", "s", {})  # (its counts expired with the sleep)
    assert bus.account_frames("cam", "s", edge) == set(edge)
    assert bus.account_frames("cam", "s", {**edge, late + 1: "processed"}) == {late + 1}
    keys = sorted(k.decode() for k in bus.conn.keys("t:accounted:*"))
    # the first chunk expired although the session goes on; each chunk is at most
    # ACCOUNT_CHUNK bits, not one bitmap as long as the session (5 M bits = 640 kB)
    assert keys == ["t:accounted:cam:s:4", "t:accounted:cam:s:5"]
    for key in keys:
        assert bus.conn.strlen(key) <= ACCOUNT_CHUNK // 8
        assert 0 < bus.conn.ttl(key) <= 1
    assert bus.stream_counts("cam", "s")["processed"] == 3
