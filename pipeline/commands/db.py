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


COMMANDS = [db]
