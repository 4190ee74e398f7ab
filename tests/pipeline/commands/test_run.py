"""`facepipe run` refuses a bad configuration at once, before Redis or any worker starts."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"FACEPIPE__DETECTOR__BACKEND": "hogg"}, "detector.backend"),
        ({"FACEPIPE__DETECTOR__OPTIONS__UPSAMPEL": "1"}, "detector.options.upsampel"),
        ({"FACEPIPE__ATTRIBUTES__OPTIONS__FLIPP": "true"}, "attributes.options.flipp"),
    ],
)
def test_run_fails_at_once_naming_the_key(tmp_path: Path, env: dict, key: str) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not looked at: the config fails first")
    home = tmp_path / "home"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FACEPIPE")}
    environ.pop("REDIS_URL", None)  # no server given: a good config would start one
    environ.update(env, FACEPIPE_HOME=str(home))
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(video)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    seconds = time.monotonic() - t0
    assert res.returncode != 0
    assert key in res.stderr, res.stderr
    assert "starting workers" not in res.stderr
    assert not (home / "logs").exists()  # no run (its workers' logs) was started
    # measured ~1.3 s of CPU; a run that starts workers takes far longer
    assert seconds < 15, f"took {seconds:.1f} s"
