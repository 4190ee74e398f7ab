"""Applying the ensemble's stacker and the per-model calibrations (fitted by
:mod:`training.agegender.stacking`).

The ``ensemble`` backend combines its members' predictions with a tiny linear stacker:

* age: ``b + sum_i w_i * age_i`` (the members' expected ages, years); or, with
  ``age_pool: product``, the members that output an age *distribution* (facepipe's own
  models) are pooled first - their distributions multiplied (each raised to
  ``pool_exponent``, a product of experts) - and the median of the pooled distribution
  takes their place: ``b + w_pool * median + sum_j w_j * age_j`` over the other members.
  The median is what minimises the absolute error, and the product keeps the ages on
  which the members agree;
* gender: ``p(female) = sigmoid(c + sum_i (v_i + u_i * k) * logit(p_i))``, where
  ``k = child_weight(age)`` is 1 for a stacked age of 0, falling linearly to 0 at
  ``CHILD_AGE`` years (``u`` all zero: no age dependence), or the plain mean of the
  members' p(female) (``gender_combine: mean``). The age term lets the stacker trust the
  members less on children, whose gender they often get wrong: their p(female) comes
  out nearer 0.5, so abstention ("unknown" below a confidence) hits them first.

A calibration is a one-member stacker of one model file (``NAME.calibration.json`` beside
it). Both are stored as JSON next to the models with the SHA-1 of the model files they
were fitted for; this module reads and applies them (numpy only, no fitting).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.agegender.runtime import MODELS_DIR

log = logging.getLogger(__name__)

EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1.0 - EPS)
    return np.log(p / (1.0 - p))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


CHILD_AGE = 20.0
"""Stacked age (years) from which the gender combination no longer depends on age."""


def child_weight(age: np.ndarray) -> np.ndarray:
    """1 at age 0, falling linearly to 0 at :data:`CHILD_AGE`."""
    return np.clip((CHILD_AGE - np.asarray(age, dtype=np.float64)) / CHILD_AGE, 0.0, 1.0)


@dataclass
class Stacker:
    """Linear combination of member predictions (see the module docstring)."""

    members: tuple[str, ...]
    age_weights: np.ndarray  # (M,)
    age_bias: float
    gender_weights: np.ndarray  # (M,)
    gender_bias: float
    gender_combine: str = "logistic"  # or "mean": plain mean of p(female)
    gender_child_weights: np.ndarray | None = None  # (M,) u_i; None: no age dependence
    age_pool: str = "none"  # or "product": pool the members' age distributions
    pool_members: tuple[str, ...] = ()  # the members pooled (their age_weights are 0)
    pool_weight: float = 1.0
    pool_exponent: float = 1.0

    @classmethod
    def mean(cls, members: tuple[str, ...]) -> Stacker:
        """The plain mean of ages; mean of p(female) is approximated by the mean logit."""
        m = len(members)
        return cls(members, np.full(m, 1.0 / m), 0.0, np.full(m, 1.0 / m), 0.0)

    def __call__(
        self,
        ages: np.ndarray,
        p_female: np.ndarray,
        age_probs: list[np.ndarray | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``ages``/``p_female``: (N, M) member predictions -> (age (N,), p_female (N,)).
        ``age_probs``: per member its (N, bins) age distributions or None (needed for
        ``age_pool: product``)."""
        a = np.asarray(ages, dtype=np.float64) @ self.age_weights + self.age_bias
        if self.age_pool == "product":
            idx = [self.members.index(m) for m in self.pool_members]
            if age_probs is None or any(age_probs[i] is None for i in idx):
                raise ValueError(f"age_pool needs the age distributions of {self.pool_members}")
            pooled = pool_product([age_probs[i] for i in idx], self.pool_exponent)  # type: ignore[misc]
            a = a + self.pool_weight * distribution_median(pooled)
        a = np.clip(a, 0.0, 100.0)
        if self.gender_combine == "mean":
            return a, np.asarray(p_female, dtype=np.float64).mean(axis=1)
        z = logit(p_female)
        g = z @ self.gender_weights + self.gender_bias
        if self.gender_child_weights is not None:
            g = g + child_weight(a) * (z @ self.gender_child_weights)
        return a, sigmoid(g)

    def to_json(self) -> dict[str, Any]:
        d = {
            "members": list(self.members),
            "age_weights": [round(float(v), 6) for v in self.age_weights],
            "age_bias": round(float(self.age_bias), 6),
            "gender_weights": [round(float(v), 6) for v in self.gender_weights],
            "gender_bias": round(float(self.gender_bias), 6),
            "gender_combine": self.gender_combine,
        }
        if self.gender_child_weights is not None:
            d["gender_child_weights"] = [round(float(v), 6) for v in self.gender_child_weights]
        if self.age_pool != "none":
            d["age_pool"] = self.age_pool
            d["pool_members"] = list(self.pool_members)
            d["pool_weight"] = round(float(self.pool_weight), 6)
            d["pool_exponent"] = round(float(self.pool_exponent), 6)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Stacker:
        members = tuple(str(m) for m in d["members"])
        aw = np.asarray(d["age_weights"], dtype=np.float64)
        gw = np.asarray(d["gender_weights"], dtype=np.float64)
        if aw.shape != (len(members),) or gw.shape != (len(members),):
            raise ValueError("stacker weights do not match its members")
        combine = str(d.get("gender_combine", "logistic"))
        if combine not in ("logistic", "mean"):
            raise ValueError(f"unknown gender_combine {combine!r}")
        cw = d.get("gender_child_weights")
        child = None if cw is None else np.asarray(cw, dtype=np.float64)
        if child is not None and child.shape != (len(members),):
            raise ValueError("stacker child weights do not match its members")
        pool = str(d.get("age_pool", "none"))
        if pool not in ("none", "product"):
            raise ValueError(f"unknown age_pool {pool!r}")
        pooled = tuple(str(m) for m in d.get("pool_members", ()))
        if pool == "product" and (not pooled or any(m not in members for m in pooled)):
            raise ValueError("pool_members must be members of the stacker")
        return cls(
            members,
            aw,
            float(d["age_bias"]),
            gw,
            float(d["gender_bias"]),
            combine,
            child,
            pool,
            pooled,
            float(d.get("pool_weight", 1.0)),
            float(d.get("pool_exponent", 1.0)),
        )


def pool_product(probs: list[np.ndarray], exponent: float = 1.0) -> np.ndarray:
    """Product of experts: ``prod_i p_i ** exponent``, renormalised, per row."""
    logp = sum(exponent * np.log(np.asarray(p, dtype=np.float64) + 1e-12) for p in probs)
    logp = np.asarray(logp) - np.max(logp, axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def distribution_median(probs: np.ndarray) -> np.ndarray:
    """Median (years) of distributions over one-year bins (bin k covers k-0.5..k+0.5),
    interpolated linearly inside the bin where the cumulative sum passes 0.5."""
    p = np.asarray(probs, dtype=np.float64)
    c = np.cumsum(p, axis=1)
    rows = np.arange(len(p))
    i = np.minimum((c < 0.5).sum(axis=1), p.shape[1] - 1)
    before = np.where(i > 0, c[rows, np.maximum(i - 1, 0)], 0.0)
    return i - 0.5 + (0.5 - before) / np.maximum(p[rows, i], 1e-12)


def digest(path: Path) -> str:
    """Short SHA-1 of a model file (what a fitted stacker or calibration records)."""
    return hashlib.sha1(path.read_bytes()).hexdigest()[:10]


MEMBER_MODELS: dict[str, Path] = {
    "scratch": MODELS_DIR / "scratch.tflite",
    "transfer": MODELS_DIR / "transfer.npz",
}
"""The model file of each member facepipe trains (these can carry a calibration)."""


def calibrate(
    stacker: Stacker, ages: np.ndarray, p_female: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One model's (age, p_female) through its one-member stacker (a calibration)."""
    a = np.asarray(ages, dtype=np.float64)[:, None]
    p = np.asarray(p_female, dtype=np.float64)[:, None]
    return stacker(a, p)


def stale_members(d: dict[str, Any]) -> list[str]:
    """Members of a stored stacker whose model file changed since it was fitted."""
    return [
        m
        for m, sha in d.get("member_models_sha1", {}).items()
        if m in MEMBER_MODELS and MEMBER_MODELS[m].is_file() and digest(MEMBER_MODELS[m]) != sha
    ]


def calibration_path(model: Path) -> Path:
    """Where a model file's calibration lives: ``NAME.calibration.json`` beside it."""
    return model.with_name(model.stem + ".calibration.json")


def load_calibration(model: Path) -> Stacker | None:
    """The calibration of a model file, or None when it has none."""
    path = calibration_path(model)
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    if d.get("model_sha1") and model.is_file() and d["model_sha1"] != digest(model):
        # fitted for another version of the model (it was retrained): do not apply
        log.warning("ignoring %s: fitted for another version of %s", path.name, model.name)
        return None
    return Stacker.from_json(d)
