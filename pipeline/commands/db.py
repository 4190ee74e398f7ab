"""`facepipe db`: the event store's schema version (Alembic; see pipeline/migrations)."""

from __future__ import annotations

import click

from pipeline.commands import Context, pass_ctx


@click.group()
def db() -> None:
    """The event store's schema: which revision it is at, and upgrading it."""


def _engine(ctx: Context):  # type: ignore[no-untyped-def]
    from pipeline.store import make_engine

    return make_engine(ctx.config.store_url)


def _name(rev: str | None) -> str:
    return rev or "none (a new store, or one made before facepipe used Alembic)"


@db.command()
@pass_ctx
def current(ctx: Context) -> None:
    """Print the store's revision and the newest one (changes nothing)."""
    from pipeline import migrations

    engine = _engine(ctx)
    click.echo(f"store:   {engine.url.render_as_string(hide_password=True)}")
    click.echo(f"current: {_name(migrations.current(engine))}")
    click.echo(f"head:    {migrations.head()}")


@db.command()
@pass_ctx
def upgrade(ctx: Context) -> None:
    """Upgrade the store to the newest revision (any process opening it does too)."""
    from pipeline import migrations

    engine = _engine(ctx)
    before = migrations.upgrade(engine)
    after = migrations.current(engine)
    if before == after:
        click.echo(f"already at {after}")
    else:
        click.echo(f"upgraded {_name(before)} -> {after}")


@db.command()
@click.option("--days", type=click.FloatRange(min=0, min_open=True),
              help="delete what is older than this (default: store.retention_days)")  # fmt: skip
@pass_ctx
def prune(ctx: Context, days: float | None) -> None:
    """Delete events (with samples and snapshots) and unknown-N clusters older than N days.

    The sink does this at most once an hour when store.retention_days is set.
    """
    import time

    from pipeline.commands.gallery import erase_report, identities

    days = ctx.config.store.retention_days if days is None else days
    if days is None:
        raise click.UsageError("give --days N or set store.retention_days")
    deleted = identities(ctx).prune(time.time() - days * 86400)
    click.echo(erase_report(ctx, f"pruned what was last seen over {days:g} day(s) ago", deleted))


COMMANDS = [db]
