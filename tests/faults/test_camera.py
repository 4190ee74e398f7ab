"""A live camera that goes down, is down at start, or talks garbage: the capture survives.

Real processes (`facepipe capture`, every stage worker, `facepipe metrics`) on a private
redis-server; the camera is a real MJPEG-over-HTTP server on 127.0.0.1
(``pipeline.camera_server.MjpegCamera``) taken down and brought back as a camera losing
power does, or a raw TCP server that answers with garbage, closes at once or says nothing.
"""

from __future__ import annotations

import ast
import http.server
import json
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.camera_server import MjpegCamera
from pipeline.demo import make_demo_video
from pipeline.stages import STAGE_NAMES
from tests.helpers import free_port

from .conftest import Procs, start_workers, wait_for

pytestmark = pytest.mark.slow


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def sample(text: str, name: str, stream: str) -> float | None:
    """The value of ``name{stream="..."}`` in a scrape, None if the series is absent."""
    m = re.search(rf'^{name}{{stream="{re.escape(stream)}"}} (\S+)$', text, re.MULTILINE)
    return float(m.group(1)) if m else None


@pytest.fixture()
def quick_env(env: dict[str, str]) -> dict[str, str]:
    """Reconnect quickly (0.3 s doubling up to 1 s) and time out a silent camera in 2 s."""
    env["FACEPIPE__CAPTURE__RECONNECT_S"] = "0.3"
    env["FACEPIPE__CAPTURE__RECONNECT_MAX_S"] = "1"
    env["FACEPIPE__CAPTURE__TIMEOUT_S"] = "2"
    return env


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    return make_demo_video(tmp_path / "clip.mp4", frames=30)


class Hook:
    """A webhook receiver on 127.0.0.1: the JSON bodies POSTed to it, in order."""

    def __init__(self) -> None:
        bodies: list[dict[str, object]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                n = int(self.headers.get("Content-Length", 0))
                bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.bodies = bodies
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def statuses(self) -> list[object]:
        return [b["status"] for b in self.bodies if b.get("type") == "stream"]


@pytest.fixture()
def hook(quick_env: dict[str, str]) -> Iterator[Hook]:
    """Stream up/down notifications of the test's captures go to this webhook."""
    h = Hook()
    quick_env["FACEPIPE__NOTIFY__WEBHOOKS"] = f"[{{url: '{h.url}', events: [stream], retries: 0}}]"
    yield h
    h.server.shutdown()


def counts(bus, stream: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    sid = next(s for s in bus.streams() if s.startswith(f"{stream}/"))
    return bus.stream_counts(*sid.split("/"))


def accounted(out: str, stream: str) -> dict[str, int]:
    """The counts `facepipe capture` printed once every frame it sent was accounted for."""
    m = re.search(rf"^{stream}: all frames accounted for: (\{{.*\}})$", out, re.MULTILINE)
    assert m, out
    c = ast.literal_eval(m.group(1))
    dropped = sum(v for k, v in c.items() if k.startswith("dropped:"))
    assert c["captured"] == c["processed"] + dropped, c
    assert "unaccounted" not in out
    return c


def stop(procs: Procs, proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> str:
    proc.send_signal(sig)
    try:
        rc = proc.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the capture did not stop on {sig!r}:\n" + procs.log(proc))
    out = procs.log(proc)
    assert rc == 0, out
    return out


def test_a_camera_outage_is_survived_shown_and_accounted(bus, procs, quick_env, video, hook):
    start_workers(procs, bus, STAGE_NAMES)
    port = free_port()
    procs.start("metrics", "--port", str(port), name="metrics")
    with MjpegCamera(video, fps=10) as cam:
        capture = procs.start("capture", cam.url, "--stream", "door", name="capture")
        wait_for(lambda: counts(bus, "door").get("processed", 0) >= 5, 60, "frames processed")
        wait_for(lambda: sample(scrape(port), "facepipe_source_up", "door") == 1.0, 10, "up 1")

        cam.down()
        down_at = time.monotonic()
        wait_for(lambda: sample(scrape(port), "facepipe_source_up", "door") == 0.0, 10, "up 0")
        before = counts(bus, "door")["captured"]
        time.sleep(max(0.0, 8.0 - (time.monotonic() - down_at)))  # an 8 s outage
        assert capture.poll() is None, procs.log(capture)
        during = scrape(port)
        assert sample(during, "facepipe_source_up", "door") == 0.0
        assert (sample(during, "facepipe_source_down_seconds_total", "door") or 0) >= 4.0
        assert counts(bus, "door")["captured"] == before  # nothing read while down

        cam.up()
        wait_for(lambda: counts(bus, "door")["captured"] >= before + 10, 30, "reading again")
        wait_for(lambda: sample(scrape(port), "facepipe_source_up", "door") == 1.0, 10, "up 1")
        after = scrape(port)
        assert (sample(after, "facepipe_source_reconnects_total", "door") or 0) >= 1
        assert (sample(after, "facepipe_source_down_seconds_total", "door") or 0) >= 7.0

        out = stop(procs, capture, signal.SIGINT)
    c = accounted(out, "door")
    assert c["processed"] >= 5 and c["captured"] >= before + 10
    assert c == {k: v for k, v in counts(bus, "door").items() if k != "end_seq"}
    # one warning when the outage starts, one with its length when it ends
    assert out.count("source down (") == 1, out
    back = re.findall(r"source back after ([\d.]+) s down", out)
    assert len(back) == 1 and 7.0 <= float(back[0]) <= 20.0, out
    assert "Traceback" not in out
    # the capture ended: its gauge is gone (no stale "up" for a stream nobody captures)
    assert sample(scrape(port), "facepipe_source_up", "door") is None
    # and the notifications told each change once
    assert hook.statuses() == ["up", "down", "up"], hook.bodies
    down = next(b for b in hook.bodies if b.get("status") == "down")
    assert down["stream"] == "door" and "no frame" in str(down["reason"])


def test_a_camera_down_at_start_is_retried_until_it_comes_up(bus, procs, quick_env, video, hook):
    start_workers(procs, bus, STAGE_NAMES)
    port = free_port()
    procs.start("metrics", "--port", str(port), name="metrics")
    with MjpegCamera(video, fps=10) as cam:
        cam.down()
        capture = procs.start("capture", cam.url, "--stream", "gate", name="capture")
        wait_for(lambda: sample(scrape(port), "facepipe_source_up", "gate") == 0.0, 20, "up 0")
        time.sleep(3)  # several attempts
        assert capture.poll() is None, procs.log(capture)  # not "cannot open url source"
        assert counts(bus, "gate")["captured"] == 0

        cam.up()
        wait_for(lambda: counts(bus, "gate").get("processed", 0) >= 5, 60, "frames processed")
        wait_for(lambda: sample(scrape(port), "facepipe_source_up", "gate") == 1.0, 10, "up 1")
        assert (sample(scrape(port), "facepipe_source_reconnects_total", "gate") or 0) == 1
        out = stop(procs, capture, signal.SIGTERM)
    assert "down at start" in out and out.count("source down (") == 1, out
    assert re.search(r"source back after [\d.]+ s down \(\d+ reconnect attempts\)", out), out
    accounted(out, "gate")
    assert hook.statuses() == ["down", "up"], hook.bodies


class BadCamera:
    """A TCP server on 127.0.0.1 that answers every connection badly: ``garbage`` (random
    bytes, then close), ``close`` (closes at once) or ``silent`` (accepts, says nothing)."""

    def __init__(self, how: str) -> None:
        self.how = how
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/cam.mjpg"

    def _serve(self) -> None:
        garbage = bytes(range(256)) * 64
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.how == "silent":
                self._held.append(conn)  # open, never a byte
                continue
            if self.how == "garbage":
                try:
                    conn.recv(4096)
                    conn.sendall(b"\x00\xff{{{ not http\r\n" + garbage)
                except OSError:
                    pass
            conn.close()

    def __enter__(self) -> Iterator[BadCamera]:
        self._thread.start()
        return self  # type: ignore[return-value]

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for c in self._held:
            c.close()
        self.sock.close()


@pytest.mark.parametrize("how", ["garbage", "close", "silent"])
def test_a_camera_that_talks_garbage_is_retried_and_stops_cleanly(bus, procs, quick_env, how):
    with BadCamera(how) as cam:
        capture = procs.start("capture", cam.url, "--stream", "junk", name="capture")
        # silent: each attempt waits for the 2 s timeout
        wanted = 2 if how == "silent" else 4
        wait_for(lambda: cam.connections >= wanted, 30, f"{wanted} connection attempts")
        assert capture.poll() is None, procs.log(capture)
        out = stop(procs, capture, signal.SIGINT)
    assert out.count("source down (") == 1, out  # one warning for the whole outage
    assert "Traceback" not in out
    assert re.search(r"^junk: captured 0, enqueued 0, dropped 0 ", out, re.MULTILINE), out
    assert accounted(out, "junk") == {"captured": 0, "processed": 0}


def test_facepipe_run_waits_for_a_camera_down_at_start(bus, procs, quick_env, video):
    """The operator's entry point: `facepipe run URL` with the camera off, switched on
    later; SIGINT ends it with a summary in which every captured frame is accounted."""
    with MjpegCamera(video, fps=10) as cam:
        cam.down()
        run = procs.start("run", cam.url, "--stream", "lobby", "--json", name="run")
        wait_for(lambda: "source down (" in procs.log(run), 60, "the outage to be logged")
        time.sleep(2)
        assert run.poll() is None, procs.log(run)
        cam.up()
        wait_for(lambda: counts(bus, "lobby").get("processed", 0) >= 5, 60, "frames processed")
        run.send_signal(signal.SIGINT)
        assert run.wait(60) == 130, procs.log(run)
    out = procs.log(run)
    summary = json.loads(next(ln for ln in out.splitlines() if ln.startswith("{")))
    lobby = summary["streams"]["lobby"]
    dropped = sum(v for k, v in lobby.items() if k.startswith("dropped:"))
    assert lobby["processed"] >= 5 and lobby["captured"] == lobby["processed"] + dropped, lobby
    assert "source back after" in out and "Traceback" not in out


def test_a_file_capture_stopped_by_a_signal_says_so(bus, procs, env, tmp_path):
    """The same stop for a file: the summary is printed, the exit status (130) says the
    file was not read to its end."""
    env["FACEPIPE__CAPTURE__REALTIME"] = "true"  # 60 frames at 15 fps: 4 s
    clip = make_demo_video(tmp_path / "long.mp4", frames=60)
    capture = procs.start("capture", str(clip), "--stream", "file", "--no-wait", name="capture")
    wait_for(lambda: counts(bus, "file").get("captured", 0) >= 5, 30, "frames captured")
    capture.send_signal(signal.SIGINT)
    assert capture.wait(30) == 130, procs.log(capture)
    out = procs.log(capture)
    m = re.search(r"^file: captured (\d+), enqueued (\d+), dropped 0 ", out, re.MULTILINE)
    assert m and 5 <= int(m.group(1)) < 60 and m.group(1) == m.group(2), out
    assert counts(bus, "file")["end_seq"] == int(m.group(1)) - 1  # the end is marked
