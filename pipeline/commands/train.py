"""`facepipe train MODEL ...`: (re)train the models facepipe ships."""

from __future__ import annotations

import importlib
import pkgutil

import click

from pipeline import training


@click.group()
def train() -> None:
    """Train one of the from-scratch models (see docs/ for data and results)."""


for _info in sorted(pkgutil.iter_modules(training.__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        _cmd = getattr(
            importlib.import_module(f"{training.__name__}.{_info.name}"), "COMMAND", None
        )
        if _cmd is not None:
            train.add_command(_cmd)

COMMANDS = [train]
