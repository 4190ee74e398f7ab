"""Video-like degradations for the encoding cache, and the v2 heads' group weights."""

from __future__ import annotations

import numpy as np
import pytest

from training.agegender.heads import group_weights, stack_seeds, views
from training.agegender.video_features import _rng, chunk_key, degrade


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
    assert chunk_key("a.jpg", "train").startswith("2train")


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
