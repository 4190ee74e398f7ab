"""Unknown people, renames, merges, corrections and relabelling on stored encodings."""

import time
import zlib

import numpy as np
import pytest
import sqlalchemy as sa

from pipeline.config import Config
from pipeline.identities import Identities, IdentityError
from pipeline.record import Face, FrameRecord
from pipeline.store import EventStore, GalleryCache, encodings, negatives, samples, unknowns

ALICE, BOB, CAROL = np.random.default_rng(1).normal(size=(3, 128)) * 0.08


def near(v, seed, scale=0.01):
    """``v`` plus noise that depends on ``seed`` only (not on which tests ran before)."""
    return v + np.random.default_rng(seed).normal(size=128) * scale


@pytest.fixture()
def ids(tmp_path):
    # the production thresholds: the config's defaults are the only ones
    return Identities.from_config(EventStore(f"sqlite:///{tmp_path / 'e.db'}"), Config())


def sighting(
    ids: Identities,
    stream: str,
    track: int,
    face: np.ndarray,
    n: int = 3,
    quality: float = 0.5,
    t0: float = 1000.0,
) -> str:
    """A track of n identity samples through the same path the sink uses."""
    store = ids.store
    for seq in range(n):
        f = Face(box=(0, 0, 50, 50), track_id=track, quality=quality,
                 encoding=list(near(face, [zlib.crc32(stream.encode()), track, seq])))  # fmt: skip
        rec = FrameRecord(stream=stream, session="s", seq=seq, ts=t0 + seq, faces=[f])
        store.observe([rec])
        (uid,) = store.add_samples(rec, "identity")
        values = store.refuse(uid, store.gallery(), ids.threshold)
        if values.get("person") is None:
            ids.assign_unknown(uid)
    return uid


def by_uid(ids):
    return {e["track_uid"]: e for e in ids.store.events()}


def test_same_stranger_on_two_cameras_is_one_unknown(ids):
    a = sighting(ids, "door", 1, CAROL)
    b = sighting(ids, "lobby", 7, CAROL)
    c = sighting(ids, "lobby", 8, BOB)
    ev = by_uid(ids)
    assert ev[a]["unknown_id"] == ev[b]["unknown_id"] == "unknown-1"
    assert ev[c]["unknown_id"] == "unknown-2"
    listed = {u["name"]: u for u in ids.unknown_list()}
    assert listed["unknown-1"]["events"] == 2
    assert listed["unknown-1"]["streams"] == ["door", "lobby"]


def test_rename_unknown_enrolls_and_relabels_past_and_future(ids):
    a = sighting(ids, "door", 1, CAROL)
    ids.rename("unknown-1", "carol")
    ev = by_uid(ids)[a]
    assert ev["person"] == "carol" and ev["unknown_id"] is None
    assert [p["name"] for p in ids.store.people()] == ["carol"]
    later = sighting(ids, "door", 2, CAROL)  # recognised from now on
    assert by_uid(ids)[later]["person"] == "carol"
    assert ids.unknown_list() == []


def test_enrolment_relabels_past_unknown_events(ids):
    a = sighting(ids, "door", 1, ALICE)
    assert by_uid(ids)[a]["person"] is None
    ids.store.enroll("alice", [ALICE], ["alice.jpg"])
    assert ids.relabel_all() == 1
    assert by_uid(ids)[a]["person"] == "alice"


def test_merge_two_unknowns_and_a_person_with_an_unknown(ids):
    sighting(ids, "door", 1, CAROL)
    sighting(ids, "door", 2, BOB)
    ids.merge("unknown-1", "unknown-2")
    assert [u["name"] for u in ids.unknown_list()] == ["unknown-1"]
    ids.store.enroll("dave", [ALICE], ["d.jpg"])
    ids.merge("dave", "unknown-1")
    assert {e["person"] for e in ids.store.events()} == {"dave"}
    with pytest.raises(IdentityError, match="no enrolled person"):
        ids.merge("nobody", "dave")


def test_not_name_stops_that_match(ids):
    ids.store.enroll("alice", [ALICE], ["alice.jpg"])
    version = ids.store.gallery_version()
    # a look-alike: within the threshold of alice, but a different person
    lookalike = near(ALICE, 7, scale=0.035)
    uid = sighting(ids, "door", 1, lookalike)
    ev = by_uid(ids)[uid]
    assert ev["person"] == "alice"
    ids.mark_not(ev["id"], "alice")
    assert ids.store.gallery_version() != version  # running workers reload the negatives
    assert by_uid(ids)[uid]["person"] is None
    again = sighting(ids, "door", 2, lookalike)  # the same look-alike later: not alice
    assert by_uid(ids)[again]["person"] is None
    real = sighting(ids, "door", 3, ALICE)  # alice herself still is
    assert by_uid(ids)[real]["person"] == "alice"


def test_rename_person_and_errors(ids):
    ids.store.enroll("al", [ALICE], ["a.jpg"])
    uid = sighting(ids, "door", 1, ALICE)
    ids.rename("al", "alice")
    assert by_uid(ids)[uid]["person"] == "alice"
    with pytest.raises(IdentityError):
        ids.rename("unknown-9", "x")
    with pytest.raises(IdentityError):
        ids.rename("alice", "unknown-3")


def test_poor_faces_stay_plain_unknown_and_do_not_chain_clusters(ids):
    a = sighting(ids, "door", 1, CAROL)
    blurry = sighting(ids, "door", 2, CAROL, quality=0.01)
    ev = by_uid(ids)
    assert ev[a]["unknown_id"] == "unknown-1"
    assert ev[blurry]["person"] is None and ev[blurry]["unknown_id"] is None


def test_a_track_between_two_unknowns_joins_neither(ids):
    assert ids.unknown_margin == 0.1  # the distances below are chosen around it
    axis = np.zeros(128)
    axis[0] = 1.0
    a = sighting(ids, "cam1", 1, ALICE)
    b = sighting(ids, "cam2", 2, ALICE + 0.8 * axis)  # another stranger, 0.8 away
    mid = sighting(ids, "cam3", 3, ALICE + 0.42 * axis)  # 0.42 / 0.38 from them: ambiguous
    close = sighting(ids, "cam4", 4, ALICE + 0.1 * axis)  # clearly the first one
    ev = by_uid(ids)
    assert ev[a]["unknown_id"] and ev[b]["unknown_id"] != ev[a]["unknown_id"]
    assert ev[mid]["unknown_id"] is None
    assert ev[close]["unknown_id"] == ev[a]["unknown_id"]


def test_two_people_in_the_same_frames_are_never_one_unknown(ids):
    axis = np.zeros(128)
    axis[0] = 1.0
    a = sighting(ids, "cam", 1, BOB)
    b = sighting(ids, "cam", 2, BOB + 0.3 * axis)  # near enough to join, but on screen with a
    later = sighting(ids, "other-cam", 3, BOB)  # the first one again, elsewhere
    ev = by_uid(ids)
    assert ev[a]["unknown_id"] and ev[b]["unknown_id"]
    assert ev[a]["unknown_id"] != ev[b]["unknown_id"]
    assert ev[later]["unknown_id"] == ev[a]["unknown_id"]


# ----- erasure and retention -------------------------------------------------------------


def rows(ids, table, where=None):
    q = sa.select(table) if where is None else sa.select(table).where(where)
    with ids.store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def test_erase_a_person_removes_every_trace_and_the_cached_gallery_follows(ids):
    ids.store.enroll("alice", [ALICE], ["alice.jpg"])
    cache = GalleryCache(ids.store, poll_s=0)  # what a running worker holds
    a1, a2 = sighting(ids, "door", 1, ALICE), sighting(ids, "lobby", 2, ALICE)
    b = sighting(ids, "door", 3, BOB)
    for uid in (a1, a2, b):
        ids.store.set_snapshot(uid, f"/snaps/{uid}.jpg", 0.5)
    ids.mark_not(by_uid(ids)[b]["id"], "alice")  # a negative learnt from bob's face
    assert "alice" in cache.get().names
    assert {e["person"] for e in ids.store.events()} == {"alice", None}

    deleted = ids.erase("alice")
    assert (deleted.events, deleted.samples, deleted.negatives) == (2, 6, 1)
    assert sorted(deleted.snapshots) == sorted(f"/snaps/{u}.jpg" for u in (a1, a2))
    assert ids.store.people() == [] and rows(ids, encodings) == [] and rows(ids, negatives) == []
    assert list(by_uid(ids)) == [b]  # bob's sighting stays, with its samples
    assert {r["track_uid"] for r in rows(ids, samples)} == {b}
    assert "alice" not in cache.get().names and len(cache.get().names) == 0
    with pytest.raises(IdentityError, match="no person named 'alice'"):
        ids.erase("alice")


def test_erase_an_unknown_removes_its_events_and_cluster(ids):
    c1, c2 = sighting(ids, "door", 1, CAROL), sighting(ids, "lobby", 2, CAROL)
    b = sighting(ids, "door", 3, BOB)
    ev = by_uid(ids)
    assert ev[c1]["unknown_id"] == ev[c2]["unknown_id"] == "unknown-1"
    assert ev[b]["unknown_id"] == "unknown-2"
    deleted = ids.erase("unknown-1")
    assert deleted.events == 2 and deleted.samples == 6
    assert list(by_uid(ids)) == [b]
    assert [u["name"] for u in rows(ids, unknowns)] == ["unknown-2"]
    with pytest.raises(IdentityError, match="no unknown identity named 'unknown-1'"):
        ids.erase("unknown-1")


def test_erase_a_person_named_from_an_unknown_leaves_no_centroid_of_them(ids):
    sighting(ids, "door", 1, CAROL)
    ids.rename("unknown-1", "carol")  # enrolls the cluster's encodings as carol
    (cluster,) = rows(ids, unknowns)
    assert cluster["centroid"] != "[]"  # the renamed cluster keeps carol's face
    ids.erase("carol")
    assert ids.store.events() == [] and rows(ids, encodings) == [] and rows(ids, samples) == []
    (cluster,) = rows(ids, unknowns)  # the number stays taken, the face template goes
    assert cluster["centroid"] == "[]" and cluster["events"] == 0


def test_prune_deletes_what_is_older_than_the_cutoff_and_keeps_corrections(ids):
    old = sighting(ids, "door", 1, CAROL, t0=1000.0)  # unknown-1, only old sightings
    mixed_old = sighting(ids, "door", 2, BOB, t0=1000.0)  # unknown-2, also seen lately
    new = sighting(ids, "lobby", 3, BOB, t0=9000.0)
    ids.store.set_snapshot(old, "/snaps/old.jpg", 0.5)
    ids.store.enroll("alice", [ALICE], ["alice.jpg"])
    ids.mark_not(by_uid(ids)[old]["id"], "alice")
    assert by_uid(ids)[new]["unknown_id"] == by_uid(ids)[mixed_old]["unknown_id"] == "unknown-2"

    deleted = ids.prune(older_than=5000.0)
    assert deleted.events == 2 and deleted.samples == 6 and deleted.snapshots == ["/snaps/old.jpg"]
    assert list(by_uid(ids)) == [new]
    assert {r["track_uid"] for r in rows(ids, samples)} == {new}
    clusters = {u["name"]: u for u in rows(ids, unknowns)}
    assert clusters["unknown-1"]["centroid"] == "[]"  # no members left: no face template
    assert clusters["unknown-2"]["events"] == 1  # recomputed from the remaining sighting
    (neg,) = rows(ids, negatives)  # a user's correction stays, unlinked from the track
    assert neg["person"] == "alice" and neg["track_uid"] is None
    assert ids.store.people()[0]["name"] == "alice"  # the gallery is not pruned

    everything = ids.prune(older_than=time.time() + 1)  # empty clusters older than that go
    assert everything.events == 1 and rows(ids, unknowns) == [] and ids.store.events() == []
