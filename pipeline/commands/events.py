"""`facepipe events`: query the person-event log."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

import click

from pipeline.commands import Context, pass_ctx

_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float | None = None) -> float:
    """``1h``, ``30m``, ``2d``, ``90s``, ``1w`` ago, or an ISO-8601 time (local if naive)."""
    now = time.time() if now is None else now
    m = _REL.match(value.strip())
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: use a duration like 30m, 1h, 2d or an ISO time like 2026-11-25T14:00",
            param_hint="--since",
        ) from None
    return dt.timestamp() if dt.tzinfo else dt.astimezone().timestamp()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_json(ev: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": ev["id"],
        "person": ev["person"] or "unknown",
        "unknown_id": ev.get("unknown_id"),
        "person_confidence": ev["person_confidence"],
        "stream": ev["stream"],
        "session": ev["session"],
        "track": ev["track_id"],
        "first_seen": iso(ev["first_seen"]),
        "last_seen": iso(ev["last_seen"]),
        "frames": ev["n_frames"],
        "first_frame": ev.get("first_frame"),
        "last_frame": ev.get("last_frame"),
        "ended": bool(ev["ended"]),
        "age": None if ev["age"] is None else round(ev["age"], 1),
        "age_spread": None if ev["age_spread"] is None else round(ev["age_spread"], 1),
        "gender": ev["gender"] or "unknown",
        "gender_confidence": ev["gender_confidence"],
        "identity_samples": ev["identity_samples"],
        "attribute_samples": ev["attribute_samples"],
        "snapshot": ev["snapshot"],
    }


@click.command()
@click.option("--person", help="only this person ('unknown' for unrecognised people)")
@click.option("--stream", help="only this stream")
@click.option("--since", help="only events seen since: 30m, 1h, 2d, or an ISO time")
@click.option("--limit", type=int, help="at most this many events")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option(
    "--not",
    "not_",
    nargs=2,
    metavar="NAME EVENT_ID",
    help="correct: event EVENT_ID is not NAME (a negative example; relabels)",
)
@pass_ctx
def events(
    ctx: Context, person: str | None, stream: str | None, since: str | None, limit: int | None,
    as_json: bool, not_: tuple[str, str] | None,
) -> None:  # fmt: skip
    """List person events (one per track): who, where, when, age, gender, snapshot.

    --person takes a name, 'unknown' (every unrecognised event) or an unknown-N.
    """
    from pipeline.store import EventStore

    store = EventStore(ctx.config.store_url)
    if not_:
        from pipeline.commands.gallery import identities
        from pipeline.identities import IdentityError

        name, event_id = not_
        if not event_id.isdigit():
            raise click.BadParameter(f"{event_id!r} is not an event id", param_hint="--not")
        try:
            changed = identities(ctx).mark_not(int(event_id), name)
        except IdentityError as exc:
            raise click.ClickException(str(exc)) from None
        (ev,) = store.events(event_id=int(event_id))
        now = ev["person"] or ev["unknown_id"] or "unknown"
        click.echo(f"event {event_id} is not {name}: now {now}; {changed} event(s) relabelled")
        return
    rows = store.events(
        person=person, stream=stream, since=parse_since(since) if since else None, limit=limit
    )
    if as_json:
        for ev in rows:
            click.echo(json.dumps(event_json(ev)))
        return
    if not rows:
        click.echo("no events")
        return
    click.echo(f"{'id':>5} {'person':<22} {'stream':<14} {'first seen (local)':<19} "
               f"{'dur s':>6} {'frames':>6} {'age':>7} {'gender':<8} snapshot")  # fmt: skip
    for ev in rows:
        e = event_json(ev)
        first = datetime.fromtimestamp(ev["first_seen"]).strftime("%Y-%m-%d %H:%M:%S")
        age = "-" if e["age"] is None else f"{e['age']:.0f}±{e['age_spread']:.0f}"
        who = (e["unknown_id"] or e["person"]) + (
            f" ({e['person_confidence']:.0%})" if e["person_confidence"] is not None else ""
        )
        click.echo(
            f"{e['id']:>5} {who:<22.22} {e['stream']:<14.14} {first:<19} "
            f"{ev['last_seen'] - ev['first_seen']:>6.1f} {e['frames']:>6} {age:>7} "
            f"{e['gender']:<8} {e['snapshot'] or '-'}"
        )


COMMANDS = [events]
