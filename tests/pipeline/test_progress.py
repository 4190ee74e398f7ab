"""The live status: read from Redis and the store, a line per stream or a table."""

from __future__ import annotations

import io
import time

from pipeline.bus import Bus, connect
from pipeline.progress import Progress, StreamStatus
from pipeline.record import FrameRecord


def test_status_lines_follow_the_counts(redis_url):
    bus = Bus(connect(redis_url), "p")
    bus.register_stream("door", "s1", {"source": "x", "live": True})
    bus.count_frame("door", "s1", "captured", 40)
    bus.count_frame("door", "s1", "processed", 30)
    bus.count_frame("door", "s1", "dropped:stale", 4)
    bus.send("detect", FrameRecord(stream="door", seq=0, ts=0.0))
    out = io.StringIO()
    progress = Progress(bus, lambda: [("door", "s1")], None, interval_s=60, tty=False, out=out)
    assert progress.update() is None  # not due yet
    (row,) = progress.update(force=True)
    assert (row.captured, row.processed, row.dropped, row.queue) == (40, 30, {"stale": 4}, 1)
    assert row.people is None  # no store given: not shown
    assert row.fps > 30  # the first rate is since the start: 30 frames in a moment
    assert out.getvalue() == (
        f"door: 40 captured, 30 processed ({row.fps:.1f}/s), 4 dropped {{'stale': 4}}, queue 1\n"
    )
    time.sleep(0.2)
    bus.count_frame("door", "s1", "processed", 10)
    (row,) = progress.update(force=True)
    assert 10 / 1.0 < row.fps < 10 / 0.15  # 10 frames in ~0.2 s
    # a live camera under load: how many of its processed frames were detected
    bus.count_frame("door", "s1", "detected", 10)
    bus.count_frame("door", "s1", "undetected:load", 30)
    (row,) = progress.update(force=True)
    assert row.detected == 0.25 and "/s, 25 % detected), 4 dropped" in out.getvalue()


def test_people_of_this_run_come_from_the_store(redis_url, tmp_path):
    from pipeline.store import EventStore

    url = f"sqlite:///{tmp_path / 'events.db'}"
    store = EventStore(url)
    bus = Bus(connect(redis_url), "p2")
    progress = Progress(bus, lambda: [("door", "s1")], url, interval_s=60, tty=False,
                        out=io.StringIO())  # fmt: skip
    import sqlalchemy as sa

    from pipeline.record import Face
    from pipeline.store import events

    def observe(track: int, person: str | None, session: str) -> None:
        rec = FrameRecord(stream="door", seq=track, ts=time.time(), session=session,
                          faces=[Face(box=(0, 0, 10, 10), track_id=track)])  # fmt: skip
        store.observe([rec])
        with store.engine.begin() as conn:  # as the sink's fusion names a track
            conn.execute(sa.update(events).where(events.c.track_uid == rec.track_uid(track))
                         .values(person=person))  # fmt: skip

    observe(1, "ada", "s1")
    observe(2, None, "s1")
    observe(3, None, "s1")
    observe(4, "bob", "other-session")  # not this run's
    (row,) = progress.update(force=True)
    assert row.people == {"ada": 1, "unknown": 2}
    assert row.line().endswith("people: ada, unknown x2")


def test_a_terminal_gets_a_table(redis_url):
    bus = Bus(connect(redis_url), "p3")
    bus.count_frame("yard", "s", "captured", 7)
    out = io.StringIO()
    progress = Progress(bus, lambda: [("yard", "s")], None, tty=True, out=out).start()
    time.sleep(0.6)
    progress.close()
    text = out.getvalue()
    assert "stream" in text and "captured" in text and "yard" in text and "7" in text


def test_line_without_people_store_and_with_people():
    s = StreamStatus("cam", 3, 2, {}, 1.0, 0, None)
    assert s.line() == "cam: 3 captured, 2 processed (1.0/s), 0 dropped, queue 0"
    s.people = {}
    assert s.line().endswith("people: none yet")
