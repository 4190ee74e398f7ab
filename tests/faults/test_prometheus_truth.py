"""What a real Prometheus reports after a fault: a killed worker stops counting, a
dropped frame shows in increase(), and the alert rules shipped in config/ see both.

Real redis-server, real worker / capture / exporter processes, a real camera over HTTP
(pipeline.camera_server) and Debian's prometheus (skipped without it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from pipeline.camera_server import MjpegCamera
from pipeline.demo import make_demo_video
from tests.helpers import free_port

from .conftest import start_workers, wait_for

PROMETHEUS = shutil.which("prometheus")
RULES = Path(__file__).parents[2] / "config" / "prometheus" / "alerts.yml"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS is None, reason="prometheus not installed (apt install prometheus)"
    ),
]


def get(port: int, path: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{port}{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())["data"]


def value(port: int, expr: str) -> float | None:
    result = get(port, "/api/v1/query", query=expr)["result"]
    return float(result[0]["value"][1]) if result else None


def test_a_killed_worker_and_a_dropped_frame_as_prometheus_sees_them(
    redis_proc, bus, procs, env, tmp_path
):
    env["FACEPIPE__CAPTURE__MAX_QUEUE"] = "3"  # a live camera drops once 3 frames wait
    workers = start_workers(procs, bus, ("detect",))
    exporter_port, prom_port = free_port(), free_port()
    procs.start("metrics", "--port", str(exporter_port), name="metrics")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        "  - job_name: facepipe\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    video = make_demo_video(tmp_path / "clip.mp4", frames=30, size=(320, 180))
    try:
        with MjpegCamera(video, fps=4) as camera:
            procs.start("capture", camera.url, "--stream", "door", name="capture")
            dropped = 'facepipe_frames_dropped_total{stream="door", reason="backpressure"}'
            workers_q = 'facepipe_workers{stage="detect"}'
            # before the fault: the stream's series exist at 0, the worker counts
            captured = 'facepipe_frames_captured_total{stream="door"}'

            def before_the_fault() -> bool:
                return (
                    value(prom_port, dropped) == 0
                    and value(prom_port, workers_q) == 1
                    and (value(prom_port, captured) or 0) > 0
                )

            wait_for(before_the_fault, 60, "the stream's series at 0 and one detect worker")
            time.sleep(2)  # a few samples at 0

            os.kill(workers["detect"].pid, signal.SIGKILL)  # the detect queue is not served
            wait_for(lambda: value(prom_port, workers_q) == 0, 30,
                     "Prometheus to stop counting the killed worker")  # fmt: skip
            wait_for(lambda: (value(prom_port, f"increase({dropped}[1m])") or 0) > 0, 60,
                     "Prometheus to see the dropped frames")  # fmt: skip

            def no_worker_alert() -> bool:
                alerts = get(prom_port, "/api/v1/alerts")["alerts"]
                return any(a["labels"].get("alertname") == "FacepipeNoWorkers"
                           and a["labels"].get("stage") == "detect" for a in alerts)  # fmt: skip

            wait_for(no_worker_alert, 30, "the FacepipeNoWorkers alert (pending) for detect")
    finally:
        prom.terminate()
        prom.wait(10)
