"""The event store and the enrolled gallery (SQLAlchemy Core: SQLite or PostgreSQL).

SQLite (a file in the data directory) is the default; any SQLAlchemy URL works, e.g.
``postgresql+psycopg://user@host/db``, without changing the stages. The tables below are
the models; the database gets them through the Alembic revisions in
:mod:`pipeline.migrations`, applied when a store opens.

Tables:

* ``events``: one row per track (a person sighting): stream, first/last seen, frames,
  fused identity, age, gender, best snapshot.
* ``samples``: the identity (encoding, nearest name, distance) and age/gender samples
  of each track; events are re-fused from them, and the stored encodings allow past
  events to be relabelled without re-reading video. At most one per (track, kind,
  frame): a unique index, so that writers racing each other store a sample once.
* ``people`` and ``encodings``: the gallery.
* ``sessions``: each capture session's kind (live or not) and, for a video file, its
  frame rate: an event's frame numbers become seconds into the file.
* ``track_aliases``: tracks merged into an earlier one by re-identification (the
  tracker found, from the recognize stage's encodings, that a new track continues a lost
  one). Writes for the merged track's uid land on the surviving event, whichever order
  the sink jobs run in.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline import migrations
from pipeline.fusion import fuse_attributes, fuse_identity
from pipeline.record import Face, FrameRecord

metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("track_uid", sa.String(200), nullable=False, unique=True),
    sa.Column("stream", sa.String(100), nullable=False, index=True),
    sa.Column("session", sa.String(100), nullable=False),
    sa.Column("track_id", sa.Integer, nullable=False),
    sa.Column("person", sa.String(200), index=True),
    sa.Column("person_confidence", sa.Float),
    sa.Column("person_distance", sa.Float),
    sa.Column("unknown_id", sa.String(50), index=True),  # unknown-N cluster of an unknown track
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False, index=True),
    sa.Column("n_frames", sa.Integer, nullable=False, default=0),
    # sequence numbers (frame index within the capture session) of the first/last sighting
    sa.Column("first_frame", sa.Integer),
    sa.Column("last_frame", sa.Integer),
    sa.Column("ended", sa.Boolean, nullable=False, default=False),
    sa.Column("snapshot", sa.String(500)),
    sa.Column("snapshot_quality", sa.Float),
    # the context image: the whole frame of the snapshot (downscaled JPEG, no drawing) and
    # the boxes of that frame's faces in its pixels, JSON [[x, y, w, h, track_id], ...]
    sa.Column("context", sa.String(500)),
    sa.Column("context_faces", sa.Text),
    sa.Column("age", sa.Float),
    sa.Column("age_spread", sa.Float),
    sa.Column("gender", sa.String(10)),
    sa.Column("gender_confidence", sa.Float),
    sa.Column("identity_samples", sa.Integer, nullable=False, default=0),
    sa.Column("attribute_samples", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.Float, nullable=False),
)

samples = sa.Table(
    "samples",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("track_uid", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),  # identity | attributes
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("quality", sa.Float),
    sa.Column("name", sa.String(200)),
    sa.Column("distance", sa.Float),
    sa.Column("encoding", sa.Text),  # JSON list of floats
    sa.Column("age", sa.Float),
    sa.Column("p_female", sa.Float),
    # a face of one track in one frame is sampled at most once per kind: a sink job run
    # twice (retried, or recovered while its first worker still runs) stores it once
    sa.Index("uq_samples_track_uid_kind_seq", "track_uid", "kind", "seq", unique=True),
)

people = sa.Table(
    "people",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("created", sa.Float, nullable=False),
)

encodings = sa.Table(
    "encodings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("person", sa.String(200), sa.ForeignKey("people.name"), nullable=False, index=True),
    sa.Column("encoding", sa.Text, nullable=False),
    sa.Column("source", sa.String(500)),
    sa.Column("created", sa.Float, nullable=False),
    # the photo's (or enrolled track's best) face quality; NULL: not known (counts)
    sa.Column("quality", sa.Float),
)


unknowns = sa.Table(
    "unknowns",
    metadata,
    sa.Column("name", sa.String(50), primary_key=True),  # unknown-N
    sa.Column("centroid", sa.Text, nullable=False),  # JSON mean of its events' encodings
    sa.Column("events", sa.Integer, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.Column("updated", sa.Float, nullable=False),
)

negatives = sa.Table(
    "negatives",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("person", sa.String(200), nullable=False, index=True),
    sa.Column("encoding", sa.Text, nullable=False),  # a face that is NOT `person`
    sa.Column("track_uid", sa.String(200), index=True),
    sa.Column("created", sa.Float, nullable=False),
)

track_aliases = sa.Table(
    "track_aliases",
    metadata,
    sa.Column("from_uid", sa.String(200), primary_key=True),  # merged (younger) track
    sa.Column("into_uid", sa.String(200), nullable=False, index=True),  # the event that continues
    sa.Column("created", sa.Float, nullable=False),
)


sessions = sa.Table(
    "sessions",
    metadata,
    # one row per capture session the sink stored frames of: whether its source is live
    # and, for a file, its frame rate (an event's frame numbers / fps = seconds into it)
    sa.Column("stream", sa.String(100), primary_key=True),
    sa.Column("session", sa.String(100), primary_key=True),
    sa.Column("live", sa.Boolean),
    sa.Column("fps", sa.Float),
    sa.Column("created", sa.Float, nullable=False),
)


# Statements the sink runs for every job, built once: building a statement and generating
# its cache key cost more than running it on SQLite. Bound parameters: ``uids`` (a list),
# ``b_uid`` (one track uid; an UPDATE's SET columns come from the other parameters).
_ALIASES_OF = sa.select(track_aliases.c.from_uid, track_aliases.c.into_uid).where(
    track_aliases.c.from_uid.in_(sa.bindparam("uids", expanding=True))
)
_SAMPLES_OF = sa.select(
    samples.c.kind, samples.c.encoding, samples.c.age, samples.c.p_female, samples.c.quality
).where(samples.c.track_uid == sa.bindparam("b_uid"))
_SAMPLE_KEY = [samples.c.track_uid, samples.c.kind, samples.c.seq]  # the unique index
# a re-identification merge moves samples from one track (``b_from``) to another
# (``b_into``): those the survivor has already (same kind, same frame) are dropped first
_dup = samples.alias("dup")
_DROP_MOVED_DUPLICATES = samples.delete().where(
    samples.c.track_uid == sa.bindparam("b_from"),
    sa.exists().where(
        _dup.c.track_uid == sa.bindparam("b_into"),
        _dup.c.kind == samples.c.kind,
        _dup.c.seq == samples.c.seq,
    ),
)
_MOVE_SAMPLES = (
    samples.update()
    .where(samples.c.track_uid == sa.bindparam("b_from"))
    .values(track_uid=sa.bindparam("b_into"))
)
_UPDATE_EVENT = events.update().where(events.c.track_uid == sa.bindparam("b_uid"))
_SNAPSHOT_QUALITY = sa.select(events.c.snapshot_quality).where(
    events.c.track_uid == sa.bindparam("b_uid")
)
_EVENT_FILES = sa.select(events.c.snapshot, events.c.context).where(
    events.c.track_uid == sa.bindparam("b_uid")
)


@dataclass
class MergeResult:
    """What :meth:`EventStore.merge_tracks` did: the event a merged track folded into."""

    into_uid: str
    folded: bool  # an event of the merged track existed and was folded in
    unknown_ids: list[str] = field(default_factory=list)  # clusters whose members changed
    orphan_snapshot: str | None = None  # the losing event's snapshot file, no longer used
    orphan_context: str | None = None  # the losing event's context image, no longer used


@dataclass
class Deleted:
    """What :meth:`EventStore.delete_events` removed (for a report and the files)."""

    events: int = 0
    samples: int = 0
    negatives: int = 0
    snapshots: list[str] = field(default_factory=list)  # files the events used
    clusters: list[str] = field(default_factory=list)  # unknown-N that lost members

    def __iadd__(self, other: Deleted) -> Deleted:
        self.events += other.events
        self.samples += other.samples
        self.negatives += other.negatives
        self.snapshots += other.snapshots
        self.clusters = sorted(set(self.clusters) | set(other.clusters))
        return self


def delete_snapshot_files(paths: Iterable[str | None], root: Path) -> int:
    """Delete snapshot files, only those under ``root`` (the snapshots directory);
    returns how many were deleted. Empty directories they leave are removed too."""
    root = root.resolve()
    n = 0
    for p in paths:
        if not p:
            continue
        path = Path(p).resolve()
        if not path.is_relative_to(root) or path == root:
            continue
        if path.is_file():
            path.unlink()
            n += 1
        parent = path.parent
        while parent != root and parent.is_relative_to(root):
            try:
                parent.rmdir()  # only if empty
            except OSError:
                break
            parent = parent.parent
    return n


@dataclass
class Gallery:
    names: list[str]  # one per row of `matrix`
    matrix: np.ndarray  # (n, 128)
    # faces marked "this is not NAME": (name, encoding) rows
    negative_names: list[str] = field(default_factory=list)
    negatives: np.ndarray = field(default_factory=lambda: np.zeros((0, 128)))
    # per row of `matrix`: the photo's face quality (None: not known; the rule counts it)
    quality: list[float | None] | None = None

    def match(self, query: np.ndarray) -> list[tuple[str | None, float | None]]:
        """Nearest enrolled name and its distance for each query row."""
        if len(self.names) == 0:
            return [(None, None)] * len(query)
        d = np.linalg.norm(query[:, None, :] - self.matrix[None, :, :], axis=2)
        best = d.argmin(axis=1)
        return [(self.names[j], float(d[i, j])) for i, j in enumerate(best)]


class GalleryCache:
    """The gallery, re-read from the store when it changes (polled every ``poll_s``)."""

    def __init__(self, store: EventStore, poll_s: float = 5.0) -> None:
        self.store = store
        self.poll_s = poll_s
        self._gallery = store.gallery()
        self._version = store.gallery_version()
        self._checked = time.monotonic()

    def get(self) -> Gallery:
        if time.monotonic() - self._checked > self.poll_s:
            self._checked = time.monotonic()
            version = self.store.gallery_version()
            if version != self._version:
                self._gallery, self._version = self.store.gallery(), version
        return self._gallery


def _upsert(engine: Engine, table: sa.Table):  # type: ignore[no-untyped-def]
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover
        raise ValueError(f"unsupported database {engine.dialect.name}")
    return insert(table)


def _min_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _sample_row(
    rec: FrameRecord, face: Face, kind: str, alias: dict[str, str]
) -> dict[str, Any] | None:
    """The samples row of one face of ``kind`` (with its frame's ``stream`` and
    ``session``, which the table does not hold); None for an attributes sample without
    age or gender."""
    uid = rec.track_uid(face.track_id)  # type: ignore[arg-type]
    row: dict[str, Any] = {
        "track_uid": alias.get(uid, uid),
        "kind": kind,
        "seq": rec.seq,
        "ts": rec.ts,
        "quality": face.quality,
        "name": None,
        "distance": None,
        "encoding": None,
        "age": None,
        "p_female": None,
        "stream": rec.stream,
        "session": rec.session,
    }
    if kind == "identity":
        row.update(
            name=face.name,
            distance=face.distance,
            encoding=json.dumps(face.encoding) if face.encoding is not None else None,
        )
        return row
    if face.age is None or face.gender is None:
        return None
    conf = face.gender_confidence if face.gender_confidence is not None else 0.5
    row.update(age=face.age, p_female=conf if face.gender == "female" else 1 - conf)
    return row


def _track_id(track_uid: str) -> int:
    """The track number at the end of a ``stream/session/N`` uid."""
    return int(track_uid.rsplit("/", 1)[1])


_SPAN_OF = sa.select(
    events.c.stream, events.c.session, events.c.first_frame, events.c.last_frame,
    events.c.first_seen, events.c.last_seen,
).where(events.c.track_uid == sa.bindparam("b_uid"))  # fmt: skip
_OTHERS_OF = sa.select(
    events.c.id, events.c.track_uid, events.c.person, events.c.unknown_id,
    events.c.person_distance,
).where(
    events.c.stream == sa.bindparam("b_stream"),
    events.c.session == sa.bindparam("b_session"),
    events.c.track_uid != sa.bindparam("b_uid"),
)  # fmt: skip
# built once (co_present runs for every re-fused event): overlapping frames, or times
_OVERLAP_FRAMES = _OTHERS_OF.where(
    events.c.first_frame <= sa.bindparam("b_last_frame"),
    events.c.last_frame >= sa.bindparam("b_first_frame"),
).order_by(events.c.id)
_OVERLAP_TIMES = _OTHERS_OF.where(
    events.c.first_seen <= sa.bindparam("b_last_seen"),
    events.c.last_seen >= sa.bindparam("b_first_seen"),
).order_by(events.c.id)


def co_present(conn: sa.Connection, track_uid: str) -> list[sa.Row]:
    """Events seen in the same frames of the same stream as ``track_uid``'s (same stream
    and capture session, overlapping [first_frame, last_frame]; by time when frames are
    missing). Per-frame presence is not stored: overlapping ranges count as together.
    Rows: id, track_uid, person, unknown_id, person_distance."""
    ev = conn.execute(_SPAN_OF, {"b_uid": track_uid}).first()
    if ev is None:
        return []
    params = {"b_stream": ev.stream, "b_session": ev.session, "b_uid": track_uid}
    if ev.first_frame is not None and ev.last_frame is not None:
        q = _OVERLAP_FRAMES
        params.update(b_first_frame=ev.first_frame, b_last_frame=ev.last_frame)
    else:
        q = _OVERLAP_TIMES
        params.update(b_first_seen=ev.first_seen, b_last_seen=ev.last_seen)
    return list(conn.execute(q, params))


def _wal(cur: sqlite3.Cursor, timeout_s: float = 30.0) -> None:
    """Switch a SQLite file to write-ahead logging, waiting out other writers.

    Leaving rollback-journal mode needs the exclusive lock, and SQLite answers "database
    is locked" at once (no busy wait, to avoid a deadlock) while another connection holds
    the write lock, e.g. a process upgrading the schema as this one opens the store.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.02, 0.1))


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            _wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def _observe_set(ex: Any) -> dict[str, Any]:
    """The event columns an observation updates (``ex``: the upsert's excluded row)."""
    return {
        "first_seen": sa.case(
            (ex.first_seen < events.c.first_seen, ex.first_seen), else_=events.c.first_seen
        ),
        "last_seen": sa.case(
            (ex.last_seen > events.c.last_seen, ex.last_seen), else_=events.c.last_seen
        ),
        "first_frame": sa.case(
            (events.c.first_frame.is_(None), ex.first_frame),
            (ex.first_frame < events.c.first_frame, ex.first_frame),
            else_=events.c.first_frame,
        ),
        "last_frame": sa.case(
            (events.c.last_frame.is_(None), ex.last_frame),
            (ex.last_frame > events.c.last_frame, ex.last_frame),
            else_=events.c.last_frame,
        ),
        "n_frames": events.c.n_frames + ex.n_frames,
        "updated_at": ex.updated_at,
    }


class EventStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        migrations.upgrade(self.engine)  # creates or upgrades the schema (Alembic, under a lock)

    # ----- tracking observations --------------------------------------------------
    def _observe_stmt(self) -> Any:
        """The upsert that folds observations into events (built once: building and
        keying it cost more than running it)."""
        stmt = getattr(self, "_observe_upsert", None)
        if stmt is None:
            stmt = _upsert(self.engine, events)
            ex = stmt.excluded
            stmt = self._observe_upsert = stmt.on_conflict_do_update(
                index_elements=[events.c.track_uid],
                set_=_observe_set(ex),
            )
        return stmt

    def observe(self, records: Iterable[FrameRecord]) -> int:
        """Fold tracked faces into their events; returns the number of events touched."""
        records = list(records)
        raw = {rec.track_uid(f.track_id) for rec in records for f in rec.faces
               if f.track_id is not None}  # fmt: skip
        raw |= {rec.track_uid(t) for rec in records for t in rec.ended_tracks}
        with self.engine.connect() as conn:
            alias = self._resolve(conn, raw)
        agg: dict[str, dict[str, Any]] = {}
        ended: set[str] = set()
        for rec in records:
            for face in rec.faces:
                if face.track_id is None:
                    continue
                uid = alias.get(rec.track_uid(face.track_id), rec.track_uid(face.track_id))
                a = agg.setdefault(
                    uid,
                    {
                        "track_uid": uid,
                        "stream": rec.stream,
                        "session": rec.session,
                        "track_id": _track_id(uid),
                        "first_seen": rec.ts,
                        "last_seen": rec.ts,
                        "first_frame": rec.seq,
                        "last_frame": rec.seq,
                        "n_frames": 0,
                    },
                )
                a["first_seen"] = min(a["first_seen"], rec.ts)
                a["last_seen"] = max(a["last_seen"], rec.ts)
                a["first_frame"] = min(a["first_frame"], rec.seq)
                a["last_frame"] = max(a["last_frame"], rec.seq)
                a["n_frames"] += 1
                if face.track_id in rec.track_starts:  # its tentative frames count too
                    first_ts, hits, *first_seq = rec.track_starts[face.track_id]
                    a["first_seen"] = min(a["first_seen"], first_ts)
                    if first_seq:
                        a["first_frame"] = min(a["first_frame"], int(first_seq[0]))
                    a["n_frames"] += int(hits) - 1
            ended.update(alias.get(u, u) for u in map(rec.track_uid, rec.ended_tracks))
        now = time.time()
        with self.engine.begin() as conn:
            if agg:
                stmt = self._observe_stmt()
                conn.execute(
                    stmt,
                    [
                        {**a, "ended": False, "identity_samples": 0, "attribute_samples": 0,
                         "updated_at": now}
                        for a in agg.values()
                    ],
                )  # fmt: skip
            if ended:
                conn.execute(
                    events.update()
                    .where(events.c.track_uid.in_(sorted(ended)))
                    .values(ended=True, updated_at=now)
                )
        self._fold_late(raw - alias.keys())
        return len(agg)

    # ----- identity and attribute samples ------------------------------------------
    def _samples_upsert(self) -> Any:
        """The insert of a sampled track's event unless it exists (built once)."""
        stmt = getattr(self, "_samples_event", None)
        if stmt is None:
            stmt = self._samples_event = _upsert(self.engine, events).on_conflict_do_nothing(
                index_elements=[events.c.track_uid]
            )
        return stmt

    def _samples_insert(self) -> Any:
        """The insert of samples that skips those stored already (built once)."""
        stmt = getattr(self, "_samples_ignore", None)
        if stmt is None:
            stmt = self._samples_ignore = _upsert(self.engine, samples).on_conflict_do_nothing(
                index_elements=_SAMPLE_KEY
            )
        return stmt

    def add_samples(self, records: FrameRecord | list[FrameRecord], *kinds: str) -> list[str]:
        """Store one or both kinds of samples of frames of one stream session
        (``identity``, ``attributes``: :attr:`pipeline.record.Samples.kinds`) in one
        transaction; returns the track uids touched.

        Idempotent: a sample stored already (the same track's event, kind and frame: a
        face of one track in one frame is sampled at most once) is not stored again, so
        a retried sink job does not weigh its samples twice. The samples' unique index
        decides (the insert skips conflicts), so this holds for two processes running
        the same job at once too (an rq job recovered while its first worker still
        runs): the second to insert a sample waits for the first, then skips it."""
        if not kinds or any(k not in ("identity", "attributes") for k in kinds):
            raise ValueError(f"unknown sample kinds {kinds!r}")
        recs = [records] if isinstance(records, FrameRecord) else list(records)
        raw = {
            rec.track_uid(f.track_id) for rec in recs for f in rec.faces if f.track_id is not None
        }
        with self.engine.connect() as conn:
            alias = self._resolve(conn, raw)
        rows = []
        for kind_ in kinds:  # (rows of one kind together: identity first)
            for rec in recs:
                for face in rec.faces:
                    if face.track_id is None:
                        continue
                    row = _sample_row(rec, face, kind_, alias)
                    if row is not None:
                        rows.append(row)
        if not rows:
            return []
        now = time.time()
        touched = sorted({r["track_uid"] for r in rows})
        # a new event's row: its stream session, first and last sampled frame's time
        span: dict[str, tuple[str, str, float, float]] = {}
        for r in rows:
            uid, ts = r["track_uid"], r["ts"]
            had = span.get(uid)
            span[uid] = (
                (r["stream"], r["session"], ts, ts)
                if had is None
                else (had[0], had[1], min(had[2], ts), max(had[3], ts))
            )
        with self.engine.begin() as conn:
            conn.execute(
                self._samples_insert(),
                [{k: v for k, v in r.items() if k not in ("stream", "session")} for r in rows],
            )
            conn.execute(
                self._samples_upsert(),
                [
                    {
                        "track_uid": uid,
                        "stream": span[uid][0],
                        "session": span[uid][1],
                        "track_id": _track_id(uid),
                        "first_seen": span[uid][2],
                        "last_seen": span[uid][3],
                        "n_frames": 0,
                        "ended": False,
                        "identity_samples": 0,
                        "attribute_samples": 0,
                        "updated_at": now,
                    }
                    for uid in touched
                ],
            )
        late = self._fold_late(raw - alias.keys())
        return sorted(set(touched) - late.keys() | set(late.values()))

    def refuse(
        self,
        track_uid: str,
        gallery: Gallery,
        threshold: float,
        min_gender_confidence: float = 0.8,
        min_quality: float = 0.0,
        write: bool = True,
    ) -> dict[str, Any]:
        """Recompute an event's identity and attributes from all its samples, and store it
        (``write=False``: only say what the normal rule gives, co-occurrence aside).

        The track gets no name unless its best identity sample's quality reaches
        ``min_quality`` (dark, blurred, tiny faces have encodings that sit between people),
        and not a name that an event seen in the same frames of the same stream holds at a
        smaller distance (one person is not in two places of a picture at once). When this
        track is the nearer one, the other event loses the name: its track uid is listed in
        ``values["displaced"]`` (the caller gives it an unknown-N).
        """
        with self.engine.connect() as conn:
            rows = conn.execute(_SAMPLES_OF, {"b_uid": track_uid}).all()
        ident_rows = [r for r in rows if r.kind == "identity" and r.encoding]
        encs = [json.loads(r.encoding) for r in ident_rows]
        weights = [max(r.quality or 0.0, 0.05) for r in ident_rows]
        attrs = [r for r in rows if r.kind == "attributes"]
        values: dict[str, Any] = {"updated_at": time.time()}
        if encs:
            ident = fuse_identity(
                np.array(encs), gallery.names, gallery.matrix, threshold,
                gallery.negative_names, gallery.negatives, weights, gallery.quality,
            )  # fmt: skip
            name = ident.name
            if max((r.quality or 0.0) for r in ident_rows) < min_quality:
                name = None  # too poor to name anyone
            values.update(
                person=name,
                person_confidence=ident.agreement if name else None,
                person_distance=ident.distance,
                identity_samples=len(encs),
            )
            if name is not None:
                values["unknown_id"] = None
        if attrs:
            fused = fuse_attributes(
                [r.age for r in attrs], [r.p_female for r in attrs], min_gender_confidence
            )
            values.update(
                age=fused.age,
                age_spread=fused.age_spread,
                gender=fused.gender,
                gender_confidence=fused.gender_confidence,
                attribute_samples=len(attrs),
            )
        if not write:
            return values
        with self.engine.begin() as conn:
            name = values.get("person")
            displaced: list[str] = []
            if name is not None:
                rivals = [r for r in co_present(conn, track_uid) if r.person == name]
                if any((r.person_distance or 0.0) <= values["person_distance"] for r in rivals):
                    values.update(person=None, person_confidence=None)
                    values.pop("unknown_id", None)
                else:
                    displaced = [r.track_uid for r in rivals]
                    conn.execute(
                        events.update()
                        .where(events.c.track_uid.in_(displaced))
                        .values(person=None, person_confidence=None)
                    )
            conn.execute(_UPDATE_EVENT, {**values, "b_uid": track_uid})
        if displaced:
            values["displaced"] = displaced
        return values

    def snapshot_quality(self, track_uid: str) -> float | None:
        with self.engine.connect() as conn:
            track_uid = self._resolve(conn, {track_uid}).get(track_uid, track_uid)
            return conn.execute(_SNAPSHOT_QUALITY, {"b_uid": track_uid}).scalar()

    def set_snapshot(self, track_uid: str, path: str, quality: float) -> str | None:
        """Set an event's snapshot; returns the previous snapshot's path if it differs."""
        return self._set_file(track_uid, "snapshot", path, snapshot_quality=quality)

    def set_context(self, track_uid: str, path: str | None, faces: str | None) -> str | None:
        """Set an event's context image (``path``, ``faces`` JSON boxes; None clears it);
        returns the previous context image's path if it differs (the caller deletes it)."""
        return self._set_file(track_uid, "context", path, context_faces=faces)

    def set_snapshot_and_context(
        self, track_uid: str, path: str, quality: float, context: str, faces: str
    ) -> list[str]:
        """:meth:`set_snapshot` and :meth:`set_context` in one transaction; returns the
        previous files' paths that differ (the caller deletes them)."""
        return self._set_files(
            track_uid,
            {"snapshot": path, "snapshot_quality": quality, "context": context,
             "context_faces": faces},
        )  # fmt: skip

    def _set_file(self, track_uid: str, column: str, path: str | None, **extra: Any) -> str | None:
        """Point an event's image ``column`` at ``path`` (with ``extra`` columns); returns
        the previous file's path when it differs, for the caller to delete."""
        old = self._set_files(track_uid, {column: path, **extra})
        return old[0] if old else None

    def _set_files(self, track_uid: str, values: dict[str, Any]) -> list[str]:
        """Set an event's image columns (``snapshot``, ``context``, with their extra
        columns) to ``values``; returns the previous files' paths that differ."""
        with self.engine.begin() as conn:
            track_uid = self._resolve(conn, {track_uid}).get(track_uid, track_uid)
            before = conn.execute(_EVENT_FILES, {"b_uid": track_uid}).first()
            conn.execute(_UPDATE_EVENT, {**values, "b_uid": track_uid})
        if before is None:
            return []
        return [
            old
            for column, old in zip(("snapshot", "context"), before, strict=True)
            if column in values and old and old != values[column]
        ]

    # ----- re-identification merges -------------------------------------------------
    def merge_tracks(self, from_uid: str, into_uid: str) -> MergeResult:
        """Fold track ``from_uid``'s event into ``into_uid``'s, for good.

        Samples move (but for those of a frame the survivor has a sample of the same
        kind of: one per track, kind and frame), first/last seen widen, frame counts add
        up, the better snapshot stays; the merged event is deleted and ``from_uid``
        becomes an alias, so observations and samples of it still in flight land on the
        survivor. Idempotent, and safe in any order with those writes: a write that
        raced the merge is folded in by the writer (see ``_fold_late``). Events are not
        re-fused here: the caller re-fuses ``into_uid`` from its (now larger) set of
        samples.
        """
        if from_uid == into_uid:
            raise ValueError(f"cannot merge track {from_uid} into itself")
        with self.engine.begin() as conn:
            into_uid = self._resolve(conn, {into_uid}).get(into_uid, into_uid)
            if into_uid == from_uid:
                raise ValueError(f"merging {from_uid} would make an alias cycle")
            stmt = _upsert(self.engine, track_aliases).on_conflict_do_nothing(
                index_elements=[track_aliases.c.from_uid]
            )
            conn.execute(stmt, {"from_uid": from_uid, "into_uid": into_uid, "created": time.time()})
            # earlier merges into from_uid now point at the survivor too
            conn.execute(
                track_aliases.update()
                .where(track_aliases.c.into_uid == from_uid)
                .values(into_uid=into_uid)
            )
            return self._fold(conn, from_uid, into_uid)

    def _resolve(self, conn: sa.Connection, uids: set[str]) -> dict[str, str]:
        """``{uid: surviving uid}`` for those of ``uids`` that were merged away."""
        if not uids:
            return {}
        out: dict[str, str] = {}
        todo = set(uids)
        for _ in range(8):  # chains are short: merges re-point earlier aliases
            rows = conn.execute(_ALIASES_OF, {"uids": sorted(todo)}).all()
            if not rows:
                break
            step = {r.from_uid: r.into_uid for r in rows}
            for uid in uids:
                cur = out.get(uid, uid)
                if cur in step:
                    out[uid] = step[cur]
            todo = set(step.values())
        return out

    def _fold_late(self, written: set[str]) -> dict[str, str]:
        """Fold events written for uids that were merged while the write was running."""
        if not written:
            return {}
        with self.engine.connect() as conn:
            late = self._resolve(conn, written)
        for from_uid, into_uid in late.items():
            with self.engine.begin() as conn:
                self._fold(conn, from_uid, into_uid)
        return late

    def _move_samples(self, conn: sa.Connection, from_uid: str, into_uid: str) -> None:
        """Move ``from_uid``'s samples to ``into_uid``, but for those the survivor has
        already (same kind and frame: the unique index allows one), which are deleted.

        Those are a sink job's samples stored under both uids: the job ran once before
        the merge and once after it (or twice at once, one run's write racing the
        merge). On SQLite this transaction holds the write lock, so nothing comes
        between the delete and the move; on PostgreSQL another transaction may insert
        such a sample in between, and the move then violates the index: it is retried
        (in a savepoint), finding that sample this time."""
        params = {"b_from": from_uid, "b_into": into_uid}
        if conn.dialect.name != "postgresql":
            conn.execute(_DROP_MOVED_DUPLICATES, params)
            conn.execute(_MOVE_SAMPLES, params)
            return
        for attempt in range(5):
            try:
                with conn.begin_nested():
                    conn.execute(_DROP_MOVED_DUPLICATES, params)
                    conn.execute(_MOVE_SAMPLES, params)
                return
            except sa.exc.IntegrityError:
                if attempt == 4:
                    raise

    def _fold(self, conn: sa.Connection, from_uid: str, into_uid: str) -> MergeResult:
        self._move_samples(conn, from_uid, into_uid)
        conn.execute(
            negatives.update().where(negatives.c.track_uid == from_uid).values(track_uid=into_uid)
        )
        # DELETE .. RETURNING: of two concurrent folds, only one gets the row
        young = conn.execute(
            events.delete().where(events.c.track_uid == from_uid).returning(*events.c)
        ).first()
        if young is None:
            return MergeResult(into_uid, folded=False)
        y = young._mapping
        old = conn.execute(sa.select(events).where(events.c.track_uid == into_uid)).first()
        now = time.time()
        if old is None:
            conn.execute(
                events.insert().values(
                    {**{k: v for k, v in y.items() if k != "id"}, "track_uid": into_uid,
                     "track_id": _track_id(into_uid), "updated_at": now}
                )
            )  # fmt: skip
            return MergeResult(into_uid, True, [y["unknown_id"]] if y["unknown_id"] else [])
        o = old._mapping
        values: dict[str, Any] = {
            "first_seen": min(o["first_seen"], y["first_seen"]),
            "last_seen": max(o["last_seen"], y["last_seen"]),
            "first_frame": _min_opt(o["first_frame"], y["first_frame"]),
            "last_frame": _max_opt(o["last_frame"], y["last_frame"]),
            "n_frames": o["n_frames"] + y["n_frames"],
            # the merged track is the later part of the survivor: its state is current
            "ended": y["ended"] if y["last_seen"] >= o["last_seen"] else o["ended"],
            "identity_samples": o["identity_samples"] + y["identity_samples"],
            "attribute_samples": o["attribute_samples"] + y["attribute_samples"],
            "unknown_id": o["unknown_id"] or y["unknown_id"],
            "updated_at": now,
        }
        orphan, orphan_context = y["snapshot"], y["context"]
        if (y["snapshot_quality"] or -1.0) > (o["snapshot_quality"] or -1.0):
            # the context image is the snapshot's frame: it goes with it
            values.update(snapshot=y["snapshot"], snapshot_quality=y["snapshot_quality"],
                          context=y["context"], context_faces=y["context_faces"])  # fmt: skip
            orphan, orphan_context = o["snapshot"], o["context"]
        conn.execute(events.update().where(events.c.track_uid == into_uid).values(**values))
        clusters = sorted({c for c in (o["unknown_id"], y["unknown_id"]) if c})
        if orphan == values.get("snapshot", o["snapshot"]):
            orphan = None
        if orphan_context == values.get("context", o["context"]):
            orphan_context = None
        return MergeResult(into_uid, True, clusters, orphan, orphan_context)

    # ----- queries -------------------------------------------------------------------
    def events(
        self,
        person: str | None = None,
        stream: str | None = None,
        since: float | None = None,
        limit: int | None = None,
        event_id: int | None = None,
    ) -> list[dict[str, Any]]:
        q = sa.select(events).order_by(events.c.first_seen, events.c.id)
        q = q.where(*self._event_filters(person=person, stream=stream, since=since))
        if event_id is not None:
            q = q.where(events.c.id == event_id)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    # ----- gallery -------------------------------------------------------------------
    def enroll(
        self,
        name: str,
        vectors: Iterable[np.ndarray],
        sources: Iterable[str],
        quality: Iterable[float | None] | None = None,
    ) -> int:
        """Store photos (encodings) of ``name``; ``quality``: each one's face quality when
        known (the open-set rule's enrolment gate, ``recognition.min_enrol_quality``)."""
        now = time.time()
        vectors, sources = list(vectors), list(sources)
        qs = [None] * len(vectors) if quality is None else list(quality)
        rows = [
            {"person": name, "encoding": json.dumps([float(x) for x in v]), "source": s,
             "created": now, "quality": None if q is None else float(q)}
            for v, s, q in zip(vectors, sources, qs, strict=True)
        ]  # fmt: skip
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(people.c.name).where(people.c.name == name)).first()
            if not exists:
                conn.execute(people.insert().values(name=name, created=now))
            if rows:
                conn.execute(encodings.insert(), rows)
        return len(rows)

    def people(self) -> list[dict[str, Any]]:
        q = (
            sa.select(
                people.c.name, people.c.created, sa.func.count(encodings.c.id).label("photos")
            )
            .select_from(people.outerjoin(encodings, encodings.c.person == people.c.name))
            .group_by(people.c.name, people.c.created)
            .order_by(people.c.name)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def delete_events(
        self, conn: sa.Connection, track_uids: Iterable[str], keep_negatives: bool = False
    ) -> Deleted:
        """Delete these events and everything about their tracks: samples (with face
        encodings), negatives learnt from them (``keep_negatives``: kept, unlinked from
        the track), track aliases. Snapshot files are the caller's to delete
        (:func:`delete_snapshot_files`): the result lists them."""
        uids = sorted(set(track_uids))
        out = Deleted()
        for i in range(0, len(uids), 500):  # bounded IN lists
            chunk = uids[i : i + 500]
            rows = conn.execute(
                sa.select(events.c.snapshot, events.c.context, events.c.unknown_id).where(
                    events.c.track_uid.in_(chunk)
                )
            ).all()
            out.snapshots += [r.snapshot for r in rows if r.snapshot]
            out.snapshots += [r.context for r in rows if r.context]  # context images too
            out.clusters = sorted(set(out.clusters) | {r.unknown_id for r in rows if r.unknown_id})
            out.samples += conn.execute(
                samples.delete().where(samples.c.track_uid.in_(chunk))
            ).rowcount
            linked = negatives.c.track_uid.in_(chunk)
            if keep_negatives:
                conn.execute(negatives.update().where(linked).values(track_uid=None))
            else:
                out.negatives += conn.execute(negatives.delete().where(linked)).rowcount
            conn.execute(
                track_aliases.delete().where(
                    track_aliases.c.into_uid.in_(chunk) | track_aliases.c.from_uid.in_(chunk)
                )
            )
            out.events += conn.execute(
                events.delete().where(events.c.track_uid.in_(chunk))
            ).rowcount
        return out

    def remove_person(self, name: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(encodings.delete().where(encodings.c.person == name))
            return conn.execute(people.delete().where(people.c.name == name)).rowcount > 0

    def gallery(self) -> Gallery:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(encodings.c.person, encodings.c.encoding, encodings.c.quality)
            ).all()
            neg = conn.execute(sa.select(negatives.c.person, negatives.c.encoding)).all()

        def matrix(rs: list) -> np.ndarray:
            return np.array([json.loads(r.encoding) for r in rs]) if rs else np.zeros((0, 128))

        return Gallery(
            [r.person for r in rows], matrix(rows), [r.person for r in neg], matrix(neg),
            [r.quality for r in rows],
        )  # fmt: skip

    def gallery_version(self) -> tuple[int, ...]:
        """Changes whenever the gallery or its negatives do (cheap to poll)."""
        out: list[int] = []
        with self.engine.connect() as conn:
            for t in (encodings, negatives):
                row = conn.execute(
                    sa.select(sa.func.count(t.c.id), sa.func.coalesce(sa.func.max(t.c.id), 0))
                ).one()
                out += [int(row[0]), int(row[1])]
        return tuple(out)

    # ----- queries of the HTTP API and `facepipe events` (filters, paging, stats) ----
    def _event_filters(
        self,
        person: str | None = None,
        stream: str | None = None,
        since: float | None = None,
        until: float | None = None,
        min_confidence: float | None = None,
    ) -> list[Any]:
        """WHERE clauses of the event filters: ``person`` is a name, ``unknown`` (every
        unrecognised event) or an ``unknown-N``; an event is in [since, until] when it was
        seen in that span (last seen >= since, first seen <= until)."""
        out: list[Any] = []
        if person == "unknown":
            out.append(events.c.person.is_(None))
        elif person is not None and person.startswith("unknown-"):
            out.append(events.c.unknown_id == person)
        elif person is not None:
            out.append(events.c.person == person)
        if stream is not None:
            out.append(events.c.stream == stream)
        if since is not None:
            out.append(events.c.last_seen >= since)
        if until is not None:
            out.append(events.c.first_seen <= until)
        if min_confidence is not None:
            out.append(events.c.person_confidence >= min_confidence)
        return out

    def find_events(
        self,
        person: str | None = None,
        stream: str | None = None,
        since: float | None = None,
        until: float | None = None,
        min_confidence: float | None = None,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[dict[str, Any]]:
        """Events matching the filters, newest first (by first seen, then id) unless
        ``newest_first`` is false; ``limit``/``offset`` page through them."""
        where = self._event_filters(person, stream, since, until, min_confidence)
        order = (
            (events.c.first_seen.desc(), events.c.id.desc())
            if newest_first
            else (events.c.first_seen, events.c.id)
        )
        q = sa.select(events).where(*where).order_by(*order)
        if limit is not None:
            q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def count_events(
        self,
        person: str | None = None,
        stream: str | None = None,
        since: float | None = None,
        until: float | None = None,
        min_confidence: float | None = None,
    ) -> int:
        where = self._event_filters(person, stream, since, until, min_confidence)
        q = sa.select(sa.func.count()).select_from(events).where(*where)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    def event_by_id(self, event_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(events).where(events.c.id == event_id)).first()
        return None if row is None else dict(row._mapping)

    def events_by_uid(self, track_uids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``{track_uid: event row}`` of those uids that have an event."""
        uids = sorted(set(track_uids))
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(uids), 500):
                q = sa.select(events).where(events.c.track_uid.in_(uids[i : i + 500]))
                out.update({r.track_uid: dict(r._mapping) for r in conn.execute(q)})
        return out

    def event_samples(self, track_uid: str) -> list[dict[str, Any]]:
        """A track's samples in order, without their face encodings."""
        cols = [c for c in samples.c if c.name != "encoding"]
        q = sa.select(*cols).where(samples.c.track_uid == track_uid)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(samples.c.seq, samples.c.id))]

    def identity_exists(self, name: str) -> bool:
        """True if ``name`` is ``unknown``, an enrolled person, a name some event holds,
        or an ``unknown-N`` that exists (a cluster row or an event in it)."""
        if name == "unknown":
            return True
        with self.engine.connect() as conn:
            if name.startswith("unknown-"):
                checks = [
                    sa.select(unknowns.c.name).where(unknowns.c.name == name),
                    sa.select(events.c.id).where(events.c.unknown_id == name).limit(1),
                ]
            else:
                checks = [
                    sa.select(people.c.name).where(people.c.name == name),
                    sa.select(events.c.id).where(events.c.person == name).limit(1),
                ]
            return any(conn.execute(q).first() is not None for q in checks)

    def person_stats(self) -> dict[str, dict[str, Any]]:
        """``{person: {"events", "first_seen", "last_seen"}}`` over the named events."""
        q = (
            sa.select(
                events.c.person,
                sa.func.count().label("events"),
                sa.func.min(events.c.first_seen).label("first_seen"),
                sa.func.max(events.c.last_seen).label("last_seen"),
            )
            .where(events.c.person.is_not(None))
            .group_by(events.c.person)
        )
        with self.engine.connect() as conn:
            return {r.person: dict(r._mapping) for r in conn.execute(q)}

    def stream_stats(self) -> dict[str, dict[str, Any]]:
        """``{stream: {"events", "first_seen", "last_seen"}}`` over all events."""
        q = sa.select(
            events.c.stream,
            sa.func.count().label("events"),
            sa.func.min(events.c.first_seen).label("first_seen"),
            sa.func.max(events.c.last_seen).label("last_seen"),
        ).group_by(events.c.stream)
        with self.engine.connect() as conn:
            return {r.stream: dict(r._mapping) for r in conn.execute(q)}

    def samples_version(self) -> tuple[int, int, int]:
        """(samples, their largest id, track aliases): changes whenever a track's samples
        do (new samples, deletions, merges). Cheap: an index count, a primary-key max."""
        with self.engine.connect() as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(samples)).scalar()
            top = conn.execute(sa.select(sa.func.coalesce(sa.func.max(samples.c.id), 0))).scalar()
            aliases = conn.execute(sa.select(sa.func.count()).select_from(track_aliases)).scalar()
        return int(n or 0), int(top or 0), int(aliases or 0)

    def aliases(self) -> dict[str, str]:
        """``{merged track uid: the uid it continues as}`` (re-identification merges)."""
        with self.engine.connect() as conn:
            q = sa.select(track_aliases.c.from_uid, track_aliases.c.into_uid)
            return {r.from_uid: r.into_uid for r in conn.execute(q)}

    def sampled_tracks(self) -> set[str]:
        """Track uids that have samples (read from the samples' track index)."""
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(samples.c.track_uid).distinct()).scalars())

    def sample_key(self, sample_id: int) -> tuple[str, int, float] | None:
        """(kind, seq, ts) of a sample, or None: tells a row from a later one that got
        its id (SQLite reuses the ids of the newest rows once they are deleted)."""
        with self.engine.connect() as conn:
            q = sa.select(samples.c.kind, samples.c.seq, samples.c.ts).where(
                samples.c.id == sample_id
            )
            row = conn.execute(q).first()
        return None if row is None else (row.kind, int(row.seq), float(row.ts))

    def samples_after(self, after_id: int, upto: int | None = None) -> int:
        """How many samples have an id above ``after_id`` (and at most ``upto``)."""
        q = sa.select(sa.func.count()).select_from(samples).where(samples.c.id > after_id)
        if upto is not None:
            q = q.where(samples.c.id <= upto)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    def identity_encodings(
        self,
        after_id: int = 0,
        track_uids: Iterable[str] | None = None,
        upto: int | None = None,
    ) -> list[sa.Row]:
        """Identity samples with an encoding (rows: id, track_uid, encoding JSON, quality),
        by id; those after ``after_id`` (up to id ``upto``), or of the given tracks."""
        q = (
            sa.select(samples.c.id, samples.c.track_uid, samples.c.encoding, samples.c.quality)
            .where(samples.c.kind == "identity", samples.c.encoding.is_not(None))
            .order_by(samples.c.id)
        )
        if after_id:
            q = q.where(samples.c.id > after_id)
        if upto is not None:
            q = q.where(samples.c.id <= upto)
        with self.engine.connect() as conn:
            if track_uids is None:
                return list(conn.execute(q))
            uids = sorted(set(track_uids))
            rows: list[sa.Row] = []
            for i in range(0, len(uids), 500):
                rows += conn.execute(q.where(samples.c.track_uid.in_(uids[i : i + 500]))).all()
            return rows

    # ----- capture sessions (the video position of file sources) ---------------------
    def set_session(self, stream: str, session: str, live: bool | None, fps: float | None) -> None:
        """Record a capture session's kind and frame rate (what is known already is kept;
        what was missing is filled in)."""
        fps = float(fps) if fps and fps > 0 else None
        stmt = _upsert(self.engine, sessions)
        stmt = stmt.on_conflict_do_update(
            index_elements=[sessions.c.stream, sessions.c.session],
            set_={
                "live": sa.func.coalesce(sessions.c.live, stmt.excluded.live),
                "fps": sa.func.coalesce(sessions.c.fps, stmt.excluded.fps),
            },
        )
        with self.engine.begin() as conn:
            conn.execute(stmt, {"stream": stream, "session": session, "live": live, "fps": fps,
                                "created": time.time()})  # fmt: skip

    def with_positions(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` (events) with ``video_start_s`` and ``video_end_s``: seconds into the
        video file of the first and last sighting (frame number / the file's frame rate);
        None for live sources and sessions whose frame rate is not known."""
        pairs = sorted({(r["stream"], r["session"]) for r in rows})
        fps: dict[tuple[str, str], float] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(pairs), 200):
                chunk = pairs[i : i + 200]
                q = sa.select(sessions.c.stream, sessions.c.session, sessions.c.fps).where(
                    sa.tuple_(sessions.c.stream, sessions.c.session).in_(chunk),
                    sessions.c.live.is_(False),
                    sessions.c.fps.is_not(None),
                )
                fps.update({(r.stream, r.session): float(r.fps) for r in conn.execute(q)})
        for r in rows:
            f = fps.get((r["stream"], r["session"]))
            first, last = r.get("first_frame"), r.get("last_frame")
            r["video_start_s"] = None if f is None or first is None else round(first / f, 3)
            r["video_end_s"] = None if f is None or last is None else round(last / f, 3)
        return rows

    def ping(self) -> None:
        """Raise if the store cannot be reached."""
        with self.engine.connect() as conn:
            conn.execute(sa.select(1))
