"""Identities beyond the gallery: unknown people, renames, merges, corrections, relabelling.

* Tracks that match no enrolled person are clustered online, across streams, into
  persistent pseudo-identities ``unknown-N`` (by the quality-weighted mean encoding of each
  track, within ``recognition.unknown_threshold`` of a cluster's centroid). Tracks whose
  best face is too poor (``recognition.min_unknown_quality``) stay plain "unknown".
* ``rename("unknown-3", "alice")`` enrolls the cluster's encodings as alice;
  ``merge(a, b)`` joins two people or clusters; ``mark_not(event_id, "bob")`` stores the
  event's face as a negative example of bob (it stops that match, for this and similar
  faces).
* After any of these, every past event is re-fused from its stored encodings
  (:meth:`Identities.relabel_all`), without re-reading any video.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from pipeline.store import (
    Deleted,
    EventStore,
    encodings,
    events,
    negatives,
    people,
    samples,
    unknowns,
)

if TYPE_CHECKING:
    from pipeline.config import Config, RecognitionConfig

UNKNOWN_RE = re.compile(r"^unknown-(\d+)$")


class IdentityError(ValueError):
    """A rename/merge/correction that cannot be done (the message says why)."""


class Identities:
    """Identity operations on one event store, with the thresholds of the ``recognition``
    config section (its defaults are the only ones: there are none here)."""

    def __init__(
        self, store: EventStore, recognition: RecognitionConfig, min_gender_confidence: float
    ) -> None:
        self.store = store
        self.unknown_margin = recognition.unknown_margin
        self.min_name_quality = recognition.min_name_quality
        self.threshold = recognition.threshold
        self.unknown_threshold = recognition.unknown_threshold
        self.min_unknown_quality = recognition.min_unknown_quality
        self.min_gender_confidence = min_gender_confidence

    @classmethod
    def from_config(cls, store: EventStore, config: Config) -> Identities:
        """Identities as the pipeline configures them (recognition + attributes sections)."""
        return cls(store, config.recognition, config.attributes.min_gender_confidence)

    # ----- helpers -------------------------------------------------------------------
    def track_encoding(
        self, conn: sa.Connection, track_uid: str, min_quality: float = 0.0
    ) -> np.ndarray | None:
        """The quality-weighted mean encoding of a track (None if it has none, or if its
        best sample's quality is below ``min_quality``)."""
        rows = conn.execute(
            sa.select(samples.c.encoding, samples.c.quality).where(
                samples.c.track_uid == track_uid,
                samples.c.kind == "identity",
                samples.c.encoding.is_not(None),
            )
        ).all()
        if not rows:
            return None
        quality = [max(r.quality or 0.0, 0.0) for r in rows]
        if max(quality) < min_quality:
            return None
        weights = [max(q, 0.05) for q in quality]
        return np.average([json.loads(r.encoding) for r in rows], axis=0, weights=weights)

    def _members(self, conn: sa.Connection, name: str) -> list[str]:
        return [
            r[0]
            for r in conn.execute(sa.select(events.c.track_uid).where(events.c.unknown_id == name))
        ]

    def _recompute_centroid(self, conn: sa.Connection, name: str) -> None:
        vecs = [
            v
            for uid in self._members(conn, name)
            if (v := self.track_encoding(conn, uid)) is not None
        ]
        values: dict[str, Any] = {"events": len(vecs), "updated": time.time()}
        if vecs:
            values["centroid"] = json.dumps(np.mean(vecs, axis=0).tolist())
        conn.execute(unknowns.update().where(unknowns.c.name == name).values(**values))

    def _next_unknown(self, conn: sa.Connection) -> str:
        nums = [int(m.group(1)) for (n,) in conn.execute(sa.select(unknowns.c.name))
                if (m := UNKNOWN_RE.match(n))]  # fmt: skip
        return f"unknown-{max(nums, default=0) + 1}"

    def refresh_clusters(self, names: list[str]) -> None:
        """Recompute these unknown-N centroids (their member events changed)."""
        if not names:
            return
        with self.store.engine.begin() as conn:
            for name in names:
                self._recompute_centroid(conn, name)

    # ----- online clustering of unknown tracks ------------------------------------------
    def assign_unknown(self, track_uid: str) -> str | None:
        """Give an unrecognised track its ``unknown-N`` (joining or starting a cluster)."""
        with self.store.engine.begin() as conn:
            ev = conn.execute(
                sa.select(
                    events.c.person, events.c.unknown_id, events.c.stream, events.c.session,
                    events.c.first_frame, events.c.last_frame, events.c.first_seen,
                    events.c.last_seen,
                ).where(events.c.track_uid == track_uid)
            ).first()  # fmt: skip
            if ev is None or ev.person is not None or ev.unknown_id is not None:
                return ev.unknown_id if ev is not None else None
            # dark, blurred or tiny faces have encodings that sit "between" people: they
            # would chain strangers into one cluster, so they stay plain "unknown"
            vec = self.track_encoding(conn, track_uid, self.min_unknown_quality)
            if vec is None:
                return None
            clusters = conn.execute(
                sa.select(unknowns.c.name, unknowns.c.centroid).where(unknowns.c.events > 0)
            ).all()
            dists = sorted(
                (float(np.linalg.norm(np.asarray(json.loads(c.centroid)) - vec)), c.name)
                for c in clusters
            )
            # a cluster with a member seen in the same frames of the same stream is
            # someone else (one person is not in two places of a picture at once)
            busy = self._present_clusters(conn, track_uid, ev)
            free = [(d, n) for d, n in dists if n not in busy]
            best, best_d = (free[0][1], free[0][0]) if free else (None, np.inf)
            rivals = [d for d, n in dists if n != best]
            if (
                best_d <= self.unknown_threshold
                and rivals
                and min(rivals) - best_d < (self.unknown_margin)
            ):
                # about as near another cluster (or a person in the same frames): the
                # encoding cannot tell who it is (a blurred face, a false detection);
                # joining either could chain strangers
                return None
            now = time.time()
            if best is None or best_d > self.unknown_threshold:
                best = self._next_unknown(conn)
                conn.execute(
                    unknowns.insert().values(
                        name=best, centroid=json.dumps(vec.tolist()), events=0,
                        created=now, updated=now,
                    )
                )  # fmt: skip
            conn.execute(
                events.update().where(events.c.track_uid == track_uid).values(unknown_id=best)
            )
            self._recompute_centroid(conn, best)
            return best

    @staticmethod
    def _present_clusters(conn: sa.Connection, track_uid: str, ev: Any) -> set[str]:
        """unknown-N clusters with a member event on screen together with this one."""
        q = sa.select(events.c.unknown_id).where(
            events.c.unknown_id.is_not(None),
            events.c.stream == ev.stream,
            events.c.session == ev.session,
            events.c.track_uid != track_uid,
        )
        if ev.first_frame is not None and ev.last_frame is not None:
            q = q.where(
                events.c.first_frame <= ev.last_frame, events.c.last_frame >= ev.first_frame
            )
        else:
            q = q.where(events.c.first_seen <= ev.last_seen, events.c.last_seen >= ev.first_seen)
        return {r[0] for r in conn.execute(q)}

    def unknown_list(self) -> list[dict[str, Any]]:
        q = (
            sa.select(
                events.c.unknown_id.label("name"),
                sa.func.count().label("events"),
                sa.func.min(events.c.first_seen).label("first_seen"),
                sa.func.max(events.c.last_seen).label("last_seen"),
            )
            .where(events.c.unknown_id.is_not(None))
            .group_by(events.c.unknown_id)
            .order_by(sa.func.min(events.c.first_seen))
        )
        with self.store.engine.connect() as conn:
            out = [dict(r._mapping) for r in conn.execute(q)]
            for row in out:
                found = conn.execute(
                    sa.select(events.c.stream, events.c.snapshot, events.c.snapshot_quality)
                    .where(events.c.unknown_id == row["name"])
                ).all()  # fmt: skip
                row["streams"] = sorted({r.stream for r in found})
                snaps = [r for r in found if r.snapshot]
                row["snapshot"] = (
                    max(snaps, key=lambda r: r.snapshot_quality or 0).snapshot if snaps else None
                )
        return out

    # ----- user corrections ---------------------------------------------------------------
    def rename(self, old: str, new: str) -> int:
        """unknown-N -> a name (enrolls it), or rename an enrolled person. Relabels."""
        if not new or UNKNOWN_RE.match(new) or new == "unknown":
            raise IdentityError(f"{new!r} cannot be a person's name")
        if UNKNOWN_RE.match(old):
            self._enroll_unknown(old, new)
        else:
            with self.store.engine.begin() as conn:
                if (
                    conn.execute(sa.select(people.c.name).where(people.c.name == old)).first()
                    is None
                ):
                    raise IdentityError(f"no enrolled person or unknown identity named {old!r}")
                if conn.execute(sa.select(people.c.name).where(people.c.name == new)).first():
                    raise IdentityError(f"{new!r} exists already; use merge")
                conn.execute(people.insert().values(name=new, created=time.time()))
                conn.execute(encodings.update().where(encodings.c.person == old).values(person=new))
                conn.execute(negatives.update().where(negatives.c.person == old).values(person=new))
                conn.execute(people.delete().where(people.c.name == old))
                conn.execute(events.update().where(events.c.person == old).values(person=new))
        return self.relabel_all()

    def _enroll_unknown(self, unknown: str, name: str) -> None:
        with self.store.engine.begin() as conn:
            members = self._members(conn, unknown)
            if not members:
                raise IdentityError(f"no unknown identity named {unknown!r}")
            vecs = [
                (uid, v) for uid in members if (v := self.track_encoding(conn, uid)) is not None
            ]
        self.store.enroll(name, [v for _, v in vecs], [f"{unknown}:{uid}" for uid, _ in vecs])
        with self.store.engine.begin() as conn:
            conn.execute(
                events.update().where(events.c.unknown_id == unknown).values(unknown_id=None)
            )
            self._recompute_centroid(conn, unknown)

    def merge(self, keep: str, other: str) -> int:
        """Join ``other`` into ``keep`` (people or unknown-N, in any combination)."""
        if keep == other:
            raise IdentityError("cannot merge an identity with itself")
        ku, ou = bool(UNKNOWN_RE.match(keep)), bool(UNKNOWN_RE.match(other))
        if ku and ou:
            with self.store.engine.begin() as conn:
                if not self._members(conn, other):
                    raise IdentityError(f"no unknown identity named {other!r}")
                conn.execute(
                    events.update().where(events.c.unknown_id == other).values(unknown_id=keep)
                )
                self._recompute_centroid(conn, keep)
                self._recompute_centroid(conn, other)
            return self.relabel_all()
        if ou:  # a person absorbs an unknown: enroll it as that person
            self._require_person(keep)
            self._enroll_unknown(other, keep)
            return self.relabel_all()
        if ku:
            raise IdentityError(f"merge into the person: merge {other} {keep}")
        self._require_person(keep)
        self._require_person(other)
        with self.store.engine.begin() as conn:
            conn.execute(encodings.update().where(encodings.c.person == other).values(person=keep))
            conn.execute(negatives.update().where(negatives.c.person == other).values(person=keep))
            conn.execute(people.delete().where(people.c.name == other))
        return self.relabel_all()

    def _require_person(self, name: str) -> None:
        with self.store.engine.connect() as conn:
            if conn.execute(sa.select(people.c.name).where(people.c.name == name)).first() is None:
                raise IdentityError(f"no enrolled person named {name!r}")

    def mark_not(self, event_id: int, name: str) -> int:
        """ "Event EVENT_ID is not NAME": store a negative example and relabel."""
        with self.store.engine.begin() as conn:
            ev = conn.execute(sa.select(events.c.track_uid).where(events.c.id == event_id)).first()
            if ev is None:
                raise IdentityError(f"no event {event_id}")
            vec = self.track_encoding(conn, ev.track_uid)
            if vec is None:
                raise IdentityError(f"event {event_id} has no face encoding to learn from")
            conn.execute(
                negatives.insert().values(
                    person=name, encoding=json.dumps(vec.tolist()), track_uid=ev.track_uid,
                    created=time.time(),
                )
            )  # fmt: skip
            # a photo of `name` enrolled from this very track (a rename) was wrong too
            conn.execute(
                encodings.delete().where(
                    encodings.c.person == name, encodings.c.source.like(f"%:{ev.track_uid}")
                )
            )
        return self.relabel_all()

    # ----- erasure and retention -------------------------------------------------------------
    def erase(self, name: str) -> Deleted:
        """Forget a person or an ``unknown-N`` entirely.

        Deletes their enrolled encodings and negatives, every event named after them (or
        in the cluster) with its samples (face encodings) and aliases, encodings that
        were enrolled from those tracks, and the cluster; clusters that lost members
        get their centroid recomputed from the rest (or go, if none is left). Other
        events are relabelled against the smaller gallery. Returns what went, including
        the snapshot files to delete (the caller knows the snapshots directory).
        """
        unknown = bool(UNKNOWN_RE.match(name))
        with self.store.engine.begin() as conn:
            col = events.c.unknown_id if unknown else events.c.person
            uids = [r[0] for r in conn.execute(sa.select(events.c.track_uid).where(col == name))]
            known = conn.execute(
                sa.select(unknowns.c.name).where(unknowns.c.name == name)
                if unknown
                else sa.select(people.c.name).where(people.c.name == name)
            ).first()
            neg = conn.execute(sa.select(negatives.c.id).where(negatives.c.person == name)).first()
            if not uids and known is None and neg is None:
                what = "unknown identity" if unknown else "person"
                raise IdentityError(f"no {what} named {name!r}")
            deleted = self.store.delete_events(conn, uids)
            from_tracks = sa.or_(*(encodings.c.source.like(f"%:{uid}") for uid in uids))
            if uids:
                conn.execute(encodings.delete().where(from_tracks))
            if unknown:
                conn.execute(unknowns.delete().where(unknowns.c.name == name))
            else:
                conn.execute(encodings.delete().where(encodings.c.person == name))
                deleted.negatives += conn.execute(
                    negatives.delete().where(negatives.c.person == name)
                ).rowcount
                conn.execute(people.delete().where(people.c.name == name))
            # clusters that lost members, and empty ones (an unknown-N renamed to this
            # person keeps its row, and its centroid was this person's face)
            self._settle_clusters(conn, [c for c in deleted.clusters if c != name])
            self._settle_clusters(conn, self._empty_clusters(conn))
        self.relabel_all()
        return deleted

    def prune(self, older_than: float) -> Deleted:
        """Retention: delete events last seen before ``older_than`` (a time.time()), with
        their samples and aliases, and unknown-N clusters left without events. Negatives
        (user corrections) and the enrolled gallery are kept. Returns what went."""
        with self.store.engine.begin() as conn:
            uids = [
                r[0]
                for r in conn.execute(
                    sa.select(events.c.track_uid).where(events.c.last_seen < older_than)
                )
            ]
            deleted = self.store.delete_events(conn, uids, keep_negatives=True)
            self._settle_clusters(conn, deleted.clusters)
            old = self._empty_clusters(conn, older_than)
            conn.execute(unknowns.delete().where(unknowns.c.name.in_(old)))
            deleted.clusters = sorted(set(deleted.clusters) | set(old))
        return deleted

    @staticmethod
    def _empty_clusters(conn: sa.Connection, updated_before: float | None = None) -> list[str]:
        """unknown-N clusters without member events (optionally: unchanged since a time)."""
        q = sa.select(unknowns.c.name).where(
            ~sa.exists().where(events.c.unknown_id == unknowns.c.name)
        )
        if updated_before is not None:
            q = q.where(unknowns.c.updated < updated_before)
        return [r[0] for r in conn.execute(q)]

    def _settle_clusters(self, conn: sa.Connection, names: list[str]) -> None:
        """Clusters that lost members: recompute their centroid from the rest; an empty
        one keeps its row (its number is not reused) but not its centroid, a face
        template that must not outlive the faces it came from."""
        for name in names:
            if self._members(conn, name):
                self._recompute_centroid(conn, name)
            else:
                conn.execute(
                    unknowns.update()
                    .where(unknowns.c.name == name)
                    .values(centroid="[]", events=0, updated=time.time())
                )

    # ----- relabelling ----------------------------------------------------------------------
    def relabel_all(self) -> int:
        """Re-fuse every event from its stored samples; returns how many changed name."""
        gallery = self.store.gallery()
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(events.c.track_uid, events.c.person)).all()
        changed = 0
        for r in rows:
            values = self.store.refuse(
                r.track_uid, gallery, self.threshold, self.min_gender_confidence,
                self.min_name_quality,
            )  # fmt: skip
            if "person" in values and values["person"] != r.person:
                changed += 1
            if values.get("person") is None and "person" in values:
                self.assign_unknown(r.track_uid)
        return changed
