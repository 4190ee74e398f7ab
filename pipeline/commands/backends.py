"""`facepipe backends`: which detector and age/gender backends exist and load here."""

from __future__ import annotations

import click


@click.command()
@click.option("--check", is_flag=True, help="import each backend to see if it is usable")
def backends(check: bool) -> None:
    """List detector and age/gender backends (names usable in config and on the CLI)."""
    from pipeline.attributes import registry as attr_registry
    from pipeline.detectors import registry as det_registry
    from pipeline.registry import BackendError

    for title, reg in (("detectors", det_registry), ("attributes", attr_registry)):
        click.echo(f"{title}:")
        for name in reg.names():
            status = ""
            if check:
                try:
                    reg.get(name)
                    status = "ok"
                except BackendError as exc:
                    status = f"unavailable: {exc}"
            click.echo(f"  {name:<16} {status}")


COMMANDS = [backends]
