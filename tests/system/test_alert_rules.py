"""The alert rules shipped in config/prometheus/ are valid and do what their tests say
(``promtool``, from Debian's prometheus package; skipped without it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PROMTOOL = shutil.which("promtool")
CONFIG = Path(__file__).parents[2] / "config" / "prometheus"

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt install prometheus)"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=CONFIG, capture_output=True, text=True, timeout=60
    )


def test_the_rules_are_valid():
    out = promtool("check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 10 rules found" in out.stdout


def test_the_rules_unit_tests_pass():
    out = promtool("test", "rules", "alerts.test.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_alert_has_a_unit_test():
    import yaml

    rules = yaml.safe_load((CONFIG / "alerts.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((CONFIG / "alerts.test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert names == tested, names ^ tested


def test_the_compose_prometheus_config_loads_the_rules(tmp_path):
    # the config as docker-compose mounts it, with the rule path made local
    text = (CONFIG / "prometheus.yml").read_text()
    local = tmp_path / "prometheus.yml"
    local.write_text(text.replace("/etc/prometheus/facepipe/", f"{CONFIG}/"))
    out = promtool("check", "config", str(local))
    assert out.returncode == 0, out.stdout + out.stderr
