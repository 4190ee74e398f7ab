"""The verification evaluation's protocol (pipeline.evaluation.verification) on hand-made
distances, boxes and encodings (no dataset, no dlib model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.evaluation import verification as ev
from pipeline.recognition.verify import EncodingCache, Pair


def test_box_map_recovers_a_known_offset_and_scale():
    # HOG's box is the detector's box shifted right by a quarter width, 1.2x as wide
    det_boxes = [[10, 20, 40, 40], [100, 50, 80, 80], [0, 0, 20, 20]]
    pairs = []
    for x, y, w, h in det_boxes:
        cx, cy = x + w / 2 + 0.25 * w, y + h / 2
        pairs.append(([x, y, w, h], (cx - 0.6 * w, cy - 0.5 * h, 1.2 * w, 1.0 * h)))
    m = ev.fit_box_map(pairs)
    assert m == pytest.approx([0.25, 0.0, 1.2, 1.0])
    # applied to a detector box of 50x50 at (20, 20): centre (45, 45) -> (57.5, 45), 60x50
    assert ev.apply_box_map([20, 20, 50, 50], m, 200, 200) == (28, 20, 60, 50)
    # clipped to the image
    assert ev.apply_box_map([20, 20, 50, 50], m, 70, 200) == (28, 20, 42, 50)


def test_fit_metric_full_shrinkage_is_the_euclidean_distance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)) * [1.0, 2.0, 3.0, 4.0]
    w = ev.fit_metric(x, [str(i % 5) for i in range(40)], "pca-whiten", 1.0)
    np.testing.assert_allclose(w, np.eye(4), atol=1e-9)


def test_pca_whitening_makes_the_training_covariance_isotropic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 3)) * [1.0, 3.0, 9.0]
    w = ev.fit_metric(x, ["a"] * 500, "pca-whiten", 0.0)
    cov = np.cov((x - x.mean(axis=0)) @ w, rowvar=False, bias=True)
    scale = np.trace(np.cov(x, rowvar=False, bias=True)) / 3
    np.testing.assert_allclose(cov, scale * np.eye(3), rtol=1e-6, atol=1e-6)


def test_wccn_needs_identities_with_two_images():
    with pytest.raises(ValueError, match="two images"):
        ev.fit_metric(np.eye(3), ["a", "b", "c"], "wccn", 0.0)
    with pytest.raises(ValueError, match="unknown metric"):
        ev.fit_metric(np.eye(3), ["a", "a", "a"], "cosine", 0.0)


def test_identity_is_the_lfw_folder():
    assert ev.identity("Aaron_Guiel/Aaron_Guiel_0001.jpg") == "Aaron_Guiel"


def _separable(n_per_fold: int = 10):
    """3 folds; genuine pairs at 0.3-0.5, impostors at 0.7-0.9 except one genuine at 0.8
    in fold 3 (one error out of 2 * n_per_fold there)."""
    d, same, folds = [], [], []
    for f in (1, 2, 3):
        d += list(np.linspace(0.3, 0.5, n_per_fold)) + list(np.linspace(0.7, 0.9, n_per_fold))
        same += [True] * n_per_fold + [False] * n_per_fold
        folds += [f] * (2 * n_per_fold)
    d[-n_per_fold - 1] = 0.8  # fold 3's last genuine pair looks like an impostor
    return np.array(d), np.array(same), np.array(folds)


def test_evaluate_scores_each_held_out_fold_with_the_other_folds_threshold():
    d, same, folds = _separable()
    r = ev.evaluate(d, same, folds, default=0.6)
    accs = {row["fold"]: row["accuracy"] for row in r["per_fold"]}
    assert accs == {1: 1.0, 2: 1.0, 3: pytest.approx(19 / 20)}
    assert r["mean_accuracy"] == pytest.approx((1 + 1 + 0.95) / 3)
    assert r["errors_held_out"] == 1
    # thresholds chosen in the gap between 0.5 and 0.7
    assert all(0.5 < row["threshold"] < 0.7 for row in r["per_fold"])
    assert r["accuracy_at_default"] == pytest.approx(59 / 60)
    assert r["tar_far_at_default"] == (pytest.approx(29 / 30), 0.0)
    # TAR@FAR: threshold just below the smallest impostor of the other folds (0.7)
    far = r["tar_at_far"]["0.001"]
    assert far["mean_far_held_out"] == 0.0
    assert far["mean_tar"] == pytest.approx((1 + 1 + 0.9) / 3)


def test_evaluate_with_per_fold_distances_uses_them_for_the_held_out_fold():
    d, same, folds = _separable()
    # when fold 1 is held out its genuine pairs look like impostors (0.95), elsewhere not
    worse = np.where(same & (folds == 1), 0.95, d)
    per_fold = {1: worse, 2: d, 3: d}
    r = ev.evaluate(d, same, folds, per_fold=per_fold, fixed_points=False)
    accs = {row["fold"]: row["accuracy"] for row in r["per_fold"]}
    assert accs[1] == 0.5 and accs[2] == 1.0
    assert ev.evaluate(d, same, folds)["per_fold"][0]["accuracy"] == 1.0
    assert "accuracy_at_default" not in r


def test_calibrate_fallback_is_the_median_central_box(tmp_path):
    cache = EncodingCache(tmp_path)
    cache.put_detection("a.jpg", (100, 100), [(20, 30, 50, 50)])
    cache.put_detection("b.jpg", (100, 100), [(30, 30, 40, 40), (0, 0, 10, 10)])
    cache.put_detection("c.jpg", (200, 100), [(60, 20, 60, 60)])
    cache.put_detection("d.jpg", (100, 100), [])
    med, found, missing = ev.calibrate_fallback(cache, ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    assert (found, missing) == (3, 1)
    assert med == (0.3, 0.3, 0.4, 0.5)


def test_choose_shrink_picks_the_plain_distance_on_isotropic_data():
    rng = np.random.default_rng(2)
    people = {f"p{i}": rng.normal(size=4) * 3 for i in range(12)}
    enc, pairs = {}, []
    for name, centre in people.items():
        for j in range(2):
            enc[f"{name}/{j}.jpg"] = centre + rng.normal(size=4) * 0.1
    names = list(people)
    for i, name in enumerate(names):
        fold = 1 + i % 2
        other = names[(i + 2) % len(names)]
        pairs.append(Pair(f"{name}/0.jpg", f"{name}/1.jpg", True, fold))
        pairs.append(Pair(f"{name}/0.jpg", f"{other}/1.jpg", False, fold))
    shrink, scores = ev.choose_shrink("pca-whiten", enc, pairs, [1, 2])
    assert scores[f"{shrink:g}"] == max(scores.values())
    assert scores["1"] == 1.0  # the plain distance separates these people
    assert shrink == 1.0  # ties go to more shrinkage


def test_write_markdown_renders_a_table_row_per_variant(tmp_path):
    d, same, folds = _separable()
    results = ev.evaluate(d, same, folds, default=0.6)
    record = {
        "variant": "5pt-jitter1",
        "settings": {"num_jitters": 1, "landmarks": 5},
        "results": results,
        "fallbacks": 2,
        "images": 60,
        "fallback_pairs": {"pairs": 0, "accuracy": None},
        "fallback_box_calibrated": [0.2, 0.2, 0.6, 0.6],
        "fallback_box_used": [0.2, 0.2, 0.6, 0.6],
        "timing": {
            "n": 3,
            "hog_upsample1_ms_median": 5.0,
            "encode_ms_median": 70.0,
            "cost_vs_plain": 1.0,
        },
        "machine": {"cpu": "cpu", "cores": 2, "loadavg_end": [1.5, 1.0, 1.0]},
        "command": "python scripts/eval_verification.py",
        "date": "2026-01-01 00:00 UTC",
    }
    out = tmp_path / "recognition-lfw"
    out.mkdir()
    (out / "5pt-jitter1.json").write_text(json.dumps(record))
    ev.write_markdown(out, tmp_path / "page.md")
    text = (tmp_path / "page.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 5pt-jitter1 |"))
    assert "| 100.00 % | 100.00 % | 95.00 % | **98.33 %** | 1 |" in row
    assert "2 / 60" in row
    assert "load 1.5" in text
