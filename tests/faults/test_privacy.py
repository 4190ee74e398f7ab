"""Private by default (issue 11, item 5), against real processes and real Redis servers.

* the metrics endpoint listens on 127.0.0.1 unless ``metrics.host`` says otherwise;
* a busy metrics port is a one-line error (``metrics``, ``sink``, ``run``), no traceback;
* no message shows a Redis password;
* a pipeline runs on a Redis that requires a password, and on one that speaks TLS
  (``rediss://``), and every file it leaves under ``$FACEPIPE_HOME`` is 0600 (0700 for
  directories).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.redis_server import PrivateRedis
from tests.helpers import free_port

PASSWORD = "s3cret-Pw"


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FACEPIPE") and k != "REDIS_URL"}  # fmt: skip
    env.update(FACEPIPE_HOME=str(home), **extra)
    return env


def facepipe(*args: str, env: dict[str, str], timeout: float = 120):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def listen_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on ``port``."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if int(p, 16) == port and state == "0A":  # LISTEN
                out.add(addr)
    return out


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.read().decode()
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


@pytest.mark.parametrize(("host", "hex_addr"), [(None, "0100007F"), ("0.0.0.0", "00000000")])
def test_metrics_listen_on_loopback_unless_configured(redis_url, tmp_path, host, hex_addr):
    port = free_port()
    extra = {"FACEPIPE__METRICS__HOST": host} if host else {}
    env = clean_env(tmp_path / "home", REDIS_URL=redis_url, **extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "metrics", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = wait_http(f"http://127.0.0.1:{port}/metrics", proc)
        assert "facepipe_queue_depth" in body
        assert listen_addresses(port) == {hex_addr}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f"metrics on http://{host or '127.0.0.1'}:{port}/metrics" in err


@pytest.mark.parametrize("command", ["metrics", "sink"])
def test_a_busy_metrics_port_is_a_one_line_error(redis_url, tmp_path, command):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = {
            "metrics": ["metrics", "--port", str(port)],
            "sink": ["sink", "--metrics-port", str(port), "--burst"],
        }[command]
        res = facepipe(*args, env=clean_env(tmp_path / "home", REDIS_URL=redis_url))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines == [
        f"Error: cannot serve metrics on 127.0.0.1:{port}: port in use "
        "(set metrics.port / --metrics-port to another port, or 0 for none)"
    ]


@pytest.mark.slow
def test_run_with_a_busy_metrics_port_stops_with_one_line(tmp_path, demo_media):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = clean_env(tmp_path / "home", FACEPIPE__METRICS__PORT=str(port))
        res = facepipe("run", str(demo_media["video"]), env=env, timeout=300)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"Error: cannot serve metrics on 127.0.0.1:{port}: port in use" in res.stderr
    assert "metrics: http" not in res.stderr  # no URL of an endpoint that is not there


@pytest.mark.parametrize("command", [["capture", "clip.mp4"], ["worker", "detect"], ["metrics"]])
def test_no_message_shows_the_redis_password(tmp_path, command):
    url = f"redis://:{PASSWORD}@127.0.0.1:1/0"  # nothing listens on port 1
    res = facepipe(*command, env=clean_env(tmp_path / "home", REDIS_URL=url))
    assert res.returncode == 1
    assert PASSWORD not in res.stdout + res.stderr
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/0" in res.stderr


def test_a_wrong_password_is_refused_without_showing_either(tmp_path):
    with PrivateRedis(password=PASSWORD) as server:
        wrong = server.url.replace(PASSWORD, "not-the-" + PASSWORD)
        res = facepipe("worker", "detect", env=clean_env(tmp_path / "home", REDIS_URL=wrong))
    assert res.returncode == 1
    assert PASSWORD not in res.stdout + res.stderr
    assert "cannot reach Redis at unix://:***@" in res.stderr


def assert_private(home: Path) -> int:
    """Every file under ``home`` is 0600 and every directory 0700; returns the file count."""
    files = 0
    for p in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(p.stat().st_mode)
        if p.is_dir():
            assert mode == 0o700, f"{p}: {mode:o}"
        else:
            assert mode == 0o600, f"{p}: {mode:o}"
            files += 1
    return files


def run_demo(tmp_path: Path, demo_media, redis_url: str):  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    env = clean_env(home, REDIS_URL=redis_url, FACEPIPE__METRICS__PORT="0")
    res = facepipe(
        "run",
        str(demo_media["video"]),
        "--stream",
        "demo",
        "--json",
        "--enroll",
        f"eileen-collins={demo_media['photo']}",
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["processed"] == summary["frames"] == 30
    assert summary["people"] == {"eileen-collins": 1}
    logs = "".join(p.read_text(errors="replace") for p in (home / "logs").rglob("*.log"))
    assert logs and PASSWORD not in res.stdout + res.stderr + logs
    assert (home / "events.db").is_file() and list((home / "snapshots").rglob("*.jpg"))
    assert assert_private(home) >= 8  # events.db, a snapshot, six worker logs
    return summary


@pytest.mark.slow
def test_a_pipeline_on_a_password_protected_redis_leaves_only_private_files(tmp_path, demo_media):
    with PrivateRedis(password=PASSWORD) as server:
        assert f":{PASSWORD}@" in server.url
        run_demo(tmp_path, demo_media, server.url)


@pytest.mark.slow
def test_a_pipeline_on_redis_over_tls(tmp_path, demo_media):
    if not shutil.which("openssl"):
        pytest.skip("no openssl to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    try:
        server = PrivateRedis(password=PASSWORD, tls=(cert, key)).start()
    except RuntimeError as exc:  # a redis-server built without TLS
        pytest.skip(f"redis-server without TLS: {exc}")
    try:
        assert server.url.startswith("rediss://")
        run_demo(tmp_path / "run", demo_media, server.url)
        import redis

        plain = redis.Redis(
            host="127.0.0.1", port=server.port, password=PASSWORD, socket_connect_timeout=2
        )
        with pytest.raises(redis.ConnectionError):  # the port speaks TLS only
            plain.ping()
    finally:
        server.stop()
