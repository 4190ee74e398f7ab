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
    frame0: int | None = None,
) -> str:
    """A track of n identity samples through the same path the sink uses, in frames
    ``frame0``.. of session "s" (default: 100 * track, apart from other tracks)."""
    store = ids.store
    frame0 = 100 * track if frame0 is None else frame0
    for seq in range(frame0, frame0 + n):
        f = Face(box=(0, 0, 50, 50), track_id=track, quality=quality,
                 encoding=list(near(face, [zlib.crc32(stream.encode()), track, seq])))  # fmt: skip
        rec = FrameRecord(stream=stream, session="s", seq=seq, ts=t0 + seq, faces=[f])
        store.observe([rec])
        (uid,) = store.add_samples(rec, "identity")
        values = store.refuse(uid, store.gallery(), ids.rule)
        if values.get("person") is None:
            ids.assign_unknown(uid)
        for other in values.get("displaced", []):
            ids.assign_unknown(other)
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
    (change,) = ids.after_enrolment("alice")
    assert (change.track_uid, change.old, change.new) == (a, "unknown-1", "alice")
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
    a = sighting(ids, "cam", 1, BOB, frame0=0)
    b = sighting(ids, "cam", 2, BOB + 0.3 * axis, frame0=0)  # near enough, but with a
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


# ----- corrections touch only what they name (the measured scenario of issue 10) ------------


def three_strangers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three faces 0.54 apart: further than the clustering threshold (0.5) keeps
    clusters, nearer than the recognition threshold (0.6) names people."""
    axes = np.eye(128)[:3] * 0.54 / np.sqrt(2)
    return tuple(CAROL + a for a in axes)  # type: ignore[return-value]


@pytest.fixture()
def scene(ids):
    """Two people in the same frames (tracks 1 and 2, frames 0-19 of stream cam), and
    three unknown clusters seen on other streams too."""
    assert (ids.unknown_threshold, ids.rule.ceiling) == (0.5, 0.6)  # the scenario needs them
    u1, u2, u3 = three_strangers()
    uids = {
        "t1": sighting(ids, "cam", 1, u1, n=20, frame0=0),
        "t2": sighting(ids, "cam", 2, u2, n=20, frame0=0),
        "t3": sighting(ids, "cam2", 3, u1),
        "t4": sighting(ids, "cam2", 4, u2),
        "t5": sighting(ids, "cam2", 5, u3),
        "t6": sighting(ids, "cam3", 6, u3),
        "t7": sighting(ids, "cam3", 7, u1),
    }
    ev = by_uid(ids)
    label = {k: ev[u]["unknown_id"] for k, u in uids.items()}
    assert label == {"t1": "unknown-1", "t2": "unknown-2", "t3": "unknown-1", "t4": "unknown-2",
                     "t5": "unknown-3", "t6": "unknown-3", "t7": "unknown-1"}  # fmt: skip
    return uids


def labels(ids) -> dict[str, str]:
    return {e["track_uid"]: e["person"] or e["unknown_id"] or "unknown" for e in ids.store.events()}


def test_renaming_an_unknown_changes_its_events_and_nothing_else(ids, scene):
    before = labels(ids)
    changes = ids.rename("unknown-1", "NEWNAME")
    after = labels(ids)
    moved = {u for u in after if after[u] != before[u]}
    mine = {scene["t1"], scene["t3"], scene["t7"]}
    assert moved == mine  # main relabelled unknown-2's and unknown-3's events too
    assert {after[u] for u in mine} == {"NEWNAME"}
    assert after[scene["t2"]] == "unknown-2"  # seen with t1: never the same name
    # the report lists exactly the changed events, from what to what
    by_id = {e["id"]: e["track_uid"] for e in ids.store.events()}
    assert sorted((by_id[c.event], c.old, c.new) for c in changes) == sorted(
        (u, "unknown-1", "NEWNAME") for u in mine
    )
    assert all("renamed unknown-1 to NEWNAME" in c.reason for c in changes)
    assert {u["name"] for u in ids.unknown_list()} == {"unknown-2", "unknown-3"}


def test_merging_unknowns_keeps_co_present_tracks_apart(ids, scene):
    before = labels(ids)
    changes = ids.merge("unknown-1", "unknown-2")
    after = labels(ids)
    moved = {u for u in after if after[u] != before[u]}
    assert moved == {scene["t4"]}  # t2 is on screen with t1 (unknown-1): it stays
    assert after[scene["t2"]] == "unknown-2" and after[scene["t1"]] == "unknown-1"
    assert [(c.track_uid, c.old, c.new) for c in changes] == [
        (scene["t4"], "unknown-2", "unknown-1")
    ]
    # a person absorbing an unknown: only that unknown's events (and t2 stays apart)
    ids.store.enroll("zed", [ALICE], ["zed.jpg"])
    before = labels(ids)
    changes = ids.merge("zed", "unknown-1")
    after = labels(ids)
    moved = {u for u in after if after[u] != before[u]}
    assert moved == {scene[k] for k in ("t1", "t3", "t4", "t7")}
    assert {c.track_uid for c in changes} == moved
    assert after[scene["t2"]] == "unknown-2"


def test_not_name_changes_that_event_only(ids, scene):
    ids.rename("unknown-1", "NEWNAME")
    before = labels(ids)
    event = by_uid(ids)[scene["t3"]]["id"]
    changes = ids.mark_not(event, "NEWNAME")
    after = labels(ids)
    moved = {u for u in after if after[u] != before[u]}
    assert moved == {scene["t3"]}
    (c,) = changes
    assert (c.event, c.old, c.new) == (event, "NEWNAME", after[scene["t3"]])
    assert after[scene["t3"]] not in ("NEWNAME", "unknown-2", "unknown-3")
    assert f"event {event} is not NEWNAME" in c.reason


def test_enrolment_moves_an_unknown_only_within_the_clustering_threshold(ids, scene):
    u1, u2, _ = three_strangers()
    # a photo 0.52 from unknown-1's faces, away from the others: within the recognition
    # threshold (0.6), so the normal rule would name them, but further than clusters are
    # apart (0.5): unknown-1 stays (main named it, at 0.6)
    cy = u1 + 0.52 * np.eye(128)[0]
    ids.store.enroll("cy", [cy], ["cy.jpg"])
    would = ids.store.refuse(scene["t3"], ids.store.gallery(), ids.rule, write=False)
    assert would["person"] == "cy"
    before = labels(ids)
    assert ids.after_enrolment("cy") == []
    assert labels(ids) == before
    # a photo of the person of unknown-2: their events move, nobody else's
    ids.store.enroll("bea", [u2], ["bea.jpg"])
    changes = ids.after_enrolment("bea")
    assert {c.track_uid for c in changes} == {scene["t2"], scene["t4"]}
    assert all(c.old == "unknown-2" and c.new == "bea" and "margin" in c.reason
               for c in changes)  # fmt: skip
    assert {u for u, v in labels(ids).items() if v != before[u]} == {scene["t2"], scene["t4"]}


def test_co_present_tracks_matching_one_person_only_the_nearer_keeps_the_name(ids):
    ids.store.enroll("al", [ALICE], ["a.jpg"])
    far = sighting(ids, "cam", 1, near(ALICE, 3, scale=0.03), frame0=0)
    assert by_uid(ids)[far]["person"] == "al"
    close = sighting(ids, "cam", 2, ALICE, frame0=0)  # nearer, in the same frames
    ev = by_uid(ids)
    assert ev[close]["person"] == "al"
    assert ev[far]["person"] is None and ev[far]["unknown_id"]  # displaced
    again = sighting(ids, "cam", 3, near(ALICE, 4, scale=0.03), frame0=1)
    assert by_uid(ids)[again]["person"] is None  # further than `close`, same frames


def test_merging_people_seen_in_the_same_frames_keeps_them_apart(ids):
    ids.store.enroll("al", [ALICE], ["a.jpg"])
    ids.store.enroll("bo", [BOB], ["b.jpg"])
    a = sighting(ids, "cam", 1, ALICE, frame0=0)
    b = sighting(ids, "cam", 2, BOB, frame0=0)  # on screen with a
    b2 = sighting(ids, "cam2", 3, BOB)
    before = labels(ids)
    assert (before[a], before[b], before[b2]) == ("al", "bo", "bo")
    changes = ids.merge("al", "bo")
    after = labels(ids)
    assert after[a] == "al" and after[b2] == "al"
    assert after[b] not in ("al", "bo")  # never one name with a: unknown (an unknown-N)
    ea = by_uid(ids)[a]["id"]
    assert sorted((c.track_uid, c.old, c.new, c.reason) for c in changes) == sorted([
        (b, "bo", after[b], f"co-occurs with event {ea} (al)"),
        (b2, "bo", "al", "merged bo into al"),
    ])  # fmt: skip


def test_removing_a_person_rematches_their_events_only(ids):
    ids.store.enroll("al", [ALICE], ["a.jpg"])
    a = sighting(ids, "cam", 1, ALICE)
    c = sighting(ids, "cam", 2, CAROL)
    assert ids.store.remove_person("al")
    (change,) = ids.relabel_person("al", "removed al")
    assert (change.track_uid, change.old) == (a, "al")
    assert change.new.startswith("unknown-") and "removed al" in change.reason
    assert labels(ids)[c] == "unknown-1"


def test_enrolment_takes_an_event_from_another_person_only_when_clearly_nearer(ids):
    axis = np.eye(128)[0]
    ids.store.enroll("al", [ALICE], ["a.jpg"])
    a = sighting(ids, "cam", 1, ALICE + 0.3 * axis)
    assert labels(ids)[a] == "al"
    ids.store.enroll("ann", [ALICE + 0.55 * axis], ["ann.jpg"])  # nearer, but not by 0.1
    assert ids.after_enrolment("ann") == [] and labels(ids)[a] == "al"
    ids.store.enroll("amy", [ALICE + 0.3 * axis], ["amy.jpg"])  # clearly nearer
    (c,) = ids.after_enrolment("amy")
    assert (c.track_uid, c.old, c.new) == (a, "al", "amy") and "next ann" in c.reason


def test_naming_an_unknown_enrols_only_its_good_tracks(ids):
    """A blurred track of a cluster does not become one of the person's photos: it must
    not widen their acceptance region (recognition.min_enrol_quality)."""
    good = sighting(ids, "door", 1, CAROL, quality=0.5)
    poor = sighting(ids, "door", 2, near(CAROL, 99, 0.003), quality=0.1)
    ev = by_uid(ids)
    assert ev[good]["unknown_id"] == ev[poor]["unknown_id"] == "unknown-1"
    ids.rename("unknown-1", "carol")
    ev = by_uid(ids)
    assert ev[good]["person"] == ev[poor]["person"] == "carol"  # both events are named
    with ids.store.engine.connect() as conn:
        sources = [r[0] for r in conn.execute(sa.select(encodings.c.source))]
    assert sources == [f"unknown-1:{good}"]  # only the good track is enrolled
    # with its quality (its best sample's): the rule's enrolment gate reads it
    assert ids.store.gallery().quality == [pytest.approx(0.5)]


def test_a_poor_stored_photo_does_not_count_beside_a_good_one(ids):
    """The enrolment quality stored with each photo reaches the rule the sink applies: a
    person's poor photo (a tiny, blurred face) does not widen their acceptance region when
    they have a good one; the same photo stored without a quality (an older store) counts."""
    axis = np.zeros(128)
    axis[0] = 1.0
    ids.store.enroll("dan", [CAROL + 0.9 * axis, CAROL + 0.05 * axis], ["a.jpg", "b.jpg"],
                     [0.9, 0.05])  # fmt: skip
    ids.store.enroll("eve", [CAROL + 1.5 * axis], ["e.jpg"], [0.9])
    uid = sighting(ids, "door", 1, CAROL)
    assert by_uid(ids)[uid]["person"] is None  # only the far, good photo counts
    with ids.store.engine.begin() as conn:
        conn.execute(encodings.update().values(quality=None))
    assert ids.store.refuse(uid, ids.store.gallery(), ids.rule)["person"] == "dan"
