"""Video-like degradations for the encoding cache, and the v2 heads' group weights."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.agegender.split import Sample, group_of
from training.agegender.heads import group_weights, stack_seeds, views
from training.agegender.video_features import TIER_EDGES, _rng, chunk_key, degrade, training_tiers


def test_degrade_is_seeded_by_name_and_keeps_the_size() -> None:
    rng = np.random.default_rng(0)
    im = rng.integers(0, 256, size=(200, 200, 3), dtype=np.uint8)
    a = degrade(im, _rng("x.jpg"))
    b = degrade(im, _rng("x.jpg"))
    c = degrade(im, _rng("y.jpg"))
    assert a.shape == im.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)  # reproducible per file
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, im)


def test_chunks_put_dev_and_validation_apart() -> None:
    assert chunk_key("a.jpg", "dev").startswith("0dev")
    assert chunk_key("a.jpg", "val").startswith("1val")
    assert chunk_key("a.jpg", "train", tier=1).startswith("2t1c")
    # dev, then training tiers in order, then validation (the build's order)
    keys = [
        chunk_key("a.jpg", "dev"),
        chunk_key("a.jpg", "train", tier=0),
        chunk_key("b.jpg", "train", tier=2),
        chunk_key("a.jpg", "val"),
    ]
    assert sorted(keys, key=lambda k: ({"0": 0, "2": 1, "1": 2}[k[0]], k)) == keys


def test_training_tiers_are_balanced_subsets() -> None:
    # one big group (500 files) and one small one (20): tier 0 holds the whole small group
    # and only TIER_EDGES[1] files of the big one
    big = [Sample(f"30_0_0_{i}.jpg", 30, 0, 0) for i in range(500)]
    small = [Sample(f"70_1_1_{i}.jpg", 70, 1, 1) for i in range(20)]
    samples = big + small
    tiers = training_tiers(samples)
    assert all(t == 0 for t in tiers[500:])
    assert sum(t == 0 for t in tiers[:500]) == TIER_EDGES[1]
    assert sum(t == 1 for t in tiers[:500]) == TIER_EDGES[2] - TIER_EDGES[1]
    assert sum(t == len(TIER_EDGES) - 1 for t in tiers[:500]) == 500 - TIER_EDGES[-1]
    assert training_tiers(samples) == tiers  # fixed order
    assert {group_of(s.age, s.gender, s.race) for s in small} == {"black/female/60+"}


def test_group_weights_even_out_groups() -> None:
    ages = np.array([30] * 90 + [70] * 10)
    genders = np.zeros(100, dtype=int)
    races = np.zeros(100, dtype=int)
    w = group_weights(ages, genders, races, power=1.0, cap=100.0)
    assert w.mean() == pytest.approx(1.0)
    # power 1: each group's total weight is the same
    assert w[:90].sum() == pytest.approx(w[90:].sum())
    half = group_weights(ages, genders, races, power=0.5, cap=100.0)
    assert 1 < half[95] / half[0] < w[95] / w[0]
    assert np.all(group_weights(ages, genders, races, power=0.0) == pytest.approx(1.0))


def test_views_and_stacked_seeds() -> None:
    feats = np.arange(2 * 384, dtype=np.float32).reshape(2, 384)
    assert views(feats, "plain")[0, 0] == 0 and views(feats, "degraded")[0, 0] == 256

    class Fake:
        def __init__(self, k: float) -> None:
            self.k = k

    import training.agegender.heads as heads

    orig = heads._weights
    try:
        heads._weights = lambda m: {"W0": np.full((3, 2), m.k), "Wa": np.full((2, 4), m.k)}  # type: ignore[assignment]
        arrays = stack_seeds([Fake(1.0), Fake(2.0)], np.zeros(3), np.ones(3))
    finally:
        heads._weights = orig  # type: ignore[assignment]
    assert arrays["W0"].shape == (2, 3, 2) and arrays["Wa"][1, 0, 0] == 2.0
    assert arrays["mean"].shape == (3,)


def test_identity_weights_count_a_person_with_many_photos_less() -> None:
    from training.agegender.heads import identity_weights

    rng = np.random.default_rng(0)
    person = rng.normal(size=(1, 8)) + 0.01 * rng.normal(size=(4, 8))  # 4 photos, one person
    others = 10 * rng.normal(size=(4, 8))  # 4 different people
    kid = person[:1] + 0.001  # a child close to the person: children are left at weight 1
    x = np.concatenate([person, others, kid])
    ages = np.array([30] * 8 + [5])
    w = identity_weights(x, ages, threshold=0.5)
    assert w.mean() == pytest.approx(1.0)
    assert w[0] == pytest.approx(w[3]) and w[4] == pytest.approx(2 * w[0])  # 1/sqrt(4)
    assert w[8] == pytest.approx(w[4])


def test_group_weights_of_a_subset_stand_for_the_population() -> None:
    # the subset holds 10 of 90 young faces and all 10 old ones: with power 0 the weights
    # restore the population's 90:10, with power 1 both groups weigh the same
    ages = np.array([30] * 10 + [70] * 10)
    zeros = np.zeros(20, dtype=int)
    pop = {"white/male/20-39": 90, "white/male/60+": 10}
    w0 = group_weights(ages, zeros, zeros, power=0.0, population=pop)
    assert w0[:10].sum() / w0[10:].sum() == pytest.approx(9.0)
    w1 = group_weights(ages, zeros, zeros, power=1.0, cap=100.0, population=pop)
    assert w1[:10].sum() == pytest.approx(w1[10:].sum())
    assert w1.mean() == pytest.approx(1.0)


def test_mirrored_cache_in_the_video_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.agegender.split import sides_of
    from training.agegender import data, heads

    names = np.array([f"{i}_0_0_2017.jpg" for i in range(20, 40)])
    feats = np.random.default_rng(0).normal(size=(len(names), 256)).astype(np.float32)
    monkeypatch.setattr(
        data, "mirrored_cache", lambda partial=False: {"names": names, "features": feats}
    )
    d = heads.mirrored_as_video()
    assert d["features"].shape == (len(names), 384)
    np.testing.assert_array_equal(heads.views(d["features"], "mirror"), feats[:, 128:])
    assert np.isnan(heads.views(d["features"], "degraded")).all()
    np.testing.assert_array_equal(d["sides"], sides_of(names))
