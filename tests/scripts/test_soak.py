"""scripts/soak.py end to end, briefly: a live camera through the real processes, with a
sample of every process's memory at each interval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = {
    "detect", "track", "recognize", "attributes", "sink", "metrics", "capture",
    "redis-server", "camera (this script)",
}  # fmt: skip


@pytest.mark.slow
def test_a_short_soak_samples_every_process(tmp_path, home):
    out = tmp_path / "soak.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEPIPE__")}
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "0.2",
         "--interval", "2", "--warmup", "0", "--no-enroll", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text())
    samples = result["samples"]
    assert len(samples) >= 6  # 12 s at one sample per 2 s, plus the first
    for s in samples:
        assert set(s["rss"]) == PROCESSES
        assert all(v and v > 1_000_000 for v in s["rss"].values()), s["rss"]
        assert s["redis"]["used_memory"] > 0 and s["scrape"]["ok"]
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert samples[-1]["frames"]["captured"] > 0
    after = result["after_drain"]["frames"]
    assert after["processed"] > 0
    assert after["captured"] >= after["processed"] + sum(after["dropped"].values())
    assert result["died_during_soak"] == {}
    assert all(code == 0 for code in result["exits"].values()), result["exits"]  # clean stops
    assert set(result["growth"]["rss"]) == PROCESSES
    assert result["capture_summary"] and "captured" in result["capture_summary"][0]
    assert "| t (s) | detect |" in run.stdout and "Redis used_memory" in run.stdout
