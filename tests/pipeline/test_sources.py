"""Sources: a file that cannot be opened fails at once; a live source that is down (at
start or later) is retried with capped exponential backoff, logged once per outage, and
its health is reported by ``Source.status()``."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from pipeline.camera_server import MjpegCamera
from pipeline.sources import Source, SourceError


def test_a_missing_file_fails_at_once(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="video file not found"):
        Source(str(tmp_path / "nope.mp4"), reconnect_s=5.0)
    assert time.monotonic() - t0 < 1.0


class Refuser:
    """A TCP server on 127.0.0.1 that closes every connection at once, noting when."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/cam.mjpg"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.times.append(time.monotonic())
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_a_live_source_down_at_start_is_retried_with_capped_backoff(caplog):
    caplog.set_level(logging.WARNING, logger="pipeline.sources")
    server = Refuser()
    try:
        src = Source(server.url, reconnect_s=0.1, reconnect_max_s=0.4, timeout_s=2)
        assert not src.status().up  # no exception: a camera down at start is not an error
        done = threading.Thread(target=lambda: list(src), daemon=True)
        done.start()
        time.sleep(3.0)
        src.stop()
        done.join(5)
        assert not done.is_alive()
        src.close()
    finally:
        server.close()
    gaps = [b - a for a, b in zip(server.times, server.times[1:], strict=False)]
    assert len(gaps) >= 5, server.times  # it kept trying
    # 0.1 s doubling, times a jitter in [0.5, 1), capped at 0.4 s (+ the open's own time)
    assert max(gaps) < 0.4 + 0.3, gaps
    assert min(gaps[-3:]) > 0.2 - 0.05, gaps  # at the cap by then, never faster
    st = src.status()
    assert not st.up and st.reconnects == 0 and st.down_s >= 2.5
    downs = [r.getMessage() for r in caplog.records if "source down" in r.getMessage()]
    assert len(downs) == 1 and "down at start" in downs[0]  # once per outage, not per try


def test_a_camera_outage_is_one_warning_each_way_and_counted(demo_media, caplog):
    caplog.set_level(logging.WARNING, logger="pipeline.sources")
    with MjpegCamera(demo_media["video"], fps=20) as cam:
        src = Source(cam.url, reconnect_s=0.1, reconnect_max_s=0.3, timeout_s=2)
        got: list[float] = []
        reader = threading.Thread(target=lambda: got.extend(f.ts for f in src), daemon=True)
        reader.start()
        deadline = time.monotonic() + 10
        while len(got) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert src.status().up and len(got) >= 5
        cam.down()
        deadline = time.monotonic() + 10
        while src.status().up and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not src.status().up
        time.sleep(1.5)
        n = len(got)
        cam.up()
        deadline = time.monotonic() + 10
        while len(got) < n + 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        src.stop()
        reader.join(5)
        src.close()
    assert len(got) >= n + 5  # reading again
    st = src.status()
    assert st.up and st.reconnects == 1 and 1.5 <= st.down_s < 5.0, st
    messages = [r.getMessage() for r in caplog.records]
    assert sum("source down" in m for m in messages) == 1, messages
    assert sum("source back after" in m for m in messages) == 1, messages
