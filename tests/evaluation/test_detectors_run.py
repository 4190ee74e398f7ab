"""Running detectors for the WIDER evaluation (pipeline.evaluation.detectors): specs, the
cache, scoring at two resolutions and the report, on hand-made detections and a
stand-in backend (no dataset)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from pipeline.evaluation import detectors as ev
from pipeline.record import Face


def test_parse_spec_reads_yaml_values():
    assert ev.parse_spec("hog") == ("hog", {})
    assert ev.parse_spec("blazeface:tile_size=384:min_score=0.3:model=short") == (
        "blazeface",
        {"tile_size": 384, "min_score": 0.3, "model": "short"},
    )
    with pytest.raises(SystemExit):
        ev.parse_spec("hog:upsample")


def test_cache_path_and_a_stale_cache_is_dropped(tmp_path):
    p = ev.cache_path(tmp_path, "blazeface", {"tile_size": 384, "model": "full"}, "640")
    assert p == tmp_path / "blazeface-model=full-tile_size=384" / "640.jsonl"
    p.parent.mkdir(parents=True)
    lines = [{"version": "v1"}, {"image": "a.jpg", "faces": []}]
    p.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"image": "b.j')  # cut short
    assert list(ev.load_cache(p, "v1")) == ["a.jpg"]
    assert ev.load_cache(p, "v2") == {} and not p.exists()


def _records():
    return [
        {"image": "a.jpg", "faces": [{"box": [100, 100, 100, 100], "invalid": 0}]},
        {"image": "b.jpg", "faces": [{"box": [10, 10, 40, 40], "invalid": 0}]},
    ]


def test_score_backend_scales_the_truth_into_the_small_frame():
    s = 640 / 1024
    full = {
        "a.jpg": {"faces": [{"box": [100, 100, 100, 100], "score": 0.9}], "ms": 10, "cpu_ms": 9},
        "b.jpg": {"faces": [], "ms": 20, "cpu_ms": 19},
    }
    small = {
        "a.jpg": {"faces": [{"box": [62, 62, 63, 63], "score": 0.9}], "ms": 4, "cpu_ms": 4,
                  "scale": s},
        "b.jpg": {"faces": [], "ms": 6, "cpu_ms": 5, "scale": s},
    }  # fmt: skip
    r = ev.score_backend(_records(), {"1024": full, "640": small})
    assert r["ap_all"] == pytest.approx(0.5)  # one of two faces found, no false positive
    assert r["ap_32"] == pytest.approx(0.5)  # the missed face is 40 px tall: it counts
    assert r["ap_32_at_640"] == pytest.approx(1.0)  # 40 px -> 25 px: ignored at 640
    assert (r["ms_1024"], r["ms_640"], r["fps_640"]) == (15, 5, 200)
    assert ev.operating_point(r) == "1.00 / 1.00"


class Fixed:
    """A backend that finds one face at a fixed place and records its calls."""

    calls: list[tuple[tuple[int, ...], int]] = []

    def __init__(self, options=None) -> None:
        pass

    def warmup(self) -> None:
        pass

    def detect(self, image, min_size=0):
        Fixed.calls.append((image.shape, min_size))
        h, w = image.shape[:2]
        return [Face(box=(w // 4, h // 4, w // 4, h // 4), score=0.8)]


def test_run_backend_calls_detect_like_the_stage_and_caches(tmp_path, monkeypatch):
    from pipeline.detectors import registry

    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(images / name), np.full((512, 1024, 3), 90, np.uint8))
    monkeypatch.setattr(registry, "create", lambda name, options=None: Fixed(options))
    monkeypatch.setattr(ev, "source_hash", lambda name: "v1")
    Fixed.calls.clear()
    dets = ev.run_backend("fixed", {}, _records(), images, tmp_path / "cache", min_size=24)
    assert sorted(Fixed.calls) == sorted([((512, 1024, 3), 24)] * 2 + [((320, 640, 3), 24)] * 2)
    assert dets["640"]["a.jpg"]["faces"][0]["box"] == [160, 80, 160, 80]
    assert dets["640"]["a.jpg"]["scale"] == pytest.approx(0.625)
    Fixed.calls.clear()
    again = ev.run_backend("fixed", {}, _records(), images, tmp_path / "cache", min_size=24)
    assert Fixed.calls == []  # all from the cache
    assert again["1024"]["b.jpg"]["faces"] == dets["1024"]["b.jpg"]["faces"]


def test_render_says_when_a_run_was_partial():
    report = {
        "date": "d", "command": "c", "n_images": 2, "dataset_images": 418,
        "machine": {"cpu": "x", "cores": 2, "gpu": "none", "loadavg_start": [1, 1, 1]},
        "timing": {"images": None, "interleaved": False},
        "results": [{"name": "hog", "options": {}, "error": "broken"}],
    }  # fmt: skip
    text = ev.render(report)
    assert "Partial run: 2 of the 418 images." in text
    assert "| `hog` | - | unavailable: broken" in text
