"""A real Prometheus server scrapes the facepipe endpoint and can query the metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from pipeline.bus import Bus, connect
from pipeline.metrics import Metrics
from pipeline.record import FrameRecord
from tests.helpers import free_port

PROMETHEUS = shutil.which("prometheus")


def dashboard_exprs() -> list[str]:
    path = Path(__file__).parents[2] / "config" / "grafana" / "dashboards" / "facepipe.json"
    panels = json.loads(path.read_text())["panels"]
    # the dashboard's stream variable, as "All" sets it
    return [t["expr"].replace("$stream", ".*") for p in panels for t in p.get("targets", [])]


def test_the_dashboard_has_queries():
    exprs = dashboard_exprs()
    assert len(exprs) >= 10 and all("facepipe_" in e for e in exprs)


def test_the_dashboard_filters_by_stream():
    path = Path(__file__).parents[2] / "config" / "grafana" / "dashboards" / "facepipe.json"
    board = json.loads(path.read_text())
    (var,) = [v for v in board["templating"]["list"] if v["name"] == "stream"]
    assert "label_values(facepipe_frames_captured_total, stream)" in var["definition"]
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            for name in re.findall(r"facepipe_\w+", target["expr"]):
                if name.startswith(("facepipe_frames_", "facepipe_capture_to_event")):
                    assert 'stream=~"$stream"' in target["expr"], target["expr"]


def query(port: int, expr: str) -> list:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())["data"]["result"]


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed (apt install prometheus)")
def test_prometheus_ingests_facepipe_metrics(tmp_path, redis_url, home):
    bus = Bus(connect(redis_url), "facepipe")
    m = Metrics(bus)
    m.inc("facepipe_frames_captured_total", {"stream": "door"}, 42)
    m.inc("facepipe_frames_dropped_total", {"stream": "door", "reason": "stale"}, 2)
    for v in (0.01, 0.02, 0.5):
        m.observe("facepipe_stage_seconds", {"stage": "detect"}, v)
    bus.send("detect", FrameRecord(stream="door", seq=0, ts=0.0))

    exporter_port, prom_port = free_port(), free_port()
    env = {"REDIS_URL": redis_url, "FACEPIPE_HOME": str(home), "PATH": "/usr/bin:/bin"}
    exporter = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "metrics", "--port", str(exporter_port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: facepipe\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        got: dict[str, list] = {}
        deadline = time.monotonic() + 60
        exprs = {
            "captured": 'facepipe_frames_captured_total{stream="door"}',
            "dropped": 'facepipe_frames_dropped_total{reason="stale"}',
            "hist": 'facepipe_stage_seconds_count{stage="detect"}',
            "depth": 'facepipe_queue_depth{stage="detect"}',
            "up": 'up{job="facepipe"}',
        }
        while time.monotonic() < deadline:
            try:
                got = {k: query(prom_port, e) for k, e in exprs.items()}
                if all(got.values()):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        value = {k: float(v[0]["value"][1]) for k, v in got.items() if v}
        assert value == {"captured": 42.0, "dropped": 2.0, "hist": 3.0, "depth": 1.0, "up": 1.0}

        # the Grafana dashboard: every panel's query is valid PromQL for this Prometheus,
        # and every metric it names is one the endpoint exposes
        with urllib.request.urlopen(f"http://127.0.0.1:{exporter_port}/metrics") as r:
            exposed = set(re.findall(r"^# TYPE (\w+) ", r.read().decode(), re.M))
        for expr in dashboard_exprs():
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode(
                {"query": expr}
            )
            with urllib.request.urlopen(url, timeout=5) as r:
                assert json.loads(r.read())["status"] == "success", expr
            for name in re.findall(r"facepipe_\w+", expr):
                assert re.sub(r"_(bucket|count|sum|total)$", "", name) in {
                    re.sub(r"_total$", "", n) for n in exposed
                }, (name, expr)
    finally:
        prom.terminate()
        exporter.terminate()
        prom.wait(10)
        exporter.wait(10)
