"""`facepipe train MODEL ...`: (re)train the models facepipe ships.

The commands live in the :mod:`training` package (``training/commands/``), which the
runtime never imports: this group loads them only when ``facepipe train`` itself runs.
"""

from __future__ import annotations

import importlib
import pkgutil

import click


class TrainGroup(click.Group):
    """A click group whose sub-commands are imported from :mod:`training.commands` on use."""

    def _load(self) -> None:
        if self.commands:
            return
        try:
            package = importlib.import_module("training.commands")
        except ModuleNotFoundError as exc:
            if exc.name not in ("training", "training.commands"):
                raise
            raise click.ClickException(
                "the training package is not installed (install facepipe from its source "
                "tree: pip install -e .)"
            ) from None
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            cmd = getattr(module, "COMMAND", None)
            if cmd is not None:
                self.add_command(cmd)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)


@click.group(cls=TrainGroup)
def train() -> None:
    """Train one of the from-scratch models (see docs/ for data and results)."""


COMMANDS = [train]
