"""`facepipe health`: the checks a container healthcheck runs, against a real Redis."""

from __future__ import annotations

import json
import socket

from click.testing import CliRunner

from pipeline.bus import Bus, connect
from pipeline.cli import main


def health(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["health", *args])


def test_healthy_redis_and_store(redis_url, home, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    home.mkdir(parents=True)  # where the sink keeps events.db
    r = health("--store", "--json")
    assert r.exit_code == 0, r.output
    checks = json.loads(r.output)["checks"]
    assert checks["redis"]["ok"] and checks["store"]["ok"]


def test_unreachable_redis_fails_without_printing_the_password(home, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    r = health()
    assert r.exit_code == 1
    assert "FAIL redis: cannot reach Redis" in r.output and "hunter2" not in r.output


def test_a_worker_counts_only_while_it_beats(redis_url, home, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    r = health("--worker", "detect")
    assert r.exit_code == 1 and "no detect worker on" in r.output
    bus = Bus(connect(redis_url), "facepipe")
    bus.beat(f"detect-{socket.gethostname()}-123", 30)
    r = health("--worker", "detect")
    assert r.exit_code == 0 and "1 detect worker(s)" in r.output
    assert health("--worker", "sink").exit_code == 1  # another stage's worker
