"""`facepipe enroll` and `facepipe people`: the gallery of known people."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.cli import Context, pass_ctx


@click.command()
@click.argument("name")
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@pass_ctx
def enroll(ctx: Context, name: str, photos: tuple[str, ...]) -> None:
    """Enroll NAME from PHOTOS (each showing exactly one face)."""
    from pipeline.recognition.enroll import EnrollError, encode_photos
    from pipeline.store import EventStore

    if not name.strip() or name == "unknown":
        raise click.BadParameter(f"{name!r} cannot be a person's name", param_hint="NAME")
    try:
        vectors = encode_photos(list(photos), num_jitters=ctx.config.recognition.enroll_jitters)
    except EnrollError as exc:
        raise click.ClickException(str(exc)) from None
    store = EventStore(ctx.config.store_url)
    n = store.enroll(name, vectors, [str(Path(p).resolve()) for p in photos])
    click.echo(f"enrolled {name}: {n} photo(s)")


@click.command()
@click.option("--remove", metavar="NAME", help="remove NAME and their encodings")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def people(ctx: Context, remove: str | None, as_json: bool) -> None:
    """List enrolled people (or remove one)."""
    from pipeline.store import EventStore

    store = EventStore(ctx.config.store_url)
    if remove:
        if not store.remove_person(remove):
            raise click.ClickException(f"no enrolled person named {remove!r}")
        click.echo(f"removed {remove}")
        return
    rows = store.people()
    for r in rows:
        if as_json:
            click.echo(json.dumps({"name": r["name"], "photos": r["photos"]}))
        else:
            click.echo(f"{r['name']}\t{r['photos']} photo(s)")
    if not rows and not as_json:
        click.echo("no one enrolled (facepipe enroll NAME PHOTO...)")


COMMANDS = [enroll, people]
