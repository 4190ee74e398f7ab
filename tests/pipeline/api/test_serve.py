"""`facepipe serve`: a busy port is a one-line error; a real server process answers
over HTTP on 127.0.0.1 with bearer-token auth and stops on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[3]


def test_busy_port_is_a_one_line_error(home):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = CliRunner().invoke(main, ["serve", "--port", str(port)])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1] == (
        f"Error: cannot serve the API on 127.0.0.1:{port}: port in use "
        "(set api.port / --port to another port)"
    )


def test_bad_api_config_is_named(home, monkeypatch):
    monkeypatch.setenv("FACEPIPE__API__TOKEN", "short")
    r = CliRunner().invoke(main, ["serve"])
    assert r.exit_code == 1 and "api.token" in r.output


@pytest.mark.slow
def test_a_real_server_answers_with_token_auth_and_stops_on_sigterm(home):
    token = "a-long-enough-token-123"
    env = {**os.environ, "FACEPIPE__API__TOKEN": token, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--port", "0"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        m = re.match(r"API on (http://127\.0\.0\.1:\d+)/api \(docs: .*/docs\)", line)
        assert m, line
        base = m.group(1)
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/api/events").status_code == 401
            auth = {"Authorization": f"Bearer {token}"}
            r = http.get("/api/health", headers=auth)
            assert r.status_code == 200 and r.json()["store"]["ok"]
            assert http.get("/api/events", headers=auth).json()["total"] == 0
            assert http.get("/openapi.json").json()["info"]["title"] == "facepipe"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
