"""`facepipe enroll` and `facepipe people`: the gallery of known people."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.commands import Context, pass_ctx
from pipeline.commands._identities import erase_report, identities, report
from pipeline.names import BadName, check_person
from pipeline.record import iso_utc as iso


@click.command()
@click.argument("name")
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="the result and its changes as JSON")
@pass_ctx
def enroll(ctx: Context, name: str, photos: tuple[str, ...], as_json: bool) -> None:
    """Enroll NAME from PHOTOS (each showing exactly one face).

    Past events that now match NAME are relabelled only when clearly NAME (see
    docs/recognition.md, "Corrections"); one line per changed event says why."""
    from pipeline.recognition.enroll import EnrollError, enrol_photos
    from pipeline.store import EventStore

    try:
        check_person(name)
    except BadName as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    try:
        enrolled = enrol_photos(
            list(photos),
            num_jitters=ctx.config.recognition.enroll_jitters,
            max_pixels=ctx.config.limits.max_image_pixels,
        )
    except EnrollError as exc:
        raise click.ClickException(str(exc)) from None
    store = EventStore(ctx.config.store_url)
    n = store.enroll(
        name, [v for v, _ in enrolled], [str(Path(p).resolve()) for p in photos],
        [q for _, q in enrolled],
    )  # fmt: skip
    changes = identities(ctx).after_enrolment(name)
    report(f"enrolled {name}: {n} photo(s)", changes, as_json)


@click.command()
@click.option("--remove", metavar="NAME",
              help="un-enroll NAME: delete their encodings (past events are relabelled, "
              "their sightings stay)")  # fmt: skip
@click.option("--erase", metavar="NAME",
              help="forget NAME or an unknown-N entirely: encodings, negatives, events, "
              "samples, snapshots")  # fmt: skip
@click.option("--rename", nargs=2, metavar="OLD NEW",
              help="rename a person, or name an unknown-N (enrolls it)")  # fmt: skip
@click.option("--merge", nargs=2, metavar="KEEP OTHER",
              help="join OTHER into KEEP (people or unknown-N)")  # fmt: skip
@click.option("--json", "as_json", is_flag=True,
              help="one JSON object per person; with --rename/--merge/--remove: the "
              "result and its changes")  # fmt: skip
@pass_ctx
def people(
    ctx: Context, remove: str | None, erase: str | None, rename: tuple[str, str] | None,
    merge: tuple[str, str] | None, as_json: bool,
) -> None:  # fmt: skip
    """List enrolled people; remove, erase, rename or merge them (past events are relabelled).

    --rename and --merge change the events of the identities they name and nothing else
    (naming an unknown-N enrolls it: other events move only when clearly that person,
    docs/recognition.md "Corrections"); two tracks seen in the same frames never get one
    name. One line per changed event: from, to, why.

    --remove un-enrolls a person: their photos' encodings go, their past events stay and
    are relabelled (typically to an unknown-N). --erase deletes every trace of a person
    or an unknown-N: encodings, negatives, their events with the samples (face encodings)
    and snapshots, and their cluster; running workers drop the encodings from their
    gallery cache within seconds (it follows the store).
    """
    from pipeline.identities import IdentityError
    from pipeline.store import EventStore

    store = EventStore(ctx.config.store_url)
    if rename:
        try:
            check_person(rename[1])
        except BadName as exc:
            raise click.BadParameter(str(exc), param_hint="--rename") from None
    if erase:
        try:
            deleted = identities(ctx).erase(erase)
        except IdentityError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(erase_report(ctx, f"erased {erase}", deleted))
        return
    if rename or merge:
        ids = identities(ctx)
        try:
            changes = ids.rename(*rename) if rename else ids.merge(*merge)  # type: ignore[misc]
        except IdentityError as exc:
            raise click.ClickException(str(exc)) from None
        what = (
            f"renamed {rename[0]} to {rename[1]}"
            if rename
            else f"merged {merge[1]} into {merge[0]}"
        )  # type: ignore[index]
        report(what, changes, as_json)
        return
    if remove:
        if not store.remove_person(remove):
            raise click.ClickException(f"no enrolled person named {remove!r}")
        report(
            f"removed {remove}",
            identities(ctx).relabel_person(remove, f"removed {remove}"),
            as_json,
        )
        return
    rows = store.people()
    for r in rows:
        if as_json:
            click.echo(json.dumps({"name": r["name"], "photos": r["photos"]}))
        else:
            click.echo(f"{r['name']}\t{r['photos']} photo(s)")
    if not rows and not as_json:
        click.echo("no one enrolled (facepipe enroll NAME PHOTO...)")


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def unknowns(ctx: Context, as_json: bool) -> None:
    """List unknown-N identities (unrecognised people, clustered across streams)."""

    rows = identities(ctx).unknown_list()
    for r in rows:
        if as_json:
            click.echo(json.dumps({**r, "first_seen": iso(r["first_seen"]),
                                   "last_seen": iso(r["last_seen"])}))  # fmt: skip
        else:
            click.echo(f"{r['name']}\t{r['events']} event(s)\tstreams {','.join(r['streams'])}"
                       f"\tlast {iso(r['last_seen'])}\t{r['snapshot'] or '-'}")  # fmt: skip
    if not rows and not as_json:
        click.echo("no unknown people")


COMMANDS = [enroll, people, unknowns]
