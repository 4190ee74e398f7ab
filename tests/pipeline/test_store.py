import numpy as np
import pytest

from pipeline.record import Face, FrameRecord
from pipeline.store import EventStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    return EventStore(request.getfixturevalue("pg_url"))


def frame(seq, ts, *faces, ended=(), starts=None):
    rec = FrameRecord(stream="cam", session="s", seq=seq, ts=ts, faces=list(faces))
    rec.ended_tracks = list(ended)
    rec.track_starts = starts or {}
    return rec


def test_observations_fold_into_one_event_per_track(store):
    recs = [
        frame(0, 10.0, Face(box=(0, 0, 10, 10), track_id=1), starts={1: [8.0, 3]}),
        frame(1, 11.0, Face(box=(0, 0, 10, 10), track_id=1), Face(box=(50, 0, 10, 10), track_id=2)),
    ]
    assert store.observe(recs) == 2
    store.observe([frame(2, 12.0, Face(box=(0, 0, 10, 10), track_id=1), ended=[2])])
    evs = {e["track_id"]: e for e in store.events()}
    assert evs[1]["first_seen"] == 8.0 and evs[1]["last_seen"] == 12.0
    assert evs[1]["n_frames"] == 3 + 1 + 1  # 3 frames up to confirmation, then 2 more
    assert evs[2]["n_frames"] == 1 and evs[2]["ended"]
    assert not evs[1]["ended"]


def test_samples_fuse_identity_and_attributes(store):
    a = np.full(128, 0.05)
    store.enroll("ann", [a], ["ann.jpg"])
    g = store.gallery()
    assert g.names == ["ann"]
    for seq in range(3):
        f = Face(box=(0, 0, 40, 40), track_id=1, quality=40.0)
        f.encoding = list(a + 0.01 * seq)
        store.add_samples(frame(seq, 1.0 + seq, f), "identity")
        f2 = Face(box=(0, 0, 40, 40), track_id=1, age=30.0 + seq, gender="male",
                  gender_confidence=0.9)  # fmt: skip
        uids = store.add_samples(frame(seq, 1.0 + seq, f2), "attributes")
        store.refuse(uids[0], g, threshold=0.6)
    (ev,) = store.events()
    assert ev["person"] == "ann" and ev["identity_samples"] == 3
    assert ev["age"] == 31.0 and ev["gender"] == "male" and ev["attribute_samples"] == 3
    assert store.events(person="ann") and not store.events(person="unknown")
    assert not store.events(since=100.0)


def test_stranger_stays_unknown(store):
    store.enroll("ann", [np.zeros(128)], ["ann.jpg"])
    f = Face(box=(0, 0, 40, 40), track_id=1, quality=1.0, encoding=[0.2] * 128)
    (uid,) = store.add_samples(frame(0, 1.0, f), "identity")
    store.refuse(uid, store.gallery(), threshold=0.6)
    (ev,) = store.events(person="unknown")
    assert ev["person"] is None and ev["person_distance"] > 0.6


def test_gallery_people_and_remove(store):
    v0 = store.gallery_version()
    store.enroll("bob", [np.ones(128), np.zeros(128)], ["a.jpg", "b.jpg"])
    assert store.gallery_version() != v0
    assert [(p["name"], p["photos"]) for p in store.people()] == [("bob", 2)]
    assert store.remove_person("bob")
    assert not store.remove_person("bob")
    assert store.people() == [] and store.gallery().names == []


def ident(seq, ts, track_id, vec, quality=1.0):
    f = Face(box=(0, 0, 40, 40), track_id=track_id, quality=quality, encoding=list(vec))
    return frame(seq, ts, f)


def test_merge_folds_the_young_event_into_the_old_one(store):
    a = np.full(128, 0.05)
    store.observe([frame(0, 1.0, Face(box=(0, 0, 9, 9), track_id=1), starts={1: [0.5, 3]})])
    store.observe([frame(5, 3.0, Face(box=(0, 0, 9, 9), track_id=1))])
    store.add_samples(ident(0, 1.0, 1, a, quality=0.2), "identity")
    store.set_snapshot("cam/s/1", "one.jpg", 0.2)
    store.observe(
        [frame(9, 5.0, Face(box=(0, 0, 9, 9), track_id=2))],
    )
    store.observe([frame(10, 6.0, Face(box=(0, 0, 9, 9), track_id=2))])
    store.add_samples(ident(9, 5.0, 2, a + 0.01, quality=0.9), "identity")
    store.set_snapshot("cam/s/2", "two.jpg", 0.9)

    res = store.merge_tracks("cam/s/2", "cam/s/1")
    assert res.into_uid == "cam/s/1" and res.folded
    assert res.orphan_snapshot == "one.jpg"  # the caller may delete it
    (ev,) = store.events()
    assert ev["track_uid"] == "cam/s/1"
    assert (ev["first_seen"], ev["last_seen"], ev["n_frames"]) == (0.5, 6.0, 3 + 1 + 2)
    assert (ev["snapshot"], ev["snapshot_quality"]) == ("two.jpg", 0.9)  # the better one
    values = store.refuse("cam/s/1", store.gallery(), threshold=0.6)
    assert values["identity_samples"] == 2  # the young track's sample moved over
    # idempotent: a second delivery of the same merge changes nothing
    assert not store.merge_tracks("cam/s/2", "cam/s/1").folded
    assert [e["n_frames"] for e in store.events()] == [6]
    with pytest.raises(ValueError):
        store.merge_tracks("cam/s/1", "cam/s/1")


def test_writes_for_a_merged_track_land_on_the_survivor(store):
    store.observe([frame(0, 1.0, Face(box=(0, 0, 9, 9), track_id=1))])
    store.merge_tracks("cam/s/2", "cam/s/1")  # before any write of track 2 arrived
    store.observe([frame(3, 2.0, Face(box=(0, 0, 9, 9), track_id=2), ended=[2])])
    uids = store.add_samples(ident(3, 2.0, 2, np.zeros(128)), "identity")
    assert uids == ["cam/s/1"]
    store.set_snapshot("cam/s/2", "x.jpg", 0.5)
    assert store.snapshot_quality("cam/s/2") == 0.5
    (ev,) = store.events()
    assert ev["track_uid"] == "cam/s/1" and ev["n_frames"] == 2 and ev["ended"]
    assert ev["snapshot"] == "x.jpg" and ev["track_id"] == 1
    # a chain: track 3 merged into 2, which already is an alias of 1
    store.merge_tracks("cam/s/3", "cam/s/2")
    store.observe([frame(6, 3.0, Face(box=(0, 0, 9, 9), track_id=3))])
    assert [(e["track_uid"], e["n_frames"]) for e in store.events()] == [("cam/s/1", 3)]


def test_a_write_that_raced_the_merge_is_folded_by_the_writer(store):
    """The merge committed between the writer's alias lookup and its write."""
    from pipeline import store as store_mod

    store.observe([frame(0, 1.0, Face(box=(0, 0, 9, 9), track_id=1))])
    real = store._resolve
    calls = []

    def stale_first_lookup(conn, uids):
        calls.append(uids)
        if len(calls) == 1:  # the writer's lookup: no alias yet
            with store.engine.begin() as c2:
                c2.execute(store_mod.track_aliases.insert().values(
                    from_uid="cam/s/2", into_uid="cam/s/1", created=0.0))  # fmt: skip
            return {}
        return real(conn, uids)

    store._resolve = stale_first_lookup
    store.observe([frame(3, 2.0, Face(box=(0, 0, 9, 9), track_id=2))])
    store._resolve = real
    (ev,) = store.events()
    assert ev["track_uid"] == "cam/s/1" and ev["n_frames"] == 2


def test_events_record_first_and_last_frame_numbers(store):
    store.observe([frame(7, 1.0, Face(box=(0, 0, 9, 9), track_id=1), starts={1: [0.5, 3, 4]})])
    store.observe([frame(9, 2.0, Face(box=(0, 0, 9, 9), track_id=1))])
    store.observe([frame(30, 3.0, Face(box=(0, 0, 9, 9), track_id=2))])
    store.merge_tracks("cam/s/2", "cam/s/1")
    (ev,) = store.events()
    assert (ev["first_frame"], ev["last_frame"]) == (4, 30)


def test_a_track_of_poor_faces_is_never_named(store):
    a = np.full(128, 0.05)
    store.enroll("ann", [a], ["ann.jpg"])
    (uid,) = store.add_samples(ident(0, 1.0, 1, a + 0.01, quality=0.01), "identity")
    g = store.gallery()
    assert store.refuse(uid, g, threshold=0.6, min_quality=0.05)["person"] is None
    assert store.refuse(uid, g, threshold=0.6, min_quality=0.0)["person"] == "ann"


def both(seq, ts, track_id, vec, age, session="s"):
    """A frame as the attributes stage sends it: one face with its identity sample (the
    recognize stage's encoding) and its attribute sample."""
    f = Face(box=(0, 0, 40, 40), track_id=track_id, quality=1.0, encoding=list(vec),
             name="ann", distance=0.3, age=age, gender="female", gender_confidence=0.8)  # fmt: skip
    return FrameRecord(stream="cam", session=session, seq=seq, ts=ts, faces=[f])


def test_both_kinds_of_samples_in_one_call_store_what_two_calls_store(store):
    a = np.full(128, 0.05)
    store.enroll("ann", [a], ["ann.jpg"])
    for seq in range(3):  # track 1: two calls per frame (identity, then attributes)
        for kind in ("identity", "attributes"):
            store.add_samples(both(seq, 1.0 + seq, 1, a + 0.01 * seq, 30.0 + seq), kind)
    for seq in range(3):  # the same frames of another session: one call each
        uids = store.add_samples(
            both(seq, 1.0 + seq, 1, a + 0.01 * seq, 30.0 + seq, "t"), "identity", "attributes"
        )
        assert uids == ["cam/t/1"]
    g = store.gallery()
    one, two = store.refuse("cam/s/1", g, 0.6), store.refuse("cam/t/1", g, 0.6)
    assert {k: v for k, v in one.items() if k != "updated_at"} == {
        k: v for k, v in two.items() if k != "updated_at"
    }
    assert one["person"] == "ann" and one["age"] == 31.0 and one["gender"] == "female"
    assert one["identity_samples"] == 3 and one["attribute_samples"] == 3

    def rows(uid):
        return [{k: v for k, v in r.items() if k not in ("id", "track_uid")}
                for r in store.event_samples(uid)]  # fmt: skip

    assert rows("cam/s/1") == rows("cam/t/1") and len(rows("cam/s/1")) == 6
    # a face without age and gender gets its identity sample only
    bare = Face(box=(0, 0, 40, 40), track_id=3, quality=1.0, encoding=list(a))
    assert store.add_samples(frame(5, 6.0, bare), "identity", "attributes") == ["cam/s/3"]
    assert [r["kind"] for r in store.event_samples("cam/s/3")] == ["identity"]
    with pytest.raises(ValueError):
        store.add_samples(frame(5, 6.0, bare), "identity+names")


def test_both_kinds_of_samples_of_a_merged_track_land_on_the_survivor(store):
    store.observe([frame(0, 1.0, Face(box=(0, 0, 9, 9), track_id=1))])
    store.merge_tracks("cam/s/2", "cam/s/1")
    uids = store.add_samples(both(3, 2.0, 2, np.zeros(128), 40.0), "identity", "attributes")
    assert uids == ["cam/s/1"]
    assert [r["kind"] for r in store.event_samples("cam/s/1")] == ["identity", "attributes"]
    assert store.event_samples("cam/s/2") == []


def test_snapshot_and_context_in_one_write(store):
    store.observe([frame(0, 1.0, Face(box=(0, 0, 9, 9), track_id=1))])
    assert store.set_snapshot_and_context("cam/s/1", "1.jpg", 0.4, "1-c.jpg", "[]") == []
    # the same files again (a better face of the same track): nothing to delete
    assert store.set_snapshot_and_context("cam/s/1", "1.jpg", 0.6, "1-c.jpg", "[[1]]") == []
    # a merged track's write lands on the survivor; its old files are the caller's to delete
    store.merge_tracks("cam/s/2", "cam/s/1")
    old = store.set_snapshot_and_context("cam/s/2", "2.jpg", 0.9, "2-c.jpg", "[[2]]")
    assert old == ["1.jpg", "1-c.jpg"]
    (ev,) = store.events()
    assert (ev["snapshot"], ev["snapshot_quality"], ev["context"]) == ("2.jpg", 0.9, "2-c.jpg")
    assert store.snapshot_quality("cam/s/2") == 0.9
    # the single-column setters still answer with the previous file
    assert store.set_snapshot("cam/s/1", "3.jpg", 1.0) == "2.jpg"
    assert store.set_context("cam/s/1", None, None) == "2-c.jpg"
    assert store.set_snapshot_and_context("cam/s/9", "9.jpg", 1.0, "9-c.jpg", "[]") == []


def test_the_samples_of_several_frames_in_one_call_store_what_one_call_each_stores(store):
    """The sink stores the samples of one track hold (several frames, several tracks) in
    one call: the same rows as one call per frame."""
    a = np.full(128, 0.05)
    recs = [both(seq, 1.0 + seq, 1 + seq % 2, a + 0.01 * seq, 30.0 + seq) for seq in range(4)]
    for rec in recs:
        store.add_samples(rec, "identity", "attributes")
    batch = [both(r.seq, r.ts, r.faces[0].track_id, a + 0.01 * r.seq, 30.0 + r.seq, "t")
             for r in recs]  # fmt: skip
    assert store.add_samples(batch, "identity", "attributes") == ["cam/t/1", "cam/t/2"]

    def rows(uid):
        return sorted(
            tuple(sorted((k, str(v)) for k, v in r.items() if k not in ("id", "track_uid")))
            for r in store.event_samples(uid)
        )

    for tid in (1, 2):
        assert rows(f"cam/s/{tid}") == rows(f"cam/t/{tid}") and len(rows(f"cam/t/{tid}")) == 4
    # a new event's first and last sampled frame are the batch's earliest and latest
    evs = {e["track_uid"]: e for e in store.events()}
    assert (evs["cam/t/1"]["first_seen"], evs["cam/t/1"]["last_seen"]) == (1.0, 3.0)


def test_samples_stored_again_are_not_stored_twice(store):
    """A sink job retried after a crash (its samples stored, the job not finished) stores
    nothing new: the event is fused from each sample once."""
    a = np.full(128, 0.05)
    batch = [both(seq, 1.0 + seq, 1, a, 30.0) for seq in range(3)]
    store.add_samples(batch[:2], "identity")
    assert store.add_samples(batch, "identity", "attributes") == ["cam/s/1"]
    assert store.add_samples(batch, "identity", "attributes") == ["cam/s/1"]  # the retry
    kinds = [(r["kind"], r["seq"]) for r in store.event_samples("cam/s/1")]
    assert sorted(kinds) == sorted(
        [("identity", s) for s in range(3)] + [("attributes", s) for s in range(3)]
    )
    ev = store.refuse("cam/s/1", store.gallery(), 0.6)
    assert ev["identity_samples"] == 3 and ev["attribute_samples"] == 3
