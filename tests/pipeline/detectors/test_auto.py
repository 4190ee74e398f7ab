"""``detector.backend: auto``: yunet where its wheel is installed, else blazeface."""

from __future__ import annotations

import sys

import pytest

from pipeline import detectors
from pipeline.config import ConfigError, DetectorConfig, load_config
from pipeline.detectors.yunet import YunetDetector
from tests.helpers import Refuse as _Refuse


@pytest.fixture
def no_yuface(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "yuface", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Refuse("yuface"), *sys.meta_path])


def test_auto_picks_yunet_where_it_is_installed() -> None:
    assert YunetDetector.installed()  # the venv is CPython 3.11 on x86-64 Linux
    assert detectors.resolve("auto") == "yunet"
    assert DetectorConfig().backend == "yunet"
    cfg = load_config(None, environ={})
    assert cfg.detector.backend == "yunet"
    opts = cfg.detector.options
    # the pipeline's yunet: HOG-framed boxes, frames seen at most 480 px (docs/detectors.md)
    assert (opts.box, opts.max_side, opts.min_score) == ("dlib", 480, 0.75)
    env = {"FACEPIPE__DETECTOR__OPTIONS__MAX_SIDE": ""}  # null: the frame's own resolution
    assert load_config(None, environ=env).detector.options.max_side is None


def test_auto_falls_back_to_blazeface_without_yuface(no_yuface: None) -> None:
    assert not YunetDetector.installed()
    assert not detectors.installed("yunet")
    assert detectors.resolve("auto") == "blazeface"
    cfg = load_config(None, environ={})
    # the fallback keeps blazeface's pipeline options (384-px tiles)
    assert cfg.detector.backend == "blazeface" and cfg.detector.options.tile_size == 384
    env = {"FACEPIPE__DETECTOR__BACKEND": "auto"}
    assert load_config(None, environ=env).detector.backend == "blazeface"


def test_auto_follows_the_order_and_other_names_are_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert detectors.resolve("hog") == "hog"
    assert detectors.resolve("nosuch") == "nosuch"  # the config's own check names it
    assert not detectors.installed("nosuch")
    monkeypatch.setattr(detectors, "AUTO_ORDER", ("nosuch", "haar", "yunet"))
    assert detectors.resolve("auto") == "haar"
    monkeypatch.setattr(detectors, "AUTO_ORDER", ("nosuch",))
    assert detectors.resolve("auto") == "nosuch"  # nothing installed: the last, whose error says


def test_named_backends_are_not_changed_by_auto() -> None:
    cfg = load_config(None, environ={"FACEPIPE__DETECTOR__BACKEND": "blazeface"})
    assert cfg.detector.backend == "blazeface" and cfg.detector.options.tile_size == 384
    assert DetectorConfig(backend="hog").backend == "hog"


def test_options_given_with_auto_apply_to_the_backend_it_picks(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "c.yaml"
    path.write_text("detector:\n  backend: auto\n  options: {min_score: 0.6}\n")
    cfg = load_config(path, environ={})
    assert (cfg.detector.backend, cfg.detector.options.min_score) == ("yunet", 0.6)
    # the environment naming what auto picks here is no switch: the file's options stay
    env = {"FACEPIPE__DETECTOR__BACKEND": "yunet"}
    assert load_config(path, environ=env).detector.options.min_score == 0.6
    # ... and an option the picked backend lacks is an error that names it
    path.write_text("detector:\n  backend: auto\n  options: {tile_size: 384}\n")
    with pytest.raises(ConfigError, match="tile_size"):
        load_config(path, environ={})


def test_choosing_yunet_by_name_without_yuface_is_a_clear_error(no_yuface: None) -> None:
    from pipeline.registry import BackendError

    with pytest.raises(BackendError, match="yuface"):
        detectors.registry.create("yunet")
