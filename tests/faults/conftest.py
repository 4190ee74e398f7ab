"""Fault injection: a private redis-server per test (so it can be restarted or stopped)
and real worker / capture processes (``python -m pipeline ...``) on it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rq import Worker

from pipeline.bus import Bus, connect
from pipeline.redis_server import PrivateRedis, die_with_parent
from tests.helpers import wait_for

__all__ = ["Procs", "start_workers", "wait_for", "workers_of"]


@pytest.fixture()
def redis_proc() -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (restartable on the same socket)."""
    with PrivateRedis() as server:
        yield server


@pytest.fixture()
def env(redis_proc: PrivateRedis, home: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of the test's processes: its Redis, its home, quick recovery."""
    return dict(
        os.environ,
        REDIS_URL=redis_proc.url,
        FACEPIPE_HOME=str(home),
        PYTHONUNBUFFERED="1",
        FACEPIPE__WORKERS__JOB_RECOVERY_S="2",
        FACEPIPE__REDIS__RECONNECT_MAX_S="1",
        FACEPIPE__TRACKER__GAP_TIMEOUT_S="2",
        FACEPIPE__METRICS__PORT="0",
    )


@pytest.fixture()
def bus(redis_proc: PrivateRedis) -> Bus:
    return Bus(connect(redis_proc.url), "facepipe")


class Procs:
    """Processes started by a test, each with its log; all stopped at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(
        self,
        *args: str,
        name: str,
        module: str = "pipeline",
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """``python -m MODULE ARGS`` (``facepipe ARGS`` by default) with the test's
        environment (plus ``extra_env`` for this process only), logging to NAME.log."""
        log = self.logs / f"{name}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                env={**self.env, **(extra_env or {})},
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        self.procs.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return next(p[1] for p in self.procs if p[0] is proc).read_text(errors="replace")

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture()
def procs(env: dict[str, str], tmp_path: Path) -> Iterator[Procs]:
    p = Procs(env, tmp_path / "logs")
    yield p
    p.stop()


def workers_of(bus: Bus, stage: str) -> list[Worker]:
    name = bus.queue_name(stage)
    return [w for w in Worker.all(connection=bus.conn) if name in w.queue_names()]


def start_workers(
    procs: Procs, bus: Bus, stages: tuple[str, ...], timeout: float = 60
) -> dict[str, subprocess.Popen[bytes]]:
    """One ``facepipe worker STAGE`` process per stage, registered with rq."""
    started = {s: procs.start("worker", s, name=f"worker-{s}") for s in stages}
    for s in stages:
        wait_for(lambda s=s: workers_of(bus, s), timeout, f"the {s} worker to register")
    return started
