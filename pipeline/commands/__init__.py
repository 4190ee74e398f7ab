"""CLI sub-commands; each module exposes ``COMMANDS``, a list of click commands.

Keep module-level imports light (no dlib/TensorFlow): import inside the command.
"""

from __future__ import annotations

import click

from pipeline.config import Config, ConfigError, load_config


class Context:
    """What every sub-command receives: the config path and the loaded config."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                raise click.ClickException(f"invalid configuration:\n{exc}") from None
        return self._config


pass_ctx = click.make_pass_decorator(Context)
