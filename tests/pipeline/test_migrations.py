"""The event store's Alembic migrations: new databases, stores made before Alembic, and
several processes opening one store at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from pipeline import migrations
from pipeline.record import Face, FrameRecord
from pipeline.store import EventStore, metadata

# The DDL main 24a7c2a's pipeline/store.py emitted (its metadata compiled for SQLite and
# PostgreSQL: identical but for SERIAL), written out, not imported: this is what existing
# databases hold. {frames}: the two columns a hand-written ALTER TABLE added later.
OLD_DDL = """
CREATE TABLE events (
    id {serial} NOT NULL, track_uid VARCHAR(200) NOT NULL, stream VARCHAR(100) NOT NULL,
    session VARCHAR(100) NOT NULL, track_id INTEGER NOT NULL, person VARCHAR(200),
    person_confidence FLOAT, person_distance FLOAT, unknown_id VARCHAR(50),
    first_seen FLOAT NOT NULL, last_seen FLOAT NOT NULL, n_frames INTEGER NOT NULL, {frames}
    ended BOOLEAN NOT NULL, snapshot VARCHAR(500), snapshot_quality FLOAT, age FLOAT,
    age_spread FLOAT, gender VARCHAR(10), gender_confidence FLOAT,
    identity_samples INTEGER NOT NULL, attribute_samples INTEGER NOT NULL,
    updated_at FLOAT NOT NULL, PRIMARY KEY (id), UNIQUE (track_uid));
CREATE INDEX ix_events_last_seen ON events (last_seen);
CREATE INDEX ix_events_person ON events (person);
CREATE INDEX ix_events_stream ON events (stream);
CREATE INDEX ix_events_unknown_id ON events (unknown_id);
CREATE TABLE negatives (
    id {serial} NOT NULL, person VARCHAR(200) NOT NULL, encoding TEXT NOT NULL,
    track_uid VARCHAR(200), created FLOAT NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_negatives_person ON negatives (person);
CREATE TABLE people (name VARCHAR(200) NOT NULL, created FLOAT NOT NULL, PRIMARY KEY (name));
CREATE TABLE samples (
    id {serial} NOT NULL, track_uid VARCHAR(200) NOT NULL, kind VARCHAR(20) NOT NULL,
    seq INTEGER NOT NULL, ts FLOAT NOT NULL, quality FLOAT, name VARCHAR(200), distance FLOAT,
    encoding TEXT, age FLOAT, p_female FLOAT, PRIMARY KEY (id));
CREATE INDEX ix_samples_track_uid ON samples (track_uid);
CREATE TABLE track_aliases (
    from_uid VARCHAR(200) NOT NULL, into_uid VARCHAR(200) NOT NULL, created FLOAT NOT NULL,
    PRIMARY KEY (from_uid));
CREATE TABLE unknowns (
    name VARCHAR(50) NOT NULL, centroid TEXT NOT NULL, events INTEGER NOT NULL,
    created FLOAT NOT NULL, updated FLOAT NOT NULL, PRIMARY KEY (name));
CREATE TABLE encodings (
    id {serial} NOT NULL, person VARCHAR(200) NOT NULL, encoding TEXT NOT NULL,
    source VARCHAR(500), created FLOAT NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(person) REFERENCES people (name));
CREATE INDEX ix_encodings_person ON encodings (person);
"""


ROWS = {
    "people": [{"name": "ann", "created": 1.0}],
    "encodings": [{"person": "ann", "encoding": "[0.1, 0.2]", "source": "ann.jpg", "created": 1.0}],
    "unknowns": [{"name": "unknown-1", "centroid": "[0.3]", "events": 1, "created": 2.0,
                  "updated": 3.0}],
    "negatives": [{"person": "ann", "encoding": "[0.4]", "track_uid": "cam/s/2", "created": 4.0}],
    "samples": [{"track_uid": "cam/s/1", "kind": "identity", "seq": 5, "ts": 10.5,
                 "quality": 0.7, "name": "ann", "distance": 0.3, "encoding": "[0.1, 0.2]"}],
    "track_aliases": [{"from_uid": "cam/s/3", "into_uid": "cam/s/1", "created": 5.0}],
}  # fmt: skip
EVENTS = [
    {"track_uid": "cam/s/1", "stream": "cam", "session": "s", "track_id": 1, "person": "ann",
     "first_seen": 10.0, "last_seen": 12.0, "n_frames": 7, "ended": True,
     "identity_samples": 1, "attribute_samples": 0, "updated_at": 12.0},
    {"track_uid": "cam/s/2", "stream": "cam", "session": "s", "track_id": 2,
     "unknown_id": "unknown-1", "first_seen": 11.0, "last_seen": 11.5, "n_frames": 2,
     "ended": False, "identity_samples": 0, "attribute_samples": 0, "updated_at": 11.5},
]  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return request.getfixturevalue("pg_url")


def make_old_store(url: str, frames: bool, aliases: bool = True) -> None:
    """A store as main's code left it, holding the rows of ``EVENTS`` and ``ROWS``.

    ``frames=False``: from before the frame columns; ``aliases=False``: from before
    ``track_aliases`` existed."""
    engine = sa.create_engine(url)
    ddl = OLD_DDL.format(
        serial="SERIAL" if engine.dialect.name == "postgresql" else "INTEGER",
        frames="first_frame INTEGER, last_frame INTEGER," if frames else "",
    )
    with engine.begin() as conn:
        for statement in ddl.split(";"):
            if statement.strip() and (aliases or "track_aliases" not in statement):
                conn.exec_driver_sql(statement)
        md = sa.MetaData()
        md.reflect(conn)
        for i, event in enumerate(EVENTS):
            extra = {"first_frame": 100 + i, "last_frame": 200 + i} if frames else {}
            conn.execute(md.tables["events"].insert(), {**event, **extra})
        for name, rows in ROWS.items():
            if name in md.tables:
                conn.execute(md.tables[name].insert(), rows)
    engine.dispose()


def assert_at_head(engine: sa.Engine) -> None:
    """Stamped at the newest revision, and the tables are exactly the models."""
    assert migrations.current(engine) == migrations.head()
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        (version,) = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    assert version[0] == migrations.head()


def test_a_new_database_is_created_at_head(url):
    store = EventStore(url)
    assert_at_head(store.engine)
    store.observe([FrameRecord(stream="cam", session="s", seq=4, ts=1.0,
                               faces=[Face(box=(0, 0, 9, 9), track_id=1)])])  # fmt: skip
    assert store.events()[0]["first_frame"] == 4


@pytest.mark.parametrize(
    ("frames", "aliases"),
    [(True, True), (False, True), (False, False)],
    ids=["main", "before-frame-columns", "before-track-aliases"],
)
def test_a_store_made_before_alembic_keeps_its_rows(url, frames, aliases):
    make_old_store(url, frames, aliases)
    store = EventStore(url)
    assert_at_head(store.engine)
    evs = store.events()
    assert [(e["track_uid"], e["person"], e["n_frames"], bool(e["ended"])) for e in evs] == [
        ("cam/s/1", "ann", 7, True), ("cam/s/2", None, 2, False)]  # fmt: skip
    assert evs[1]["unknown_id"] == "unknown-1"
    if frames:
        assert [(e["first_frame"], e["last_frame"]) for e in evs] == [(100, 200), (101, 201)]
    else:
        assert [(e["first_frame"], e["last_frame"]) for e in evs] == [(None, None)] * 2
    assert [(p["name"], p["photos"]) for p in store.people()] == [("ann", 1)]
    gallery = store.gallery()
    assert gallery.names == ["ann"] and gallery.negative_names == ["ann"]
    with store.engine.connect() as conn:
        for name, rows in ROWS.items():
            got = conn.execute(sa.text(f"SELECT COUNT(*) FROM {name}")).scalar()
            assert got == (len(rows) if aliases or name != "track_aliases" else 0), name
    # the adopted store works: a later sighting widens event 1, the alias still applies
    rec = FrameRecord(stream="cam", session="s", seq=300, ts=13.0,
                      faces=[Face(box=(0, 0, 9, 9), track_id=3 if aliases else 1)])  # fmt: skip
    store.observe([rec])
    ev = store.events()[0]
    assert (ev["last_seen"], ev["n_frames"], ev["last_frame"]) == (13.0, 8, 300)
    assert migrations.upgrade(store.engine) == migrations.head()  # a second open: no-op


def test_a_half_altered_events_table_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    make_old_store(url, frames=False)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE events ADD COLUMN first_frame INTEGER"))
    with pytest.raises(RuntimeError, match="first_frame"):
        migrations.upgrade(engine)
    assert migrations.current(engine) is None  # nothing stamped


def _open_store(url: str, barrier, seq: int) -> None:  # runs in a child process
    barrier.wait()
    store = EventStore(url)
    store.observe([FrameRecord(stream="cam", session="s", seq=seq, ts=float(seq),
                               faces=[Face(box=(0, 0, 9, 9), track_id=seq)])])  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("old", [False, True], ids=["new", "before-alembic"])
def test_processes_opening_one_store_at_once_upgrade_it_once(url, old):
    ctx = mp.get_context("fork")  # the children inherit the imports
    for _ in range(2):  # two rounds: the race is in the first milliseconds
        if old:
            make_old_store(url, frames=False)
        n = 3
        barrier = ctx.Barrier(n)
        procs = [ctx.Process(target=_open_store, args=(url, barrier, 10 + i)) for i in range(n)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0] * n
        engine = sa.create_engine(url)
        assert_at_head(engine)
        with engine.connect() as conn:
            uids = set(conn.execute(sa.text("SELECT track_uid FROM events")).scalars())
        assert {f"cam/s/{10 + i}" for i in range(n)} <= uids
        assert len(uids) == n + (2 if old else 0)
        with engine.begin() as conn:  # the next round starts from an empty database
            for table in ("alembic_version", *reversed(metadata.sorted_tables)):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {getattr(table, 'name', table)}"))
        engine.dispose()


def test_a_store_opens_while_another_process_holds_the_write_lock(tmp_path):
    """Opening switches a rollback-journal file to WAL, which SQLite refuses at once (no
    busy wait) while another connection holds the write lock: the open waits it out."""
    import sqlite3
    import threading

    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    make_old_store(url, frames=False)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE events SET n_frames = n_frames")
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    store = EventStore(url)  # raised "database is locked" before the wait
    assert_at_head(store.engine)
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    other.close()


def test_revisions_downgrade_and_upgrade_again_keeping_rows(url):
    from alembic import command

    store = EventStore(url)
    store.observe([FrameRecord(stream="cam", session="s", seq=4, ts=1.0,
                               faces=[Face(box=(0, 0, 9, 9), track_id=1)])])  # fmt: skip
    store.enroll("ann", [np.zeros(128)], ["ann.jpg"])
    with store.engine.connect() as conn, conn.begin():
        command.downgrade(migrations._config(conn), "0001")
    assert migrations.current(store.engine) == "0001"
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("events")}
    assert "first_frame" not in columns and "track_uid" in columns
    store.engine.dispose()
    store = EventStore(url)  # upgrades again
    assert_at_head(store.engine)
    (ev,) = store.events()
    assert ev["track_uid"] == "cam/s/1" and ev["first_frame"] is None
    assert [p["name"] for p in store.people()] == ["ann"]


def test_upgrade_from_0002_adds_the_erase_indexes_keeping_rows(url):
    engine = sa.create_engine(url)
    migrations.upgrade(engine, "0002")  # the head before erasure and retention
    with engine.begin() as conn:
        md = sa.MetaData()
        md.reflect(conn)
        for event in EVENTS:  # (the two rows have different columns)
            conn.execute(md.tables["events"].insert(), event)
        for name, rows in ROWS.items():
            conn.execute(md.tables[name].insert(), rows)
    indexes = {i["name"] for t in ("negatives", "track_aliases")
               for i in sa.inspect(engine).get_indexes(t)}  # fmt: skip
    assert "ix_negatives_track_uid" not in indexes
    engine.dispose()
    store = EventStore(url)  # upgrades to head
    assert_at_head(store.engine)
    indexes = {i["name"] for t in ("negatives", "track_aliases")
               for i in sa.inspect(store.engine).get_indexes(t)}  # fmt: skip
    assert {"ix_negatives_track_uid", "ix_track_aliases_into_uid"} <= indexes
    assert [e["track_uid"] for e in store.events()] == ["cam/s/1", "cam/s/2"]
    with store.engine.connect() as conn:
        for name, rows in ROWS.items():
            assert conn.execute(
                sa.select(sa.func.count()).select_from(sa.table(name))
            ).scalar() == len(rows), name


def test_upgrade_from_0005_adds_encoding_quality_and_old_photos_count(url):
    """Revision 0006: enrolled photos get a quality column; photos enrolled before it have
    none (NULL), and the open-set rule's enrolment gate counts them."""
    engine = sa.create_engine(url)
    migrations.upgrade(engine, "0005")
    with engine.begin() as conn:
        md = sa.MetaData()
        md.reflect(conn)
        conn.execute(md.tables["people"].insert(), ROWS["people"])
        conn.execute(md.tables["encodings"].insert(), ROWS["encodings"])
    assert "quality" not in {c["name"] for c in sa.inspect(engine).get_columns("encodings")}
    engine.dispose()
    store = EventStore(url)  # upgrades to head
    assert_at_head(store.engine)
    gallery = store.gallery()
    assert gallery.names == ["ann"] and gallery.quality == [None]
    store.enroll("ann", [np.array([0.1, 0.3])], ["ann2.jpg"], [0.07])
    assert store.gallery().quality == [None, pytest.approx(0.07)]
