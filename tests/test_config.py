from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent


def test_defaults_without_file():
    cfg = load_config(None, environ={})
    assert cfg.detector.backend
    assert cfg.redis.url is None


def test_shipped_yaml_is_valid_and_matches_defaults():
    cfg = load_config(REPO / "config" / "facepipe.yaml", environ={})
    assert cfg == load_config(None, environ={})


def test_unknown_key_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("detector:\n  backnd: hog\n")
    with pytest.raises(ConfigError, match=r"detector\.backnd: unknown key"):
        load_config(p, environ={})


def test_unknown_section_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("detectors: {}\n")
    with pytest.raises(ConfigError, match="detectors: unknown key"):
        load_config(p, environ={})


def test_bad_value_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("capture:\n  jpeg_quality: 500\n")
    with pytest.raises(ConfigError, match=r"capture\.jpeg_quality"):
        load_config(p, environ={})


def test_env_overrides_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("workers:\n  detect: 3\n")
    cfg = load_config(p, environ={"FACEPIPE__WORKERS__DETECT": "5", "REDIS_URL": "redis://x:1/2"})
    assert cfg.workers.detect == 5
    assert cfg.redis.url == "redis://x:1/2"


def test_unknown_env_key_named():
    with pytest.raises(ConfigError, match=r"tracker\.max_mised"):
        load_config(None, environ={"FACEPIPE__TRACKER__MAX_MISED": "3"})


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_default_locations_follow_facepipe_home(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEPIPE_HOME", str(tmp_path))
    cfg = load_config(None, environ={})
    assert cfg.store_url == f"sqlite:///{tmp_path / 'events.db'}"
    assert cfg.snapshots_path == tmp_path / "snapshots"
