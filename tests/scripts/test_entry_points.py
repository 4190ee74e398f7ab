"""Every script under ``scripts/`` starts: ``--help`` runs in a fresh interpreter.

The scripts are thin entry points over ``pipeline.evaluation`` and the benchmarks; their
library code has unit tests of its own. This catches a script whose imports or argument
parser broke when the library moved (a script is only run by hand otherwise).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_script_help_runs(script: str) -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPTS / script), "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=SCRIPTS.parent,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout
