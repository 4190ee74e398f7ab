"""Stump search and AdaBoost steps against brute force."""

import numpy as np
import pytest

from training.vj.boost import Stump, StumpSearch, adaboost_update, initial_weights


def brute_best(X: np.ndarray, w: np.ndarray, y: np.ndarray) -> float:
    """Lowest weighted error over every feature, midpoint threshold and polarity."""
    best = np.inf
    for f in range(X.shape[0]):
        vals = np.unique(X[f])
        for t in (vals[1:] + vals[:-1]) / 2:
            for p in (1, -1):
                pred = p * X[f] < p * t
                best = min(best, w[pred != y].sum())
    return best


@pytest.mark.parametrize("seed", range(6))
def test_stump_search_finds_the_brute_force_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, f = 40, 7
    # integer values force ties, which thresholds must not split
    X = rng.integers(0, 6, size=(f, n)).astype(np.float32)
    y = rng.random(n) < 0.4
    w = rng.random(n)
    w /= w.sum()
    st = StumpSearch(X, chunk=3).best(w, y)
    expected = brute_best(X, w, y)
    assert st.error == pytest.approx(expected, abs=1e-6)
    # the returned stump really has that error
    pred = st.predict(X[st.feature]).astype(bool)
    assert w[pred != y].sum() == pytest.approx(expected, abs=1e-6)
    # and its threshold lies strictly between two distinct values of the feature
    assert not np.any(X[st.feature] == st.threshold)


def test_stump_separates_separable_data_with_both_polarities() -> None:
    x = np.array([[1, 2, 3, 10, 11, 12]], dtype=np.float32)
    w = np.full(6, 1 / 6)
    low = StumpSearch(x).best(w, np.array([1, 1, 1, 0, 0, 0]))
    assert (low.polarity, low.error) == (1, 0.0) and 3 < low.threshold < 10
    high = StumpSearch(x).best(w, np.array([0, 0, 0, 1, 1, 1]))
    assert (high.polarity, high.error) == (-1, 0.0) and 3 < high.threshold < 10


def test_stump_predict() -> None:
    s = Stump(0, 2.0, -1, 0.0)
    np.testing.assert_array_equal(s.predict(np.array([1.0, 3.0])), [0, 1])


def test_initial_weights_split_half_and_half() -> None:
    w = initial_weights(np.array([1, 1, 1, 0]))
    assert w[:3].sum() == pytest.approx(0.5) and w[3] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        initial_weights(np.array([1, 1]))


def test_adaboost_update_follows_viola_jones() -> None:
    w = np.array([0.1, 0.2, 0.3, 0.4])
    y = np.array([1, 1, 0, 0])
    pred = np.array([1, 0, 0, 0])  # sample 1 (weight 0.2) is wrong
    new, alpha, err = adaboost_update(w, y, pred)
    assert err == pytest.approx(0.2)
    beta = 0.2 / 0.8
    assert alpha == pytest.approx(np.log(1 / beta))
    raw = np.array([0.1 * beta, 0.2, 0.3 * beta, 0.4 * beta])
    np.testing.assert_allclose(new, raw / raw.sum())
    # after the update the misclassified samples carry exactly half the weight
    assert new[1] == pytest.approx(0.5)
