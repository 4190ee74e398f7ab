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


def test_a_live_camera_s_detections_in_flight(redis_url):
    """Frames sent to detection are in flight until the detect stage writes their result;
    entries older than the frames detection would still take are trimmed."""
    from pipeline.record import FrameRecord

    bus = Bus(connect(redis_url), "t")
    now = time.time()

    def frame(seq: int, ts: float = now, **kw: object) -> FrameRecord:
        return FrameRecord(stream="cam", session="s", seq=seq, ts=ts, live=True, **kw)

    pipe = bus.pipeline()
    bus.detections_sent([frame(0, now - 100), frame(1)], since=now - 200, pipeline=pipe)
    pipe.execute()
    assert bus.detections_in_flight("cam", "s") == [0, 1]
    assert bus.detect_room("cam", "s", since=now - 10) == (0, 1)  # 0 is too old to count
    pipe = bus.pipeline()
    bus.detections_sent([frame(2)], since=now - 10, pipeline=pipe)  # trims 0
    pipe.execute()
    assert bus.detections_in_flight("cam", "s") == [1, 2]
    bus.buffer_put_many([frame(1), frame(3, detected=False)])  # a result; a skipped frame
    assert bus.detections_in_flight("cam", "s") == [2]


def test_frames_behind_a_detection_in_flight_do_not_poke_the_track_stage(redis_url):
    from pipeline.record import FrameRecord

    bus = Bus(connect(redis_url), "t")
    now = time.time()

    def frame(seq: int, detected: bool = True) -> FrameRecord:
        return FrameRecord(stream="cam", session="s", seq=seq, ts=now, live=True,
                           detected=detected)  # fmt: skip

    pipe = bus.pipeline()
    bus.detections_sent([frame(5)], since=now - 10, pipeline=pipe)
    pipe.execute()
    # no earlier frame in detection: the write pokes (the caller need not)
    assert bus.buffer_put_behind([frame(3, False), frame(4, False)]) is False
    assert bus.depth("track") == 1
    bus.track_begin("cam", "s", "token", 30.0, 100)  # the job starts: flag cleared
    bus.conn.delete(bus.key("tracker-lock", "cam", "s"))
    bus.conn.delete(bus.entries_key("track"))  # the job ran
    # behind the one in detection: its result will
    assert bus.buffer_put_behind([frame(6, False)]) is False
    assert bus.buffer_seqs("cam", "s") == [3, 4, 6] and bus.depth("track") == 0
    bus.buffer_put_many([frame(5)])  # the detect stage's result: the one poke
    assert bus.detections_in_flight("cam", "s") == [] and bus.depth("track") == 1
    assert bus.buffer_put_behind([frame(7, False)]) is False  # a job waits: no second
    assert bus.depth("track") == 1
