"""Helpers the identity commands share (people, unknowns, enroll, events --not, db prune):
the Identities of the configured store, and how a correction or an erase is reported."""

from __future__ import annotations

import json

import click

from pipeline.commands import Context


def identities(ctx: Context):  # type: ignore[no-untyped-def]
    from pipeline.identities import Identities
    from pipeline.store import EventStore

    return Identities.from_config(EventStore(ctx.config.store_url), ctx.config)


def report(what: str, changes: list, as_json: bool) -> None:  # type: ignore[type-arg]
    """What a correction did and one line per relabelled event (from, to, why), or
    one JSON object {"result", "changes": [{event, track_uid, old, new, reason}]}."""
    if as_json:
        click.echo(json.dumps({"result": what, "changes": [c.as_json() for c in changes]}))
        return
    click.echo(f"{what}; {len(changes)} past event(s) relabelled")
    for c in changes:
        click.echo(f"  {c.line()}")


def erase_report(ctx: Context, what: str, deleted) -> str:  # type: ignore[no-untyped-def]
    """Delete the snapshot files an erase or prune freed; one line saying what went."""
    from pipeline.store import delete_snapshot_files

    files = delete_snapshot_files(deleted.snapshots, ctx.config.snapshots_path)
    return (
        f"{what}: {deleted.events} event(s), {deleted.samples} sample(s), "
        f"{deleted.negatives} negative(s), {files} snapshot file(s) deleted"
    )
