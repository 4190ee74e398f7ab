"""One sample per track, kind and frame (the samples table's unique index), on SQLite and
PostgreSQL: two processes storing the same samples at once, the migration that adds the
index to a store holding duplicates, and re-identification merges of tracks sampled in
the same frame."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from pipeline import migrations
from pipeline.record import Face, FrameRecord
from pipeline.store import EventStore, metadata, samples

INDEX = "uq_samples_track_uid_kind_seq"
KINDS = ("identity", "attributes")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return request.getfixturevalue("pg_url")


def sampled(seq: int, session: str = "s", tracks: tuple[int, ...] = (1, 2)) -> FrameRecord:
    """A frame as the attributes stage sends it: each face with both kinds of sample."""
    faces = [
        Face(box=(0, 0, 40, 40), track_id=t, quality=0.5 + 0.01 * seq,
             encoding=list(np.full(128, 0.01 * t + 0.001 * seq)), name="ann", distance=0.3,
             age=30.0 + seq, gender="female", gender_confidence=0.8)
        for t in tracks
    ]  # fmt: skip
    return FrameRecord(stream="cam", session=session, seq=seq, ts=1.0 + seq, faces=faces)


def duplicates(engine: sa.Engine) -> list[tuple]:
    """(track_uid, kind, seq, rows) of every sample stored more than once."""
    key = (samples.c.track_uid, samples.c.kind, samples.c.seq)
    q = sa.select(*key, sa.func.count()).group_by(*key).having(sa.func.count() > 1)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(q)]


def count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(samples)).scalar() or 0)


# ----- two processes running one sink job at once --------------------------------------
ROUNDS = 6
FRAMES = 5


def _add_in_rounds(url: str, barrier, rounds: int) -> None:  # runs in a spawned process
    store = EventStore(url)
    store.add_samples(sampled(0, "warm"), *KINDS)  # statements built, connection open
    for r in range(rounds):
        batch = [sampled(seq, f"r{r}") for seq in range(FRAMES)]
        barrier.wait(60)  # both processes hold the same job's samples: go
        store.add_samples(batch, *KINDS)
    store.engine.dispose()


@pytest.mark.slow
def test_two_processes_storing_the_same_samples_at_once_store_each_once(url):
    """A recovered rq job whose first worker still runs: two sink processes store the
    same hold's samples at the same moment (a barrier before each of several rounds)."""
    store = EventStore(url)  # the schema, before the children race to open it
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_add_in_rounds, args=(url, barrier, ROUNDS)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]
    assert duplicates(store.engine) == []
    # each round: 2 tracks x FRAMES frames x 2 kinds, and the warm-up frame's 2 x 2
    assert count(store.engine) == ROUNDS * 2 * FRAMES * 2 + 2 * 2
    for r in range(ROUNDS):  # each event is fused from each of its samples once
        ev = store.refuse(f"cam/r{r}/1", store.gallery(), 0.6)
        assert (ev["identity_samples"], ev["attribute_samples"]) == (FRAMES, FRAMES)


def test_samples_stored_again_are_skipped_by_the_index(url):
    """The insert skips the rows the index already holds, the others of the same call
    are stored (a retry of a job that stored part of its samples)."""
    store = EventStore(url)
    store.add_samples([sampled(0), sampled(1)], "identity")
    assert store.add_samples([sampled(s) for s in range(3)], *KINDS) == ["cam/s/1", "cam/s/2"]
    assert store.add_samples([sampled(s) for s in range(3)], *KINDS) == ["cam/s/1", "cam/s/2"]
    assert duplicates(store.engine) == [] and count(store.engine) == 3 * 2 * 2
    # the first row of a sample stays: the retry changed nothing in it
    first = store.event_samples("cam/s/1")
    store.add_samples(sampled(0), *KINDS)
    assert store.event_samples("cam/s/1") == first
    # the index itself refuses a duplicate that bypasses add_samples
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(samples.insert(), {"track_uid": "cam/s/1", "kind": "identity", "seq": 0,
                                        "ts": 1.0})  # fmt: skip


# ----- the migration: duplicates stored before it ---------------------------------------
def _row(uid: str, kind: str, seq: int, quality: float) -> dict:
    return {"track_uid": uid, "kind": kind, "seq": seq, "ts": float(seq), "quality": quality}


def test_the_migration_deletes_duplicates_keeping_the_first_then_adds_the_index(url):
    engine = sa.create_engine(url)
    migrations.upgrade(engine, "0006")  # the head before the index
    assert INDEX not in {i["name"] for i in sa.inspect(engine).get_indexes("samples")}
    rows = [
        _row("cam/s/1", "identity", 0, 0.1),  # id 1: kept
        _row("cam/s/1", "identity", 0, 0.2),  # a duplicate of 1
        _row("cam/s/1", "attributes", 0, 0.3),  # same frame, other kind: kept
        _row("cam/s/2", "identity", 0, 0.4),  # same frame, other track: kept
        _row("cam/s/1", "identity", 1, 0.5),  # kept
        _row("cam/s/1", "identity", 0, 0.6),  # a second duplicate of 1
        _row("cam/s/1", "identity", 1, 0.7),  # a duplicate of 5
        _row("cam/s/1", "attributes", 0, 0.8),  # a duplicate of 3
    ]
    md = sa.MetaData()
    md.reflect(engine)
    with engine.begin() as conn:
        for r in rows:  # one at a time: ids in this order
            conn.execute(md.tables["samples"].insert(), r)
    assert len(duplicates(engine)) == 3
    engine.dispose()

    store = EventStore(url)  # upgrades to head
    assert migrations.current(store.engine) == migrations.head()
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        kept = conn.execute(sa.select(samples.c.id, samples.c.quality).order_by(samples.c.id)).all()
    assert [(i, q) for i, q in kept] == [(1, 0.1), (3, 0.3), (4, 0.4), (5, 0.5)]
    (index,) = [i for i in sa.inspect(store.engine).get_indexes("samples") if i["name"] == INDEX]
    assert index["unique"] and index["column_names"] == ["track_uid", "kind", "seq"]
    # the store goes on: a sample it has is skipped, a new one stored
    rec = FrameRecord(stream="cam", session="s", seq=1, ts=1.0,
                      faces=[Face(box=(0, 0, 9, 9), track_id=1, encoding=[0.0] * 128)])  # fmt: skip
    store.add_samples(rec, "identity")
    rec.seq = 2
    store.add_samples(rec, "identity")
    assert [(r["kind"], r["seq"]) for r in store.event_samples("cam/s/1")] == [
        ("identity", 0), ("attributes", 0), ("identity", 1), ("identity", 2)]  # fmt: skip


def test_the_index_goes_on_downgrade_and_comes_back(url):
    from alembic import command

    store = EventStore(url)
    store.add_samples(sampled(0), *KINDS)
    with store.engine.connect() as conn, conn.begin():
        command.downgrade(migrations._config(conn), "0006")
    assert INDEX not in {i["name"] for i in sa.inspect(store.engine).get_indexes("samples")}
    store.engine.dispose()
    store = EventStore(url)
    assert INDEX in {i["name"] for i in sa.inspect(store.engine).get_indexes("samples")}
    assert count(store.engine) == 2 * 2


# ----- re-identification merges of tracks sampled in the same frame --------------------
def test_a_merge_drops_the_merged_track_s_samples_of_frames_the_survivor_has(url):
    """The update of the merged track's samples would collide with the survivor's of the
    same kind and frame: those are deleted first; the rest move."""
    store = EventStore(url)
    store.add_samples([sampled(0, tracks=(1,)), sampled(1, tracks=(1,))], *KINDS)
    store.add_samples(sampled(1, tracks=(2,)), "identity")  # frame 1: both tracks
    store.add_samples(sampled(2, tracks=(2,)), *KINDS)
    survivor_1 = {(r["kind"], r["seq"]): r["id"] for r in store.event_samples("cam/s/1")}
    res = store.merge_tracks("cam/s/2", "cam/s/1")
    assert res.folded and res.into_uid == "cam/s/1"
    got = {(r["kind"], r["seq"]): r["id"] for r in store.event_samples("cam/s/1")}
    assert sorted(got) == sorted((k, s) for k in KINDS for s in range(3))
    assert {k: got[k] for k in survivor_1} == survivor_1  # the survivor's own rows stay
    assert store.event_samples("cam/s/2") == [] and duplicates(store.engine) == []
    ev = store.refuse("cam/s/1", store.gallery(), 0.6)
    assert (ev["identity_samples"], ev["attribute_samples"]) == (3, 3)


def test_a_job_run_before_and_after_a_merge_stores_its_samples_once(url):
    """A sink job stores track 2's samples, track 2 is merged into 1, the job runs again
    (recovered): the retry lands on the survivor, which has them already."""
    store = EventStore(url)
    store.add_samples(sampled(0, tracks=(1,)), *KINDS)
    job = [sampled(seq, tracks=(2,)) for seq in (3, 4)]
    store.add_samples(job, *KINDS)
    store.merge_tracks("cam/s/2", "cam/s/1")
    assert store.add_samples(job, *KINDS) == ["cam/s/1"]
    assert count(store.engine) == 3 * 2 and duplicates(store.engine) == []


def test_a_write_that_raced_the_merge_is_folded_without_its_duplicates(url):
    """One run of a job stored track 2's samples under the survivor (after the merge);
    the other run's write of the same samples raced the merge (its alias lookup came
    before it) and landed under track 2: the writer folds them in, dropping what the
    survivor has."""
    store = EventStore(url)
    store.observe([FrameRecord(stream="cam", session="s", seq=0, ts=1.0,
                               faces=[Face(box=(0, 0, 9, 9), track_id=1)])])  # fmt: skip
    job = [sampled(seq, tracks=(2,)) for seq in (3, 4)]
    store.merge_tracks("cam/s/2", "cam/s/1")
    assert store.add_samples(job, *KINDS) == ["cam/s/1"]  # the run after the merge
    real = store._resolve
    calls = []

    def stale_first_lookup(conn, uids):  # the other run looked before the merge
        calls.append(uids)
        return {} if len(calls) == 1 else real(conn, uids)

    store._resolve = stale_first_lookup
    assert store.add_samples(job, *KINDS) == ["cam/s/1"]
    store._resolve = real
    assert len(calls) >= 2  # it did look again, and folded
    assert store.event_samples("cam/s/2") == [] and duplicates(store.engine) == []
    assert sorted((r["kind"], r["seq"]) for r in store.event_samples("cam/s/1")) == sorted(
        (k, s) for k in KINDS for s in (3, 4)
    )
    assert [e["track_uid"] for e in store.events()] == ["cam/s/1"]


def test_a_merge_retries_when_a_sample_of_the_survivor_commits_under_it(pg_url):
    """PostgreSQL: a sample of the survivor's, inserted by another transaction after the
    merge dropped the duplicates but before it moved the rest, makes the move violate
    the index (it waits for that transaction, then fails): the move is retried and
    finds that sample. (SQLite: the merge holds the write lock; nothing comes between.)"""
    store = EventStore(pg_url)
    store.add_samples(sampled(0, tracks=(1,)), "identity")
    store.add_samples(sampled(5, tracks=(2,)), "identity")
    other = store.engine.connect()
    other.begin()
    other.execute(samples.insert(), _row("cam/s/1", "identity", 5, 0.9))  # not committed
    xid = other.execute(sa.text("SELECT txid_current()")).scalar()
    out: dict = {}

    def merge() -> None:
        try:
            out["result"] = store.merge_tracks("cam/s/2", "cam/s/1")
        except Exception as exc:  # noqa: BLE001  (reported below)
            out["error"] = exc

    t = threading.Thread(target=merge)
    t.start()
    # the merge's transaction waits for the other one: only the index check of its move
    # of track 2's (identity, 5) sample onto track 1 can (the other wrote nothing else)
    waiting = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
        " AND transactionid::text = :xid"
    )
    deadline = time.monotonic() + 30
    with store.engine.connect() as probe:
        while not probe.execute(waiting, {"xid": str(xid)}).scalar():
            assert time.monotonic() < deadline and t.is_alive(), out
            time.sleep(0.05)
    other.commit()
    other.close()
    t.join(30)
    assert "error" not in out, out.get("error")
    assert out["result"].folded
    got = sorted((r["kind"], r["seq"], r["quality"]) for r in store.event_samples("cam/s/1"))
    assert got == [("identity", 0, 0.5), ("identity", 5, 0.9)]  # the other's row stays
    assert store.event_samples("cam/s/2") == [] and duplicates(store.engine) == []
