"""workers.nice: a worker lowers its own CPU priority (and, leading its own session as
under ``facepipe run``, its autogroup's) before it loads its model; never its shell's."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config
from pipeline.priority import lower_priority

CHILD = (
    "import os, sys; from pipeline.priority import lower_priority; "
    "print(lower_priority(int(sys.argv[1]))); print(os.getpriority(os.PRIO_PROCESS, 0)); "
    "p = '/proc/self/autogroup'; print(open(p).read().strip() if os.path.exists(p) else '')"
)
REPO = Path(__file__).resolve().parents[2]


def _child(nice: int, new_session: bool) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(nice)],
        capture_output=True, text=True, check=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=new_session,
    ).stdout  # fmt: skip
    return out.splitlines()


def _autogroup_nice(text: str) -> int | None:
    return int(text.rsplit("nice", 1)[1]) if "nice" in text else None


def test_a_session_leader_lowers_its_nice_and_its_autogroup():
    done, nice, group = _child(7, new_session=True)
    assert int(nice) == 7 and "nice 7" in done
    if group:  # a kernel with sched_autogroup
        assert _autogroup_nice(group) == 7 and "autogroup nice 7" in done


def test_a_process_in_someone_else_s_session_leaves_the_autogroup_alone():
    before = Path("/proc/self/autogroup")
    mine = _autogroup_nice(before.read_text()) if before.exists() else None
    done, nice, group = _child(6, new_session=False)
    assert int(nice) == 6 and "autogroup" not in done
    if group:
        assert _autogroup_nice(group) == mine  # the shared group (the test's) unchanged
        assert _autogroup_nice(before.read_text()) == mine


def test_zero_changes_nothing_and_out_of_range_is_refused():
    assert lower_priority(0) == []
    for bad in (-1, 20):
        with pytest.raises(ValueError, match="0-19"):
            lower_priority(bad)


@pytest.mark.parametrize(
    "text, error",
    [
        ("workers:\n  nice: {detct: 3}\n", r"workers\.nice.*'detct' is not a stage"),
        ("workers:\n  nice: {detect: 25}\n", r"workers\.nice.*0-19"),
    ],
)
def test_bad_nice_values_name_the_key(tmp_path, text, error):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=error):
        load_config(p, environ={})


def test_defaults_lower_the_model_stages_only():
    nice = load_config(None, environ={}).workers.nice
    assert set(nice) == {"detect", "recognize", "attributes"}
    assert all(v > 0 for v in nice.values())


def test_a_worker_process_runs_at_its_stage_s_priority(redis_url, tmp_path):
    """The real `facepipe worker` command, started as `facepipe run` starts it."""
    from rq import Worker

    from pipeline.runtime import connect

    cfg = tmp_path / "c.yaml"
    cfg.write_text("workers:\n  nice: {track: 4}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEPIPE")}
    env.update(REDIS_URL=redis_url, FACEPIPE_CONFIG=str(cfg), FACEPIPE_HOME=str(tmp_path),
               PYTHONPATH=str(REPO))  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "worker", "track"], env=env, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        conn = connect(redis_url)
        deadline = time.monotonic() + 60
        while not Worker.all(connection=conn) and time.monotonic() < deadline:
            assert proc.poll() is None, "the worker exited"
            time.sleep(0.2)
        assert Worker.all(connection=conn), "the worker never registered"
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        assert int(stat.rsplit(")", 1)[1].split()[16]) == 4  # field 19: nice
        group = Path(f"/proc/{proc.pid}/autogroup")
        if group.exists():
            assert _autogroup_nice(group.read_text()) == 4
    finally:
        proc.terminate()
        proc.wait(30)
