"""Haar feature values against brute-force rectangle sums."""

import numpy as np
import pytest

from pipeline.vj.features import (
    KINDS,
    HaarFeatures,
    all_geometries,
    count_features,
    patch_std,
    rectangles,
)


def brute(patch: np.ndarray, kind: str, x: int, y: int, w: int, h: int) -> float:
    """The feature's definition written out with numpy slices."""
    p = patch.astype(np.int64)
    s = lambda xx, yy: p[yy : yy + h, xx : xx + w].sum()  # noqa: E731
    if kind == "x2":
        return s(x, y) - s(x + w, y)
    if kind == "y2":
        return s(x, y) - s(x, y + h)
    if kind == "x3":
        return s(x, y) - 2 * s(x + w, y) + s(x + 2 * w, y)
    if kind == "y3":
        return s(x, y) - 2 * s(x, y + h) + s(x, y + 2 * h)
    assert kind == "x4"
    return s(x, y) - s(x + w, y) - s(x, y + h) + s(x + w, y + h)


def test_feature_count_is_the_classic_number() -> None:
    assert count_features(24) == 162336


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_matches_brute_force(kind: str) -> None:
    rng = np.random.default_rng(KINDS.index(kind))
    window = 9
    kinds, geoms = all_geometries(window)
    sel = kinds == KINDS.index(kind)
    feats = HaarFeatures.from_geometry(window, kinds[sel], geoms[sel])
    patches = rng.integers(0, 256, size=(5, window, window)).astype(np.uint8)
    raw = feats.raw_values(patches)
    expected = np.array(
        [[brute(p, kind, *map(int, g)) for p in patches] for g in feats.geom], dtype=np.float64
    )
    np.testing.assert_array_equal(raw, expected)
    # normalised values divide by each patch's standard deviation
    np.testing.assert_allclose(
        feats.matrix(patches), expected / patch_std(patches)[None], rtol=1e-5, atol=1e-4
    )


def test_all_features_fit_and_use_at_most_nine_points() -> None:
    kinds, geoms = all_geometries(6)
    feats = HaarFeatures.from_geometry(6, kinds, geoms)
    assert ((feats.coef != 0).sum(axis=1) <= 9).all()
    assert feats.py.max() <= 6 and feats.px.max() <= 6
    # weights sum to zero: a constant patch gives 0 for every feature
    flat = np.full((1, 6, 6), 77, dtype=np.uint8)
    np.testing.assert_array_equal(feats.raw_values(flat), 0)


def test_features_ignore_brightness_and_contrast() -> None:
    rng = np.random.default_rng(5)
    feats = HaarFeatures.sample(12, 300, rng)
    p = rng.integers(40, 120, size=(4, 12, 12)).astype(np.float64)
    np.testing.assert_allclose(feats.matrix(p), feats.matrix(2 * p + 10), rtol=1e-4, atol=1e-4)


def test_bad_features_are_rejected() -> None:
    with pytest.raises(ValueError, match="leaves the window"):
        HaarFeatures.from_geometry(8, np.array([0]), np.array([[5, 0, 2, 2]]))
    with pytest.raises(ValueError, match="unknown"):
        rectangles("x5", 0, 0, 1, 1)
    with pytest.raises(ValueError, match="patches"):
        HaarFeatures.sample(8, 3, np.random.default_rng(0)).matrix(np.zeros((2, 9, 9)))
