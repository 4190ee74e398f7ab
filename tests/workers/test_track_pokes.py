"""At most one track job of a stream waits in the queue (Bus.poke_track), and no frame or
encoding is ever left behind: real Redis, real track stage."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

from pipeline import bus as bus_mod
from pipeline.config import load_config
from pipeline.record import Encodings, Face, FrameRecord, TrackJob, sink_message_from_dict
from pipeline.runtime import Runtime
from workers import base
from workers.track import TrackStage


@pytest.fixture()
def rt(redis_url, home):
    cfg = load_config(None, environ={})
    cfg.tracker.gap_timeout_s = 1e6  # a frame late in this test is never given up
    rt = Runtime.from_config(cfg, redis_url)
    base.set_runtime(rt)
    yield rt
    base.set_runtime(rt)


def test_pokes_of_a_stream_coalesce_into_one_waiting_job(rt):
    bus = rt.bus
    for _ in range(5):
        bus.poke_track("cam", "s")
    bus.buffer_put(FrameRecord(stream="cam", session="s", seq=0, ts=1.0))
    bus.send_encodings(Encodings("cam", "s", 0, []))
    assert bus.depth("track") == 1 and bus.track_pending("cam", "s")
    bus.poke_track("cam", "other")  # another session: its own job
    bus.poke_track("cam2", "s")  # another stream: its own job
    assert bus.depth("track") == 3
    # the poke's message is the one the stage's send adds (the same entry on its stream)
    bus.send("track", TrackJob("cam", "s"))
    entries = bus.conn.xrange(bus.entries_key("track"))
    assert entries[0][1] == entries[-1][1] == {b"p": b'{"stream":"cam","session":"s"}', b"n": b"0"}
    assert bus.peek("track")[0] == {"stream": "cam", "session": "s"}
    assert not bus.queue("track").count  # not an rq job
    # a job that starts clears the flag before it reads anything: the next poke is a job
    bus.track_begin("cam", "s", "token", 30.0, 100)
    bus.poke_track("cam", "s")
    assert bus.depth("track") == 5


def test_a_lost_job_is_made_again_once_its_flag_expires(rt):
    bus = rt.bus
    bus.poke_track("cam", "s")
    bus.conn.delete(bus.entries_key("track"))  # the job is lost (deleted by hand)
    bus.poke_track("cam", "s")
    assert bus.depth("track") == 0  # the flag says one waits
    ttl_ms = bus.conn.pttl(bus.key("track-pending", "cam", "s"))
    assert 0 < ttl_ms <= bus_mod.POKE_TTL_S * 1000
    bus.conn.delete(bus.key("track-pending", "cam", "s"))  # as it expires
    bus.poke_track("cam", "s")
    assert bus.depth("track") == 1


def test_a_poke_in_a_transaction_happens_with_it(rt):
    bus = rt.bus
    pipe = bus.pipeline()
    bus.poke_track("cam", "s", pipeline=pipe)
    assert bus.depth("track") == 0 and not bus.track_pending("cam", "s")
    pipe.execute()
    assert bus.depth("track") == 1 and bus.track_pending("cam", "s")


def test_track_workers_racing_producers_miss_no_frame_and_no_encoding(rt):
    """Frames put out of order and encodings, with pokes coalesced, while two track
    workers take the stream's jobs: once the queue is empty and no worker runs, every
    frame went to the sink once, in order, and every encoding was applied."""
    bus = rt.bus
    n = 300
    bus.register_stream("cam", "s", {"source": "x", "live": True})
    produced = threading.Event()
    errors: list[BaseException] = []
    jobs_run = [0]

    def producer() -> None:
        rng = random.Random(7)
        seq = 0
        while seq < n:
            batch = list(range(seq, min(n, seq + rng.randint(1, 4))))
            rng.shuffle(batch)  # detect workers finish out of order
            for s in batch:
                bus.buffer_put_many([FrameRecord(stream="cam", session="s", seq=s, ts=1.0)])
                if rng.random() < 0.2:
                    face = Face(box=(0, 0, 40, 40), track_id=99, encoding=[0.1] * 128)
                    bus.send_encodings(Encodings("cam", "s", s, [face]))
                if rng.random() < 0.3:
                    time.sleep(0.001)
            seq = batch and max(batch) + 1
        produced.set()

    def worker(name: str) -> None:
        stage = TrackStage(rt)
        try:
            while True:
                entry = bus.read_entry("track", name, None)
                if entry is None:
                    if produced.is_set():
                        return
                    time.sleep(0.001)
                    continue
                stage.process(TrackJob.from_dict(json.loads(entry.payload)))
                bus.entry_done("track", entry.id)
                jobs_run[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=producer)] + [
        threading.Thread(target=worker, args=(f"w{i}",)) for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    assert bus.depth("track") == 0  # and nothing taken and not done:
    assert bus.conn.xpending(bus.entries_key("track"), bus_mod.STREAM_GROUP)["pending"] == 0
    # nothing left behind: every frame consumed, every encoding applied
    assert bus.buffer_len("cam", "s") == 0 and not bus.encodings_waiting("cam", "s")
    assert bus.load_tracker_state("cam", "s")["next_seq"] == n
    seqs = []
    for payload in bus.peek("sink", 10_000):
        msg = sink_message_from_dict(payload)
        seqs += [r.seq for r in getattr(msg, "records", [])]
    assert seqs == list(range(n))  # each frame once, in order
    assert jobs_run[0] < n  # pokes coalesced (one per frame put without)


def test_each_encodings_message_is_applied_once(rt, monkeypatch):
    from pipeline.tracking.stream import StreamTracker

    seen = []
    observe = StreamTracker.observe

    def counting(self, faces):  # noqa: ANN001, ANN202
        seen.append([f.track_id for f in faces])
        return observe(self, faces)

    monkeypatch.setattr(StreamTracker, "observe", counting)
    bus = rt.bus
    for tid in (4, 5):
        face = Face(box=(0, 0, 40, 40), track_id=tid, encoding=[0.1] * 128)
        bus.send_encodings(Encodings("cam", "s", 0, [face]))
    bus.buffer_put(FrameRecord(stream="cam", session="s", seq=0, ts=1.0))
    TrackStage(rt).process(TrackJob("cam", "s"))
    assert seen == [[4], [5]]
    assert not bus.encodings_waiting("cam", "s") and bus.buffer_len("cam", "s") == 0
