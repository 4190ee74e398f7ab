"""AdaBoost with decision stumps, trained on a precomputed feature matrix.

A decision stump on feature ``f`` says "face" when ``polarity * x_f < polarity * theta``.
The best stump of *every* feature is found in one vectorised pass per boosting round:

1. once per training set, each feature's values are argsorted (``order``) and the
   positions where the sorted value changes are marked (a threshold can only sit there);
2. per round, the signed sample weights (``+w`` for faces, ``-w`` for non-faces) are
   gathered in each feature's sorted order and cumulatively summed. With ``c_k`` the
   cumulative signed weight of the ``k + 1`` smallest values, a threshold just above them
   errs by ``T+ - c_k`` with polarity +1 (faces below) and by ``T- + c_k`` with polarity
   -1 (faces above), so the best threshold of a feature is where ``c_k`` is largest or
   smallest.

The weak learners are then combined by discrete AdaBoost as in Viola-Jones:
``beta = err / (1 - err)``, correctly classified samples' weights are multiplied by
``beta``, and the stump votes with ``alpha = log(1 / beta)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stump:
    """One weak classifier: feature index, threshold, polarity (+1/-1), weighted error."""

    feature: int
    threshold: float
    polarity: int
    error: float

    def predict(self, values: np.ndarray) -> np.ndarray:
        """1 where the stump says "face", else 0, for this feature's values."""
        return (self.polarity * np.asarray(values) < self.polarity * self.threshold).astype(np.int8)


class StumpSearch:
    """Finds the lowest-weighted-error stump over all features of a matrix ``(F, N)``."""

    def __init__(self, X: np.ndarray, chunk: int = 512) -> None:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] < 2:
            raise ValueError(f"need a (features, samples>=2) matrix, got {X.shape}")
        self.X = X
        self.chunk = chunk
        f, n = X.shape
        self.order = np.empty((f, n), dtype=np.int32)
        self.splittable = np.empty((f, n - 1), dtype=bool)
        for s in range(0, f, chunk):
            o = np.argsort(X[s : s + chunk], axis=1, kind="stable")
            xs = np.take_along_axis(X[s : s + chunk], o, axis=1)
            self.order[s : s + chunk] = o
            self.splittable[s : s + chunk] = xs[:, 1:] > xs[:, :-1]

    def best(self, weights: np.ndarray, labels: np.ndarray) -> Stump:
        """The stump with the lowest weighted error; ``labels`` are 1 (face) / 0."""
        w = np.asarray(weights, dtype=np.float64)
        y = np.asarray(labels).astype(bool)
        if w.shape != y.shape or w.shape[0] != self.X.shape[1]:
            raise ValueError("weights and labels must have one entry per sample")
        t_pos, t_neg = float(w[y].sum()), float(w[~y].sum())
        signed = np.where(y, w, -w).astype(np.float32)
        best_err, best_f, best_pol = np.inf, -1, 0
        for s in range(0, self.X.shape[0], self.chunk):
            c = np.cumsum(signed[self.order[s : s + self.chunk]], axis=1)[:, :-1]
            ok = self.splittable[s : s + self.chunk]
            hi = np.where(ok, c, -np.inf).max(axis=1)  # polarity +1: error t_pos - hi
            lo = np.where(ok, c, np.inf).min(axis=1)  # polarity -1: error t_neg + lo
            e_pos, e_neg = t_pos - hi, t_neg + lo
            i_pos, i_neg = int(np.argmin(e_pos)), int(np.argmin(e_neg))
            if e_pos[i_pos] < best_err:
                best_err, best_f, best_pol = float(e_pos[i_pos]), s + i_pos, 1
            if e_neg[i_neg] < best_err:
                best_err, best_f, best_pol = float(e_neg[i_neg]), s + i_neg, -1
        if best_f < 0:
            raise ValueError("no feature can split these samples (all values equal)")
        # exact float64 re-scan of the winning feature for its threshold and error
        o = self.order[best_f]
        xs = self.X[best_f, o].astype(np.float64)
        c = np.cumsum(signed[o].astype(np.float64))[:-1]
        ok = self.splittable[best_f]
        if best_pol == 1:
            k = int(np.argmax(np.where(ok, c, -np.inf)))
            err = t_pos - c[k]
        else:
            k = int(np.argmin(np.where(ok, c, np.inf)))
            err = t_neg + c[k]
        threshold = 0.5 * (xs[k] + xs[k + 1])
        return Stump(best_f, float(threshold), best_pol, float(max(err, 0.0)))


def initial_weights(labels: np.ndarray) -> np.ndarray:
    """Viola-Jones start: half the weight on the faces, half on the non-faces."""
    y = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("need both faces and non-faces to boost")
    return np.where(y, 0.5 / n_pos, 0.5 / n_neg)


def adaboost_update(
    weights: np.ndarray, labels: np.ndarray, predictions: np.ndarray, eps: float = 1e-10
) -> tuple[np.ndarray, float, float]:
    """One discrete AdaBoost step: returns (new normalised weights, alpha, weighted error).

    ``weights`` are normalised first; correctly classified samples are multiplied by
    ``beta = err / (1 - err)``; ``alpha = log(1 / beta)``.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    correct = np.asarray(predictions).astype(bool) == np.asarray(labels).astype(bool)
    err = float(np.clip(w[~correct].sum(), eps, 1 - eps))
    beta = err / (1.0 - err)
    new = np.where(correct, w * beta, w)
    return new / new.sum(), float(np.log(1.0 / beta)), err
