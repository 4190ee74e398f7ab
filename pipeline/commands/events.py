"""`facepipe events`: query the person-event log."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from typing import Any

import click

from pipeline.commands import Context, pass_ctx
from pipeline.record import iso_utc as iso

_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float | None = None, param_hint: str = "--since") -> float:
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
            param_hint=param_hint,
        ) from None
    return dt.timestamp() if dt.tzinfo else dt.astimezone().timestamp()


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
        "video_start_s": ev.get("video_start_s"),
        "video_end_s": ev.get("video_end_s"),
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
@click.option("--until", help="only events seen until: 30m, 1h, 2d (ago), or an ISO time")
@click.option("--limit", type=click.IntRange(min=1), help="the newest N events")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.option(
    "--not",
    "not_",
    nargs=2,
    metavar="NAME EVENT_ID",
    help="correct: event EVENT_ID is not NAME (a negative example; relabels that event "
    "and NAME's events that look like it, one line per change)",
)
@pass_ctx
def events(
    ctx: Context, person: str | None, stream: str | None, since: str | None, until: str | None,
    limit: int | None, as_json: bool, not_: tuple[str, str] | None,
) -> None:  # fmt: skip
    """List person events (one per track), oldest first: who, where, when, age, gender,
    snapshot. --limit N shows the newest N.

    --person takes a name, 'unknown' (every unrecognised event) or an unknown-N; a name
    nobody has is an error. The "frames" column is the event's first and last frame
    number within its capture session (for a video file: frames into the file), "video s"
    the same in seconds into a video file (frame / the file's frame rate; "-" for live
    sources).
    """
    from pipeline.store import EventStore

    store = EventStore(ctx.config.store_url)
    if not_:
        from pipeline.commands._identities import identities
        from pipeline.identities import IdentityError

        name, event_id = not_
        if not event_id.isdigit():
            raise click.BadParameter(f"{event_id!r} is not an event id", param_hint="--not")
        from pipeline.commands._identities import report

        try:
            changes = identities(ctx).mark_not(int(event_id), name)
        except IdentityError as exc:
            raise click.ClickException(str(exc)) from None
        (ev,) = store.events(event_id=int(event_id))
        now = ev["person"] or ev["unknown_id"] or "unknown"
        report(f"event {event_id} is not {name}: now {now}", changes, as_json)
        return
    if person is not None and not store.identity_exists(person):
        raise click.ClickException(
            f"no person or unknown identity named {person!r} (see `facepipe people` and "
            "`facepipe unknowns`)"
        )
    t_since = parse_since(since) if since else None
    t_until = parse_since(until, param_hint="--until") if until else None
    rows = store.find_events(
        person=person, stream=stream, since=t_since, until=t_until, limit=limit
    )[::-1]  # newest first from the store: the newest N, shown oldest first
    store.with_positions(rows)  # seconds into the file, for video files
    if as_json:
        for ev in rows:
            click.echo(json.dumps(event_json(ev)))
        return
    if not rows:
        click.echo("no events")
        return
    click.echo(table(rows))


def video_span(e: dict[str, Any]) -> str:
    """``12.4-15.0``: seconds into the video file of an event's first and last sighting;
    ``-`` for a live source (or a file whose frame rate is not known)."""
    start, end = e.get("video_start_s"), e.get("video_end_s")
    if start is None:
        return "-"
    return f"{start:.1f}-{end:.1f}" if end is not None else f"{start:.1f}-?"


def table(rows: list[dict[str, Any]]) -> str:
    """The event table: columns as wide as their widest value (names are never cut)."""
    head = ("id", "person", "stream", "first seen (local)", "dur s", "frames", "video s",
            "count", "age", "gender", "snapshot")  # fmt: skip
    body = []
    for ev in rows:
        e = event_json(ev)
        first = datetime.fromtimestamp(ev["first_seen"]).strftime("%Y-%m-%d %H:%M:%S")
        age = "-" if e["age"] is None else f"{e['age']:.0f}±{e['age_spread']:.0f}"
        who = (e["unknown_id"] or e["person"]) + (
            f" ({e['person_confidence']:.0%})" if e["person_confidence"] is not None else ""
        )
        span = (
            "-"
            if e["first_frame"] is None
            else f"{e['first_frame']}-{e['last_frame'] if e['last_frame'] is not None else '?'}"
        )
        body.append((str(e["id"]), who, e["stream"], first,
                     f"{ev['last_seen'] - ev['first_seen']:.1f}", span, video_span(e),
                     str(e["frames"]), age, e["gender"], e["snapshot"] or "-"))  # fmt: skip
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    right = {0, 4, 5, 6, 7, 8}  # numbers
    lines = []
    for r in [head, *body]:
        cells = [
            r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i])
            for i in range(len(head) - 1)
        ]
        lines.append(" ".join([*cells, r[-1]]))
    return "\n".join(lines)


COMMANDS = [events]
