"""The `facepipe` command.

Sub-commands live in :mod:`pipeline.commands`, one module per concern; each module lists
its click commands in ``COMMANDS`` and receives a :class:`pipeline.commands.Context`
(defined there, so no command module imports this one). Command modules import heavy
libraries (dlib, TensorFlow) inside the command functions, so ``facepipe --help`` stays
fast.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

import click

from pipeline import commands
from pipeline.commands import Context
from pipeline.privacy import private_umask, redact_logs


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    "config_path",
    envvar="FACEPIPE_CONFIG",
    type=click.Path(dir_okay=False),
    help="YAML config file (default: built-in defaults, see config/facepipe.yaml). "
    "Env: FACEPIPE_CONFIG.",
)
@click.option("-v", "--verbose", count=True, help="more logging (-vv for debug)")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """facepipe: face detection, tracking, recognition and age/gender on video streams."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    redact_logs()  # no password of a Redis or store URL in any log line
    private_umask()  # events.db, snapshots, logs: 0600 files, 0700 directories
    ctx.obj = Context(config_path)


def _register() -> None:
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        for cmd in getattr(module, "COMMANDS", []):
            main.add_command(cmd)


_register()
