"""Identities beyond the gallery: unknown people, renames, merges, corrections, relabelling.

* Tracks that match no enrolled person are clustered online, across streams, into
  persistent pseudo-identities ``unknown-N`` (by the quality-weighted mean encoding of each
  track, within ``recognition.unknown_threshold`` of a cluster's centroid). Tracks whose
  best face is too poor (``recognition.min_unknown_quality``) stay plain "unknown".
* ``rename("unknown-3", "alice")`` enrolls the cluster's encodings as alice;
  ``merge(a, b)`` joins two people or clusters; ``mark_not(event_id, "bob")`` stores the
  event's face as a negative example of bob (it stops that match, for this and similar
  faces).
* A correction touches only what it names: the events of the renamed or merged
  identities, of the person marked "not", plus, after an enrolment, the events
  :meth:`Identities.after_enrolment` moves (they must match under the normal rule, be
  clearly nearer the new photos than anyone else, and an unknown-N's member be within
  the clustering threshold). An identity never covers two tracks seen in the same
  frames of one stream. Every method returns :class:`Change` records (event, from, to,
  why), re-fused from stored encodings without re-reading any video.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from pipeline.fusion import FusedIdentity, fuse_identity
from pipeline.store import (
    Deleted,
    EventStore,
    Gallery,
    co_present,
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

# built once: the sink asks it for every unnamed event it re-fuses
_NAMES_OF = sa.select(events.c.person, events.c.unknown_id).where(
    events.c.track_uid == sa.bindparam("b_uid")
)


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
        self.rule = recognition.rule  # the open-set rule every re-match applies
        self.unknown_threshold = recognition.unknown_threshold
        self.min_unknown_quality = recognition.min_unknown_quality
        self.min_enrol_quality = recognition.min_enrol_quality
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
        rows = _identity_samples(conn, track_uid)
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
            ev = conn.execute(_NAMES_OF, {"b_uid": track_uid}).first()
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
            busy = {r.unknown_id for r in co_present(conn, track_uid) if r.unknown_id}
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
    def rename(self, old: str, new: str) -> list[Change]:
        """unknown-N -> a name (enrolls it), or rename an enrolled person.

        Only ``old``'s events change, plus, after naming an unknown-N, the events the
        enrolment rule moves (:meth:`after_enrolment`). Returns the changes."""
        if not new or UNKNOWN_RE.match(new) or new == "unknown":
            raise IdentityError(f"{new!r} cannot be a person's name")
        if UNKNOWN_RE.match(old):
            return self._name_unknown(old, new, f"renamed {old} to {new}")
        with self.store.engine.begin() as conn:
            if conn.execute(sa.select(people.c.name).where(people.c.name == old)).first() is None:
                raise IdentityError(f"no enrolled person or unknown identity named {old!r}")
            if conn.execute(sa.select(people.c.name).where(people.c.name == new)).first():
                raise IdentityError(f"{new!r} exists already; use merge")
            conn.execute(people.insert().values(name=new, created=time.time()))
            conn.execute(encodings.update().where(encodings.c.person == old).values(person=new))
            conn.execute(negatives.update().where(negatives.c.person == old).values(person=new))
            conn.execute(people.delete().where(people.c.name == old))
            changes, loose = self._move(conn, events.c.person == old, "person", new,
                                        f"renamed {old} to {new}")  # fmt: skip
        return self._settle(changes, loose)

    def _name_unknown(self, unknown: str, name: str, cause: str) -> list[Change]:
        """Name an unknown-N's events ``name`` and enroll their encodings (except those
        of events seen together with an event of ``name``), then :meth:`after_enrolment`."""
        with self.store.engine.begin() as conn:
            if not self._members(conn, unknown):
                raise IdentityError(f"no unknown identity named {unknown!r}")
            changes, loose = self._move(conn, events.c.unknown_id == unknown, "person", name, cause)
            named = [c.track_uid for c in changes if c.new == name]
            # only good enough tracks become photos: a dark, blurred or tiny face must not
            # widen the person's acceptance region (the open-set rule's enrolment quality)
            vecs = [
                (uid, v, _best_quality(conn, uid))
                for uid in named
                if (v := self.track_encoding(conn, uid, self.min_enrol_quality)) is not None
            ]
            self._recompute_centroid(conn, unknown)
        self.store.enroll(
            name, [v for _, v, _ in vecs], [f"{unknown}:{uid}" for uid, _, _ in vecs],
            [q for _, _, q in vecs],
        )  # fmt: skip
        changes = self._settle(changes, loose)
        return changes + self.after_enrolment(name, skip={c.track_uid for c in changes})

    def _move(
        self, conn: sa.Connection, which: Any, col: str, new: str, cause: str
    ) -> tuple[list[Change], list[str]]:
        """Give the events ``which`` selects ``new`` in column ``col`` (person or
        unknown_id), in id order, except events seen in the same frames as an event that
        holds ``new`` already: those are cleared (their track uids are returned, for
        :meth:`_settle`). A person name clears the unknown-N."""
        rows = conn.execute(
            sa.select(events.c.id, events.c.track_uid, events.c.person, events.c.unknown_id)
            .where(which)
            .order_by(events.c.id)
        ).all()  # fmt: skip
        changes, loose = [], []
        for r in rows:
            rivals = [x for x in co_present(conn, r.track_uid) if getattr(x, col) == new]
            old = _label(r.person, r.unknown_id)
            where = events.c.track_uid == r.track_uid
            if rivals and col == "unknown_id":
                continue  # stays in its cluster
            if rivals:
                conn.execute(
                    events.update()
                    .where(where)
                    .values(person=None, person_confidence=None, unknown_id=None)
                )
                changes.append(Change(r.id, r.track_uid, old, "unknown",
                                      f"co-occurs with event {rivals[0].id} ({new})"))  # fmt: skip
                loose.append(r.track_uid)
                continue
            values: dict[str, Any] = {col: new}
            if col == "person":
                values["unknown_id"] = None
            conn.execute(events.update().where(where).values(**values))
            changes.append(Change(r.id, r.track_uid, old, new, cause))
        return changes, loose

    def _settle(self, changes: list[Change], loose: list[str] | None = None) -> list[Change]:
        """Events left without a name by a correction join (or start) an unknown-N; their
        change records say where they went."""
        for uid in loose or []:
            got = self.assign_unknown(uid)
            for c in changes:
                if c.track_uid == uid and got:
                    c.new = got
        return [c for c in changes if c.old != c.new]

    def merge(self, keep: str, other: str) -> list[Change]:
        """Join ``other`` into ``keep`` (people or unknown-N, in any combination).

        Only ``other``'s events change (an event seen in the same frames as one of
        ``keep``'s does not join it), plus, when a person absorbs an unknown-N, the
        events the enrolment rule moves (:meth:`after_enrolment`)."""
        if keep == other:
            raise IdentityError("cannot merge an identity with itself")
        ku, ou = bool(UNKNOWN_RE.match(keep)), bool(UNKNOWN_RE.match(other))
        cause = f"merged {other} into {keep}"
        if ku and ou:
            with self.store.engine.begin() as conn:
                if not self._members(conn, other):
                    raise IdentityError(f"no unknown identity named {other!r}")
                changes, loose = self._move(
                    conn, events.c.unknown_id == other, "unknown_id", keep, cause
                )
                self._recompute_centroid(conn, keep)
                self._recompute_centroid(conn, other)
            return self._settle(changes, loose)
        if ou:  # a person absorbs an unknown: enroll it as that person
            self._require_person(keep)
            return self._name_unknown(other, keep, cause)
        if ku:
            raise IdentityError(f"merge into the person: merge {other} {keep}")
        self._require_person(keep)
        self._require_person(other)
        with self.store.engine.begin() as conn:
            conn.execute(encodings.update().where(encodings.c.person == other).values(person=keep))
            conn.execute(negatives.update().where(negatives.c.person == other).values(person=keep))
            conn.execute(people.delete().where(people.c.name == other))
            changes, loose = self._move(conn, events.c.person == other, "person", keep, cause)
        return self._settle(changes, loose)

    def _require_person(self, name: str) -> None:
        with self.store.engine.connect() as conn:
            if conn.execute(sa.select(people.c.name).where(people.c.name == name)).first() is None:
                raise IdentityError(f"no enrolled person named {name!r}")

    def mark_not(self, event_id: int, name: str) -> list[Change]:
        """ "Event EVENT_ID is not NAME": store a negative example; re-match that event and
        ``name``'s other events (only they can change: a negative only removes matches)."""
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
        return self.rematch(
            (events.c.person == name) | (events.c.id == event_id), f"event {event_id} is not {name}"
        )

    def rematch(self, which: Any, cause: str) -> list[Change]:
        """Re-match the events ``which`` selects under the normal rule (what the sink
        does for a new event: threshold, min_name_quality, negatives, co-occurrence);
        events left without a name join or start an unknown-N. Returns the changes."""
        gallery = self.store.gallery()
        with self.store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(events.c.id, events.c.track_uid, events.c.person, events.c.unknown_id)
                .where(which)
                .order_by(events.c.id)
            ).all()  # fmt: skip
        changes: list[Change] = []
        for r in rows:
            with self.store.engine.connect() as conn:
                around = [r, *co_present(conn, r.track_uid)]
            values = self.store.refuse(
                r.track_uid, gallery, self.rule, self.min_gender_confidence,
                self.min_name_quality,
            )  # fmt: skip
            loose = list(values.get("displaced", []))
            if values.get("person") is None and "person" in values:
                loose.append(r.track_uid)
            for uid in loose:
                self.assign_unknown(uid)
            changes += self._diff(around, r, cause, self.explain(r.track_uid, gallery))
        return changes

    def explain(self, track_uid: str, gallery: Gallery) -> FusedIdentity | None:
        """What the open-set rule says about a track's samples (as ``EventStore.refuse``
        fuses them), with its reason: distance, threshold, margin. None: no encodings."""
        with self.store.engine.connect() as conn:
            rows = _identity_samples(conn, track_uid)
        if not rows:
            return None
        return fuse_identity(
            np.array([json.loads(r.encoding) for r in rows]), gallery.names, gallery.matrix,
            self.rule, gallery.negative_names, gallery.negatives,
            [max(r.quality or 0.0, 0.05) for r in rows], gallery.quality,
        )  # fmt: skip

    def _diff(
        self, before: list[Any], main: Any, cause: str, ident: FusedIdentity | None
    ) -> list[Change]:
        """Change records of the events ``before`` (rows as they were: id, track_uid,
        person, unknown_id) after ``main`` was re-matched: ``main`` with its distance,
        the others lost a name to it (seen in the same frames, nearer)."""
        out = []
        with self.store.engine.connect() as conn:
            for r in before:
                now = conn.execute(
                    sa.select(events.c.person, events.c.unknown_id).where(
                        events.c.track_uid == r.track_uid
                    )
                ).one()
                old, new = _label(r.person, r.unknown_id), _label(now.person, now.unknown_id)
                if old == new:
                    continue
                if r.track_uid != main.track_uid:
                    why = f"{cause}: co-occurs with event {main.id}, nearer to {old}"
                elif ident is not None and now.person is not None:
                    why = f"{cause}: {ident.reason}"
                elif ident is not None and ident.name is None and ident.reason:
                    why = f"{cause}: {ident.reason}"  # the open-set rule abstained
                elif ident is not None and ident.distance is not None:
                    why = (
                        f"{cause}: {ident.reason}, not accepted (a face marked not them, "
                        "too poor a face, or a nearer face in the same frames)"
                    )
                else:
                    why = cause
                out.append(Change(r.id, r.track_uid, old, new, why))
        return out

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
            from_tracks = sa.or_(sa.false(), *(encodings.c.source.like(f"%:{uid}") for uid in uids))
            lost: set[str] = set()  # people who had photos enrolled from these tracks
            if uids:
                q = sa.select(encodings.c.person).where(from_tracks).distinct()
                lost = {r[0] for r in conn.execute(q)} - {name}
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
        for person in sorted(lost):
            self.relabel_person(person, f"erased {name}")
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
    def after_enrolment(self, name: str, skip: set[str] | None = None) -> list[Change]:
        """After ``name`` got new photos (enroll, or naming an unknown-N): move the other
        events that now match ``name``, and only those that

        * the normal rule names ``name`` (:meth:`EventStore.refuse`: the recognition
          threshold, min_name_quality, negatives),
        * are not seen in the same frames as an event of ``name``,
        * are clearly nearer ``name``'s photos than any other identity (another person's
          photos, an unknown-N's centroid) by at least ``unknown_margin``; an unknown-N
          member is judged by its cluster's centroid, which must also be within
          ``unknown_threshold`` of ``name``'s photos (the threshold that kept the
          clusters apart, never a looser one): a cluster moves as a whole or not at all.
        """
        skip = skip or set()
        gallery = self.store.gallery()
        names = np.asarray(gallery.names, dtype=object)
        mine = gallery.matrix[names == name]
        if not len(mine):
            return []
        changes: list[Change] = []
        touched: set[str] = set()
        with self.store.engine.begin() as conn:
            rows = conn.execute(
                sa.select(events.c.id, events.c.track_uid, events.c.person, events.c.unknown_id)
                .where(events.c.person.is_(None) | (events.c.person != name))
                .order_by(events.c.id)
            ).all()  # fmt: skip
            templates = {p: gallery.matrix[names == p] for p in set(gallery.names) - {name}} | {
                c.name: np.asarray(json.loads(c.centroid))[None, :]
                for c in conn.execute(
                    sa.select(unknowns.c.name, unknowns.c.centroid).where(unknowns.c.events > 0)
                )
            }

            def judged(vec: np.ndarray, itself: str | None) -> tuple[float, float, str | None]:
                """Distance to name's photos, to the nearest other identity, and who."""
                d = float(np.linalg.norm(mine - vec, axis=1).min())
                others = [(float(np.linalg.norm(t - vec, axis=1).min()), k)
                          for k, t in templates.items() if k != itself]  # fmt: skip
                return (d, *min(others, default=(np.inf, None)))

            for r in rows:
                if r.track_uid in skip:
                    continue
                values = self.store.refuse(
                    r.track_uid, gallery, self.rule, self.min_gender_confidence,
                    self.min_name_quality, write=False,
                )  # fmt: skip
                vec = self.track_encoding(conn, r.track_uid)
                if values.get("person") != name or vec is None:
                    continue
                if r.unknown_id in templates:
                    d, d2, second = judged(templates[r.unknown_id][0], r.unknown_id)
                    if d > self.unknown_threshold:
                        continue  # further than the clusters are apart
                    why = f"{r.unknown_id}'s centroid at {d:.3f} <= {self.unknown_threshold:.3f}"
                else:
                    d, d2, second = judged(vec, None)
                    ident = self.explain(r.track_uid, gallery)
                    why = ident.reason if ident is not None else f"at {d:.3f}"
                if d2 - d < self.unknown_margin:
                    continue  # about as near someone else: not clearly name
                if any(x.person == name for x in co_present(conn, r.track_uid)):
                    continue  # name is somebody else in those frames
                conn.execute(
                    events.update().where(events.c.track_uid == r.track_uid).values(**values)
                )
                if r.unknown_id:
                    touched.add(r.unknown_id)
                why = f"enrolled {name}: {why}"
                if second is not None:
                    why += f", next {second} at {d2:.3f} (margin {self.unknown_margin:.3f})"
                changes.append(Change(r.id, r.track_uid, _label(r.person, r.unknown_id), name, why))
            for c in touched:
                self._recompute_centroid(conn, c)
        return changes

    def relabel_person(self, name: str, cause: str) -> list[Change]:
        """Re-match the events named ``name`` (their photos changed or went)."""
        return self.rematch(events.c.person == name, cause)


@dataclass
class Change:
    """One event a correction relabelled: from what to what, and why."""

    event: int  # the event's id
    track_uid: str
    old: str  # a person, an unknown-N or "unknown"
    new: str
    reason: str

    def line(self) -> str:
        return f"event {self.event}: {self.old} -> {self.new} ({self.reason})"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _label(person: str | None, unknown_id: str | None) -> str:
    return person or unknown_id or "unknown"


def _best_quality(conn: sa.Connection, track_uid: str) -> float | None:
    """The best face quality among a track's identity samples (None: none known)."""
    qs = [r.quality for r in _identity_samples(conn, track_uid) if r.quality is not None]
    return max(qs) if qs else None


def _identity_samples(conn: sa.Connection, track_uid: str) -> list[Any]:
    """The identity samples of a track that carry an encoding: (encoding, quality) rows."""
    return conn.execute(
        sa.select(samples.c.encoding, samples.c.quality).where(
            samples.c.track_uid == track_uid,
            samples.c.kind == "identity",
            samples.c.encoding.is_not(None),
        )
    ).all()
