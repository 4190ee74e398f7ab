"""eval_detectors --sweep: AP, precision and recall when detections are cut at thresholds."""

from __future__ import annotations

import pytest

from pipeline.evaluation import detectors as ev


def dets(faces: dict[str, list[dict]], scale: float) -> dict[str, dict]:
    return {k: {"image": k, "faces": v, "scale": scale} for k, v in faces.items()}


def test_sweep_matches_running_with_each_threshold() -> None:
    records = [
        {"image": "a", "faces": [{"box": [0, 0, 64, 64]}, {"box": [200, 0, 64, 64]}]},
        {"image": "b", "faces": [{"box": [0, 0, 64, 64]}]},
    ]
    full = {
        "a": [
            {"box": [0, 0, 64, 64], "score": 0.9},
            {"box": [400, 400, 64, 64], "score": 0.6},  # a false positive
            {"box": [200, 0, 64, 64], "score": 0.3},
        ],
        "b": [{"box": [0, 0, 64, 64], "score": 0.8}],
    }
    half = {k: [{**f, "box": [v / 2 for v in f["box"]]} for f in fs] for k, fs in full.items()}
    data = {"1024": dets(full, 1.0), "640": dets(half, 0.5)}
    rows = ev.threshold_sweep(records, data, [0.2, 0.5, 0.7, 0.95])
    assert [r["min_score"] for r in rows] == [0.2, 0.5, 0.7, 0.95]
    low, mid, high, none = (r["1024"] for r in rows)
    assert (low["precision"], low["recall"]) == (pytest.approx(3 / 4), 1.0)
    assert (mid["precision"], mid["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert (high["precision"], high["recall"], high["false_positives"]) == (
        1.0,
        pytest.approx(2 / 3),
        0,
    )
    assert none["recall"] == 0.0 and none["ap_32"] == 0.0
    assert low["ap_32"] >= mid["ap_32"] >= high["ap_32"]  # a threshold only cuts the curve
    # at 640 px the ground truth is scaled with the frame: the same figures
    assert rows[0]["640"]["recall"] == 1.0 and rows[2]["640"]["precision"] == 1.0
    table = ev.render_sweep("`x`", rows)
    assert "| 0.70 |" in table and "1.00 / 0.67" in table
