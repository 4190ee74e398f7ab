"""The stream stages' messages (``transport: stream``): entries of a Redis stream read by
a consumer group, each a worker's until done, sent again when its run failed or its worker
died, filed as failed after three runs (a real redis-server)."""

import json

import pytest

from pipeline.bus import STREAM_ATTEMPTS, STREAM_GROUP, Bus, connect
from pipeline.record import Merge, TrackJob
from pipeline.stages import STAGES


def merge(n: int) -> Merge:
    return Merge("cam", "s", n + 1, n)


@pytest.fixture()
def bus(redis_url: str) -> Bus:
    return Bus(connect(redis_url), "e")


def test_the_light_stages_are_streamed_and_the_model_stages_are_rq_jobs():
    assert {n: s.transport for n, s in STAGES.items()} == {
        "detect": "rq", "track": "stream", "recognize": "rq", "attributes": "rq", "sink": "stream",
    }  # fmt: skip


def test_a_message_is_one_workers_until_done(bus: Bus):
    for n in range(3):
        bus.send("sink", merge(n))
    assert (bus.depth("sink"), bus.busy("sink")) == (3, 0)
    assert [Merge.from_dict(p).into_id for p in bus.peek("sink")] == [0, 1, 2]

    bus.beat("w1", 10)
    a = bus.read_entry("sink", "w1", None)
    b = bus.read_entry("sink", "w2", None)  # w2 has no heartbeat: as if dead
    assert a is not None and b is not None and a.id != b.id and a.attempts == 0
    assert json.loads(a.payload) == merge(0).to_dict()
    assert json.loads(b.payload) == merge(1).to_dict()
    # taken, not done: running while its worker's heartbeat lives, else waiting (the
    # watchdog sends it again)
    assert (bus.depth("sink"), bus.busy("sink")) == (2, 1)
    bus.beat("w2", 10)
    assert (bus.depth("sink"), bus.busy("sink")) == (1, 2)
    # the worker's own unfinished message is read again first (after an outage)
    again = bus.read_entry("sink", "w1", None, own=True)
    assert again is not None and again.id == a.id
    assert bus.read_entry("sink", "w3", None, own=True) is None  # w3 has none

    bus.entry_done("sink", a.id)
    assert bus.read_entry("sink", "w1", None, own=True) is None
    assert bus.conn.xlen(bus.entries_key("sink")) == 2  # done: deleted, not kept
    assert [Merge.from_dict(p).into_id for p in bus.peek("sink")] == [1, 2]


def test_a_failed_run_is_sent_again_then_filed_as_failed(bus: Bus):
    bus.send("sink", merge(7))
    for attempt in range(STREAM_ATTEMPTS):
        entry = bus.read_entry("sink", "w", None)
        assert entry is not None and entry.attempts == attempt
        assert json.loads(entry.payload) == merge(7).to_dict()
        got = bus.entry_again("sink", entry.id, f"boom {attempt}")
        assert got == (1 if attempt < STREAM_ATTEMPTS - 1 else 2)
    assert bus.read_entry("sink", "w", None) is None and bus.depth("sink") == 0
    (failed,) = bus.failed_entries("sink")
    assert failed["reason"] == "boom 2" and failed["attempts"] == STREAM_ATTEMPTS
    assert json.loads(failed["payload"]) == merge(7).to_dict() and bus.failed("sink") == 1
    # nothing pending is left in the group
    assert bus.conn.xpending(bus.entries_key("sink"), STREAM_GROUP)["pending"] == 0
    # an entry done or recovered meanwhile is left alone
    assert bus.entry_again("sink", "1-1", "late") == 0 and bus.failed("sink") == 1


def test_a_message_that_must_not_run_is_filed_at_once(bus: Bus):
    bus.send("sink", merge(1))
    entry = bus.read_entry("sink", "w", None)
    assert entry is not None
    assert bus.entry_again("sink", entry.id, "refused (payload)", attempts=0) == 2
    assert bus.failed_entries("sink")[0]["attempts"] == 1 and bus.depth("sink") == 0


def test_messages_taken_long_ago_are_listed_with_their_worker(bus: Bus):
    bus.send("track", TrackJob("cam", "s"))
    entry = bus.read_entry("track", "gone-worker", None)
    assert entry is not None
    assert bus.entries_pending("track", 60) == []  # taken just now
    (p,) = bus.entries_pending("track", 0)
    assert p["message_id"].decode() == entry.id and p["consumer"] == b"gone-worker"
    assert bus.entries_pending("sink", 0) == []  # no group yet: nothing


def test_a_lost_group_is_made_again_and_reads_what_was_sent(bus: Bus):
    """Redis restarted without persistence (or the keys were deleted): messages sent
    before any worker read (no group yet) are read from the first."""
    bus.send("sink", merge(0))
    first = bus.read_entry("sink", "w", None)  # the group exists from here on
    assert first is not None
    bus.conn.delete(bus.entries_key("sink"))  # the restart: stream and group gone
    bus.send("sink", merge(1))  # sent before any worker reads again
    bus.send("sink", merge(2))
    got = [bus.read_entry("sink", "w", None) for _ in range(3)]
    assert [e and Merge.from_dict(json.loads(e.payload)).into_id for e in got] == [1, 2, None]
    bus.entries_group("sink")  # exists: no error
    bus.beat("w", 10)
    assert bus.entry_counts("sink") == (0, 2)  # both taken, neither done


def test_counts_of_a_stage_nobody_used_are_zero(bus: Bus):
    assert bus.entry_counts("track") == (0, 0)
    assert (bus.depth("track"), bus.busy("track"), bus.failed("track")) == (0, 0, 0)
    assert bus.peek("track") == []


def test_a_read_waiting_while_the_stream_is_deleted_goes_on(bus: Bus):
    """FLUSHALL (or a key deleted) under a worker blocked in its read: Redis unblocks it
    with an error; the read makes the group again and waits on, for the next message."""
    import threading
    import time

    assert bus.read_entry("sink", "w", None) is None  # the group exists
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(bus.read_entry("sink", "w", 5000)))
    reader.start()
    time.sleep(0.3)  # blocked in XREADGROUP
    bus.conn.delete(bus.entries_key("sink"))
    time.sleep(0.3)
    bus.send("sink", merge(4))
    reader.join(10)
    assert not reader.is_alive() and len(got) == 1
    entry = got[0]
    assert entry is not None and json.loads(entry.payload) == merge(4).to_dict()  # type: ignore[attr-defined]


def test_dead_workers_that_hold_nothing_leave_the_group(bus: Bus):
    """Workers are named per process: the group forgets those whose heartbeat is gone
    once they hold no message, so it does not list every worker that ever ran."""
    for n in range(3):
        bus.send("sink", merge(n))
    bus.beat("alive", 10)
    done = bus.read_entry("sink", "gone", None)  # read, done, its process exited
    assert done is not None
    bus.entry_done("sink", done.id)
    assert bus.read_entry("sink", "alive", None) is not None  # holds one, beats
    assert bus.read_entry("sink", "dead-holding", None) is not None  # the watchdog's case

    def consumers() -> set[str]:
        return {
            c["name"].decode()
            for c in bus.conn.xinfo_consumers(bus.entries_key("sink"), STREAM_GROUP)
        }

    assert consumers() == {"gone", "alive", "dead-holding"}
    assert bus.prune_consumers("sink", 60) == 0  # not idle long enough yet
    assert bus.prune_consumers("sink", 0) == 1
    assert consumers() == {"alive", "dead-holding"}  # its message must be sent again first
    assert bus.entry_counts("sink") == (1, 1)
    assert bus.prune_consumers("track", 0) == 0  # no stream, no group: nothing


def test_rq_jobs_of_an_older_facepipe_move_to_the_stream(bus: Bus):
    """Jobs a facepipe from before the stream transport left on the rq queue of a stream
    stage are moved onto its stream as its worker starts; anything else is set aside."""
    q = bus.queue("sink")
    q.enqueue("workers.sink.handle", merge(1).to_dict())
    q.enqueue("os.system", "touch /tmp/pwned")
    q.enqueue("workers.sink.handle", merge(2).to_dict())
    assert bus.adopt_rq_jobs("sink") == 2
    assert [Merge.from_dict(p).into_id for p in bus.peek("sink")] == [1, 2]
    assert q.count == 0 and not bus.conn.keys("rq:job:*")
    (dead,) = bus.dead_letters("sink")
    assert "not its job" in dead["reason"]
    assert bus.adopt_rq_jobs("sink") == 0 and bus.adopt_rq_jobs("detect") == 0
