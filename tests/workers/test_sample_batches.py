"""The samples one hold of the track stage chose travel as one job through recognize and
attributes and one Samples message to the sink: each sampled frame's image is let go
exactly once, and a retried sink job stores nothing twice. A real store (SQLite) and a
real redis-server."""

from __future__ import annotations

import numpy as np

from pipeline.record import Face, FrameRecord, Samples
from tests.workers.test_sink_context import frame, sink_for
from workers.track import by_frame, frame_holders


def _face(track: int, quality: float = 0.5) -> Face:
    enc = list(np.random.default_rng(track).normal(size=128) * 0.1)
    return Face(box=(200, 100, 300, 300), track_id=track, quality=quality, encoding=enc)


def test_samples_of_one_frame_chosen_in_two_steps_share_one_record_and_one_holder():
    def sample(seq: int, track: int) -> FrameRecord:
        return FrameRecord(stream="cam", session="s", seq=seq, ts=1.0, key=f"k{seq}",
                           faces=[Face(box=(0, 0, 9, 9), track_id=track)])  # fmt: skip

    merged = by_frame([sample(3, 1), sample(5, 2), sample(3, 4)])
    assert [(r.seq, [f.track_id for f in r.faces]) for r in merged] == [(3, [1, 4]), (5, [2])]
    out = [FrameRecord(stream="cam", session="s", seq=s, ts=1.0, key=f"k{s}") for s in range(6)]
    changes = frame_holders(out, merged, set(), set())
    assert changes["k3"] == (["sample:1,4"], ["pipeline"])
    assert changes["k5"] == (["sample:2", "latest"], ["pipeline"])


def test_the_sink_stores_a_hold_s_samples_and_lets_each_frame_go_once(redis_url, home):
    sink = sink_for(redis_url)
    bus = sink.rt.bus
    recs = [frame(sink, 0, [_face(1), _face(2)]), frame(sink, 4, [_face(1, 0.9)]),
            frame(sink, 6, [_face(2, 0.7)])]  # fmt: skip
    for rec in recs:  # as the track stage left them (workers/track.py)
        bus.hold_frames({rec.key: ([f"sample:{','.join(str(f.track_id) for f in rec.faces)}"],
                                   ["pipeline"])})  # fmt: skip
    bus.hold_frames({recs[2].key: (["latest"], [])})  # the live view's too
    msg = Samples("identity", recs)
    sink.process(msg)

    def stored() -> list[tuple[str, int]]:
        return sorted((uid, r["seq"]) for uid in ("door/s1/1", "door/s1/2")
                      for r in sink.store.event_samples(uid))  # fmt: skip

    assert stored() == [("door/s1/1", 0), ("door/s1/1", 4), ("door/s1/2", 0), ("door/s1/2", 6)]
    # the sampled frames' images: gone, but for the one the live view still shows
    assert not bus.conn.exists(recs[0].key) and not bus.conn.exists(recs[1].key)
    assert bus.frame_holders(recs[2].key) == {"latest"}
    events = {e["track_id"]: e for e in sink.store.events(stream="door")}
    assert events[1]["snapshot_quality"] == 0.9 and events[2]["snapshot_quality"] == 0.7
    assert events[1]["identity_samples"] == 2 and events[2]["identity_samples"] == 2

    # the job retried (its worker died after storing): nothing stored or let go twice
    sink.process(msg)
    assert len(stored()) == 4
    assert bus.frame_holders(recs[2].key) == {"latest"}
    events = {e["track_id"]: e for e in sink.store.events(stream="door")}
    assert events[1]["identity_samples"] == 2 and events[2]["identity_samples"] == 2


def test_a_stage_reads_a_jobs_images_in_one_round_trip_missing_ones_as_none(redis_url, home):
    sink = sink_for(redis_url)  # any stage: Stage.images is shared
    bus = sink.rt.bus
    there = frame(sink, 0, [_face(1)])
    gone = FrameRecord(stream="cam", session="s", seq=1, ts=1.0, key="facepipe:frame:none")
    keyless = FrameRecord(stream="cam", session="s", seq=2, ts=1.0)
    calls = []
    get_many = sink.rt.frames.get_many
    sink.rt.frames.get_many = lambda keys: calls.append(keys) or get_many(keys)
    images = sink.images([there, gone, keyless])
    assert calls == [[there.key, gone.key]]  # one read for the job
    assert images[0] is not None and images[0].shape[2] == 3
    assert images[0].tolist() == sink.image(there).tolist()
    assert images[1] is None and images[2] is None
    assert bus.conn.exists(there.key)  # reading lets nothing go
