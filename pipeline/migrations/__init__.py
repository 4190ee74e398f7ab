"""Schema migrations of the event store (Alembic), applied when a store opens.

:class:`pipeline.store.EventStore` calls :func:`upgrade` at start, so a new database gets
the whole schema and an older one the revisions it lacks. The Alembic environment ships
inside the package (``env.py``, ``versions/``) and is configured here in code: no
``alembic.ini``. ``facepipe db current`` and ``facepipe db upgrade`` run it by hand.

Stores made before facepipe used Alembic (no ``alembic_version`` table) are adopted: the
tables that version would have created are completed, the database is stamped with the
revision its ``events`` columns match, and the later revisions run.

Several processes may open the same store at once (the stage workers do): the upgrade
runs in one transaction that first takes a lock (``BEGIN IMMEDIATE`` on SQLite, a
transaction-level advisory lock on PostgreSQL), so the others wait, then find the schema
current. DDL is transactional on both, so a failed upgrade leaves nothing half done.

To change the schema: edit the tables in :mod:`pipeline.store`, then add a revision file
in ``versions/`` (next number, ``down_revision`` the previous one) whose ``upgrade`` makes
the same change; ``tests/test_migrations.py`` checks that the revisions end at the
models.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent
# revision of a pre-Alembic store whose events table has / lacks the frame columns
_LEGACY = {True: "0002", False: "0001"}
_PG_LOCK_KEY = 0x66_61_63_65_70_69_70_65  # "facepipe"


def _config(conn: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = conn
    return cfg


@functools.cache  # the revision files do not change while a process runs
def head() -> str:
    """The newest revision."""
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    """The database's revision (``None``: new, or made before Alembic)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _adopt_legacy(conn: sa.Connection, cfg: Config) -> str | None:
    """Stamp a store made before Alembic; returns the revision it was stamped with."""
    insp = sa.inspect(conn)
    if insp.has_table("alembic_version") or not insp.has_table("events"):
        return None
    cols = {c["name"] for c in insp.get_columns("events")}
    frames = {"first_frame", "last_frame"} & cols
    if len(frames) == 1:
        raise RuntimeError(f"events table has only {frames.pop()}: not a schema facepipe made")
    baseline = ScriptDirectory.from_config(cfg).get_revision("0001")
    assert baseline is not None
    baseline.module.METADATA.create_all(conn, checkfirst=True)  # as its create_all would
    rev = _LEGACY[bool(frames)]
    command.stamp(cfg, rev)
    return rev


def _locking_engine(engine: Engine) -> tuple[Engine, bool]:
    """The engine to upgrade with, and whether it is a new one (to dispose of after).

    SQLite files get their own engine whose transactions take the write lock first;
    PostgreSQL takes an advisory lock instead, and in-memory SQLite has no other users.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return engine, False
    # pysqlite starts transactions lazily and not before DDL; take over: BEGIN IMMEDIATE
    # takes the write lock at once, so DDL and the version check are one locked unit.
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"timeout": 60})

    @sa.event.listens_for(eng, "connect")
    def _autocommit_driver(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None

    @sa.event.listens_for(eng, "begin")
    def _begin_immediate(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return eng, True


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the database to ``revision``; returns the revision it was at before (for a
    store made before Alembic: the revision its tables matched).

    Returns at once, taking no lock, when the database is at ``revision`` already.
    """
    target = head() if revision == "head" else revision
    before = current(engine)
    if before == target:
        return before
    eng, own = _locking_engine(engine)
    try:
        with eng.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
            cfg = _config(conn)
            before = MigrationContext.configure(conn).get_current_revision()
            before = _adopt_legacy(conn, cfg) or before
            command.upgrade(cfg, revision)
    finally:
        if own:
            eng.dispose()
    return before
