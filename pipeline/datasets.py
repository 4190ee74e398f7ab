"""Where the labelled datasets are: ``$FACEPIPE_DATASETS`` or ``../shared/datasets``.

They are never part of the repository; code that needs them must cope with their absence
(evaluation scripts exit with a clear message, tests skip).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def datasets_root() -> Path | None:
    """The datasets folder, or None when it is not there."""
    env = os.environ.get("FACEPIPE_DATASETS")
    candidates = [Path(env)] if env else []
    candidates += [
        REPO_ROOT.parent / "shared" / "datasets",
        Path.cwd().parent / "shared" / "datasets",
    ]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def require(sub: str) -> Path:
    """A dataset sub-folder, or a clear error when it is absent."""
    root = datasets_root()
    if root is None or not (root / sub).exists():
        raise FileNotFoundError(
            f"dataset {sub!r} not found: set FACEPIPE_DATASETS or place the datasets at "
            f"../shared/datasets (looked in {root})"
        )
    return root / sub
