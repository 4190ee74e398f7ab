"""`facepipe run` serves the web UI and API while it runs (unless --no-serve); a busy
port is a warning, never the end of the run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.slow


def start_run(home: Path, video: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEPIPE")}
    env.pop("REDIS_URL", None)
    env.update(FACEPIPE_HOME=str(home), FACEPIPE__METRICS__PORT="0",
               FACEPIPE__API__PORT=str(port), FACEPIPE__CAPTURE__REALTIME="true")  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(video), "--stream", "clip", "--json",
         "--progress-every", "0", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read()


def test_the_ui_and_api_are_up_while_the_run_goes_and_gone_after(home, demo_media):
    port = free_port()
    proc = start_run(home, demo_media["video"], port)  # 30 frames at 15 fps: ~2 s of capture
    seen: dict[str, object] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and "streams" not in seen:
        try:
            status, body = get(f"http://127.0.0.1:{port}/api/streams")
            streams = json.loads(body)
            if status == 200 and "clip" in json.dumps(streams):
                seen["streams"] = streams
                seen["page"] = get(f"http://127.0.0.1:{port}/events")[0]
        except OSError:
            pass
        time.sleep(0.2)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert "streams" in seen, f"the API never showed the run's stream; stderr:\n{err[-2000:]}"
    assert seen["page"] == 200
    assert f"web UI: http://127.0.0.1:{port}/" in err
    with pytest.raises(OSError):  # the run is over: so is its server
        get(f"http://127.0.0.1:{port}/api/streams")
    assert json.loads(out.strip().splitlines()[-1])["processed"] == 30


def test_a_busy_port_is_a_warning_and_no_serve_serves_nothing(home, demo_media):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = start_run(home, demo_media["video"], port)
        out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert "WARNING: no web UI/API for this run" in err and "port in use" in err
    proc = start_run(home, demo_media["video"], free_port(), "--no-serve")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0 and "web UI:" not in err
