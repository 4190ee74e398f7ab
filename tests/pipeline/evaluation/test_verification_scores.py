"""Score-level verification variants on synthetic encodings (no dataset needed), plus an
optional check on the cached LFW encodings that skips without the datasets."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.datasets import datasets_root
from pipeline.evaluation import verification_scores as S
from pipeline.recognition import verify as V


def _people(rng: np.random.Generator, n_people: int, per: int, spread: float) -> dict:
    """``{"P<i>/P<i>_<j>.jpg": encoding}``: people as random centres, images around them."""
    enc = {}
    for i in range(n_people):
        centre = rng.normal(0, 1, 128)
        centre *= 0.6 / np.linalg.norm(centre) * 1.0
        for j in range(per):
            enc[f"P{i}/P{i}_{j:04d}.jpg"] = centre + rng.normal(0, spread, 128)
    return enc


def _pairs(enc: dict, rng: np.random.Generator) -> list[V.Pair]:
    """Three identity-disjoint folds of genuine and impostor pairs."""
    people = sorted({k.split("/")[0] for k in enc})
    pairs = []
    for f in (1, 2, 3):
        mine = people[f - 1 :: 3]
        for p in mine:
            pairs.append(V.Pair(f"{p}/{p}_0000.jpg", f"{p}/{p}_0001.jpg", True, f))
        for a, b in zip(mine, mine[1:] + mine[:1], strict=True):
            pairs.append(V.Pair(f"{a}/{a}_0002.jpg", f"{b}/{b}_0002.jpg", False, f))
    rng.shuffle(pairs)
    return pairs


def test_held_out_never_scores_with_the_held_out_fold_and_picks_by_inner_cv() -> None:
    folds = np.repeat([1, 2, 3], 100)
    same = np.tile([True, False], 150)
    seen: list[set[int]] = []

    def scorer(fit: set[int], h: object) -> np.ndarray:
        seen.append(set(fit))
        # grid value "good" separates the pairs, "bad" is noise
        rng = np.random.default_rng(len(seen))
        if h == "good":
            return np.where(same, 0.3, 0.9) + rng.normal(0, 0.01, same.size)
        return rng.normal(0, 1, same.size)

    res = S.held_out(scorer, ["bad", "good"], same, folds)
    assert res.choices == ["good", "good", "good"]
    assert res.accuracies == [1.0, 1.0, 1.0] and res.errors == 0
    # the inner CV fits on one training fold, the outer on two; never on all three
    assert all(len(s) in (1, 2) for s in seen)
    assert all(0.3 < t < 0.9 for t in res.thresholds)


def test_cohort_stats_masks_and_takes_the_nearest_k() -> None:
    cohort = np.array([[1.0, 0], [2.0, 0], [3.0, 0], [10.0, 0]])
    x = np.zeros((1, 2))
    mu, sd = S.cohort_stats(x, cohort, 2)
    assert mu[0] == pytest.approx(1.5) and sd[0] == pytest.approx(0.5)
    mask = np.array([[True, False, False, False]])
    mu, _ = S.cohort_stats(x, cohort, 2, mask)
    assert mu[0] == pytest.approx(2.5)


def test_as_norm_penalises_a_pair_in_a_crowded_region() -> None:
    # two pairs at the same distance; the first sits among many cohort faces (a common
    # look: a small distance means little), the second far from any cohort face
    rng = np.random.default_rng(0)
    crowd = rng.normal(0, 0.05, (50, 8))
    lonely = np.full(8, 3.0)
    cohort = np.concatenate([crowd, lonely + rng.normal(0, 1.0, (5, 8))])
    step = np.zeros(8)
    step[0] = 0.3
    a = np.stack([np.zeros(8), lonely])
    b = a + step
    for mode in ("as", "mean"):
        s = S.as_norm(a, b, cohort, 10, mode)
        assert s[0] > s[1], mode  # the crowded pair looks less alike after normalisation
    with pytest.raises(ValueError):
        S.as_norm(a, b, cohort, 10, "z")


@pytest.mark.slow
def test_learned_metrics_separate_synthetic_people() -> None:
    rng = np.random.default_rng(1)
    enc = _people(rng, 60, 4, 0.03)
    keys = sorted(enc)
    m = S.fit_kissme(enc, keys, 0.5)
    w = S.fit_lda(enc, keys, 16, 0.5)
    wd, bias = S.fit_diag_lr(enc, keys, 1.0)
    assert m.shape == (128, 128) and w.shape == (128, 16) and wd.shape == (128,)
    same_d = enc["P0/P0_0000.jpg"] - enc["P0/P0_0001.jpg"]
    diff_d = enc["P0/P0_0000.jpg"] - enc["P1/P1_0000.jpg"]
    assert same_d @ m @ same_d < diff_d @ m @ diff_d
    assert np.linalg.norm(same_d @ w) < np.linalg.norm(diff_d @ w)
    assert -(same_d**2 @ wd + bias) < -(diff_d**2 @ wd + bias)


def test_score_variants_and_page_on_synthetic_encodings(tmp_path) -> None:
    rng = np.random.default_rng(2)
    plain = _people(rng, 45, 3, 0.04)
    mirror = {k: v + rng.normal(0, 0.01, 128) for k, v in plain.items()}
    pairs = _pairs(plain, rng)
    cohort = np.stack(list(_people(np.random.default_rng(3), 40, 1, 0.0).values()))
    rows = S.score_variants(
        plain, mirror, pairs, cohort, cohort + 0.001, log=lambda m: None, learned=False
    )
    names = {(r["variant"], r["encodings"]) for r in rows}
    assert ("flip-average", "flip") in names and ("as-norm-utkface", "flip") in names
    assert ("as-norm-lfw-train", "plain") in names and ("fusion-mean4", "plain+mirror") in names
    assert ("partial-mean-norm-utkface", "flip") in names
    assert ("half-mean-norm-lfw-train", "plain") in names
    assert all(len(r["per_fold_accuracy"]) == 3 for r in rows)
    # alpha 0 is in the partial grid: its fixed-grid entry is the plain flip distance
    partial = next(r for r in rows if r["variant"] == "partial-mean-norm-utkface")
    flip0 = partial["fixed_grid_value"]["(0.0, 5)"]
    assert (
        flip0["errors"]
        == next(r for r in rows if r["variant"] == "flip-average")["errors_held_out"]
    )
    flip = next(r for r in rows if r["variant"] == "flip-average")
    assert flip["mean_accuracy"] > 0.9  # well-separated synthetic people
    record = {"images": len(plain), "variants": rows, "command": "x", "date": "d"}
    S.write_scores_markdown(record, tmp_path / "p.md")
    text = (tmp_path / "p.md").read_text()
    assert "| flip-average | flip |" in text and "as-norm-lfw-train" in text


@pytest.mark.slow
def test_cached_lfw_encodings_reproduce_the_flip_row() -> None:
    """With the datasets and a previous `eval_verification.py --flip` cache: the score
    module's flip-average reference equals the page's 98.67 %."""
    from pipeline.datasets import REPO_ROOT

    root = datasets_root()
    runs = REPO_ROOT / "runs" / "verification"
    if root is None or not (root / "lfw-pairs-subset").is_dir():
        pytest.skip("datasets absent")
    if not (runs / "cache-5pt-jitter1-mirror" / "index.json").is_file():
        pytest.skip("no cached LFW encodings (run scripts/eval_verification.py --flip)")
    pairs = V.load_pairs(root / "lfw-pairs-subset" / "pairs.tsv")
    plain = S.load_cache_by_path(runs / "cache-5pt-jitter1")
    mirror = S.load_cache_by_path(runs / "cache-5pt-jitter1-mirror")
    from pipeline.recognition.encoder import flip_average

    d = np.array(
        [
            V.pair_distance(
                flip_average(plain[p.a], mirror[p.a]), flip_average(plain[p.b], mirror[p.b])
            )
            for p in pairs
        ]
    )
    same = np.array([bool(p.same) for p in pairs])
    folds = np.array([p.fold for p in pairs])
    res = S.held_out(lambda fit, h: d, [None], same, folds)
    assert res.errors == 24
