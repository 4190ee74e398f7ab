"""From the sink's messages to notifications: what changed in which event, said once.

The sink calls :meth:`EventNotifier.after` once per message it has stored. The notifier
reads the events the message may have changed from the store and compares each with
what was last said about it, kept in Redis (``PREFIX:notify:event:TRACK_UID``, expiring
with the session's keys). What it tells:

* ``new``: the event got its identity (its first identity sample was fused): a known
  person's name, or unknown (with its ``unknown-N`` once clustered). This is the
  "person seen" notification; it also goes to the per-stream person topic.
* ``update``: the identity changed (another name, unknown -> a name, an ``unknown-N``
  assigned; these go to the person topic too) or age/gender became known.
* ``end``: the track ended (left the picture, a shot cut, the end of a file).

Only those changes count (not every frame's ``last_seen``), and the comparison and the
write are one atomic Redis ``GETSET``: a sink batch retried after a crash, or the same
state seen by two sinks, is told once. Delivery is at most once: a notification still
queued when its process dies is lost (the event itself is stored).
"""

from __future__ import annotations

import atexit
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pipeline.notify.base import Backend, Notification
from pipeline.record import Merge, Observations, Samples, SinkMessage, iso_utc, track_uid
from pipeline.store import events, track_aliases

if TYPE_CHECKING:
    from pipeline.bus import Bus
    from pipeline.config import NotifyConfig
    from pipeline.store import EventStore

log = logging.getLogger(__name__)


def event_payload(
    row: dict[str, Any], snapshots_root: Path | None = None, snapshot_url: str | None = None
) -> dict[str, Any]:
    """An event row as the notifications show it (docs/notifications.md)."""
    person = row.get("person")
    snapshot = row.get("snapshot")
    rel = None
    if snapshot:
        path = Path(snapshot)
        root = snapshots_root.resolve() if snapshots_root is not None else None
        rel = (
            path.resolve().relative_to(root).as_posix()
            if root is not None and path.resolve().is_relative_to(root)
            else path.name
        )
    ended = bool(row.get("ended"))

    def rounded(key: str, digits: int = 3) -> float | None:
        value = row.get(key)
        return None if value is None else round(float(value), digits)

    return {
        "id": row["id"],
        "stream": row["stream"],
        "session": row["session"],
        "track_id": row["track_id"],
        "track_uid": row["track_uid"],
        "person": person,
        "known": person is not None,
        "unknown_id": row.get("unknown_id") if person is None else None,
        "label": person or row.get("unknown_id") or "unknown",
        "confidence": rounded("person_confidence"),
        "distance": rounded("person_distance"),
        "age": rounded("age", 1),
        "age_spread": rounded("age_spread", 1),
        "gender": row.get("gender"),
        "gender_confidence": rounded("gender_confidence"),
        "start_time": row["first_seen"],
        "end_time": row["last_seen"] if ended else None,
        "first_seen": iso_utc(row["first_seen"]),
        "last_seen": iso_utc(row["last_seen"]),
        "frames": row.get("n_frames", 0),
        "ended": ended,
        "snapshot": rel,
        "snapshot_url": (
            snapshot_url.format(id=row["id"], path=rel) if snapshot_url and rel else None
        ),
    }


def _signature(after: dict[str, Any], identified: bool) -> str:
    """What a notification is about: identity, whether age/gender is known, ended."""
    return json.dumps(
        [identified, after["person"], after["unknown_id"], after["age"] is not None,
         after["ended"]]
    )  # fmt: skip


def touched_uids(message: SinkMessage) -> set[str]:
    """Track uids whose event ``message`` may have changed in a way worth telling."""
    match message:
        case Observations(records=records):  # only track ends matter here
            return {r.track_uid(t) for r in records for t in r.ended_tracks}
        case Samples(records=records):
            return {
                r.track_uid(f.track_id) for r in records for f in r.faces if f.track_id is not None
            }
        case Merge(stream=stream, session=session, into_id=into_id):
            return {track_uid(stream, session, into_id)}
    return set()


class NullNotifier:
    """Notifications off (no backend configured): every call does nothing."""

    def after(self, message: SinkMessage) -> None:
        pass

    def stream_status(self, stream: str, up: bool, reason: str | None = None) -> None:
        pass

    def close(self, timeout: float = 2.0) -> None:
        pass


class EventNotifier(NullNotifier):
    """The sink's notifier: changes of stored events to the configured backends."""

    def __init__(
        self,
        cfg: NotifyConfig,
        backends: list[Backend],
        bus: Bus,
        store: EventStore | None = None,
        snapshots_root: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.backends = backends
        self.bus = bus
        self.store = store
        self.snapshots_root = snapshots_root
        for b in backends:
            b.start()
        atexit.register(self.close)

    # ----- the sink's hook ---------------------------------------------------------
    def after(self, message: SinkMessage) -> None:
        """Tell what ``message`` (stored already) changed; never raises, never blocks
        on a backend (one store query, one or two Redis round trips per event)."""
        try:
            uids = touched_uids(message)
            rows = self.rows(uids) if uids else []
            for row in rows:
                for note in self.changes(row):
                    self.publish(note)
            if isinstance(message, Merge):
                gone = track_uid(message.stream, message.session, message.from_id)
                for note in self.merged(gone, rows[0] if rows else None):
                    self.publish(note)
        except Exception:
            log.exception("notify: cannot notify about a %s message", type(message).__name__)

    def rows(self, uids: Iterable[str]) -> list[dict[str, Any]]:
        """The current events of these track uids (merged tracks: their survivor's)."""
        assert self.store is not None, "an EventNotifier without a store tells no events"
        uids = sorted(set(uids))
        with self.store.engine.connect() as conn:
            alias = dict(
                conn.execute(
                    sa.select(track_aliases.c.from_uid, track_aliases.c.into_uid).where(
                        track_aliases.c.from_uid.in_(uids)
                    )
                ).all()
            )
            targets = sorted({alias.get(u, u) for u in uids})
            rows = conn.execute(sa.select(events).where(events.c.track_uid.in_(targets))).all()
        return [dict(r._mapping) for r in rows]

    def changes(self, row: dict[str, Any]) -> list[Notification]:
        """The notifications an event's current row calls for (and remember it)."""
        after = event_payload(row, self.snapshots_root, self.cfg.snapshot_url)
        identified = (row.get("identity_samples") or 0) > 0
        sig = _signature(after, identified)
        key = self.bus.key("notify", "event", row["track_uid"])
        pipe = self.bus.conn.pipeline(transaction=True)
        pipe.getset(f"{key}:sig", sig)
        pipe.expire(f"{key}:sig", self.bus.session_ttl_s)
        old_sig, _ = pipe.execute()
        if old_sig is not None and old_sig.decode() == sig:
            return []  # told already (a retried batch, another sink)
        old = json.loads(old_sig) if old_sig is not None else None
        pipe = self.bus.conn.pipeline(transaction=True)
        pipe.getset(f"{key}:last", json.dumps(after))
        pipe.expire(f"{key}:last", self.bus.session_ttl_s)
        before_raw, _ = pipe.execute()
        before = json.loads(before_raw) if before_raw else None
        out: list[Notification] = []
        was_identified = bool(old and old[0])
        if identified and (old is None or old[:4] != json.loads(sig)[:4]):
            person_seen = not was_identified or old[1:3] != [after["person"], after["unknown_id"]]
            kind = "update" if was_identified else "new"
            message = {"type": kind, "before": before if was_identified else None, "after": after}
            out.append(Notification(kind, row["stream"], message, person_seen=person_seen))
        if after["ended"] and not (old and old[4]):
            message = {"type": "end", "before": before, "after": after}
            out.append(Notification("end", row["stream"], message))
        return out

    def merged(self, from_uid: str, into: dict[str, Any] | None) -> list[Notification]:
        """The event of ``from_uid`` was folded into ``into``: if it was told as seen and
        not as ended, it ends now, with ``merged_into`` naming the survivor's event id."""
        key = self.bus.key("notify", "event", from_uid)
        old_sig = self.bus.conn.get(f"{key}:sig")
        if old_sig is None:
            return []
        old = json.loads(old_sig)
        if not old[0] or old[4]:
            return []  # never told as seen, or told as ended
        pipe = self.bus.conn.pipeline(transaction=True)
        pipe.getset(f"{key}:sig", json.dumps([*old[:4], True]))
        pipe.get(f"{key}:last")
        again, last_raw = pipe.execute()
        if again != old_sig or not last_raw:
            return []  # another sink told it meanwhile
        before = json.loads(last_raw)
        # the person did not leave: the track goes on as the survivor's (end_time stays null)
        after = {**before, "ended": True, "merged_into": into["id"] if into else None}
        message = {"type": "end", "before": before, "after": after}
        return [Notification("end", before["stream"], message)]

    # ----- streams (for the process that knows: the capture) ------------------------
    def stream_status(self, stream: str, up: bool, reason: str | None = None) -> None:
        """Tell that ``stream`` went up or down (the caller says each change once)."""
        message = {
            "type": "stream",
            "stream": stream,
            "status": "up" if up else "down",
            "time": iso_utc(time.time()),
            "reason": reason,
        }
        self.publish(Notification("stream", stream, message))

    # ----- delivery -------------------------------------------------------------------
    def allowed(self, note: Notification) -> bool:
        """``notify.only_known`` and ``notify.min_confidence`` (events only)."""
        if note.kind == "stream":
            return True
        after = note.message["after"]
        if not after["known"]:
            return not self.cfg.only_known
        conf = after["confidence"]
        return conf is None or conf >= self.cfg.min_confidence

    def publish(self, note: Notification) -> None:
        if self.allowed(note):
            for backend in self.backends:
                backend.offer(note)

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what is queued (up to ``timeout`` s per backend), then disconnect."""
        for backend in self.backends:
            try:
                backend.close(timeout)
            except Exception:
                log.exception("notify: closing %s failed", backend.name)
        self.backends = []
