"""A real `facepipe serve` process serves the web UI beside the API and stops on SIGTERM
while a browser keeps a live view (an endless MJPEG stream) open."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
TOKEN = "a-long-enough-token-123"


@pytest.mark.slow
def test_serve_has_the_ui_and_stops_with_a_live_view_open(home):
    env = {**os.environ, "FACEPIPE__API__TOKEN": TOKEN, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "serve", "--port", "0"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        m = re.match(r"API on (http://127\.0\.0\.1:\d+)/api", line)
        assert m, line
        with httpx.Client(base_url=m.group(1), timeout=30) as http:
            r = http.get("/events")
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
            r = http.post("/login", data={"token": TOKEN, "next": "/live"})
            assert r.status_code == 303 and "facepipe_session" in http.cookies
            assert "<h1>Live</h1>" in http.get("/live").text
            cookies = dict(http.cookies)
        with httpx.Client(base_url=m.group(1), timeout=30, cookies=cookies) as viewer:
            with viewer.stream("GET", "/live/door/mjpeg") as live:
                assert live.headers["content-type"].startswith("multipart/x-mixed-replace")
                assert next(live.iter_raw()).startswith(b"--frame")
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                # the stream ends with the server, well within the 10 s grace period
                assert proc.wait(timeout=8) == 0 and time.monotonic() - t0 < 8
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in proc.stderr.read()  # type: ignore[union-attr]
