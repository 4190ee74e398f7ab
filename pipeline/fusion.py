"""Per-track fusion of identity and age/gender samples.

Recognition and age/gender run on a few samples of each track, not on every frame;
these pure functions turn a track's samples into what its event says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.recognition.openset import OpenSetRule, rule_of


@dataclass
class FusedIdentity:
    name: str | None  # None: unknown
    distance: float | None  # of the track's mean encoding to the nearest person's photo
    agreement: float  # share of samples whose own nearest enrolled person is `name`
    samples: int
    nearest: str | None = None  # the nearest person, named or not
    threshold: float | None = None  # that person's acceptance threshold (open-set rule)
    margin: float | None = None  # second-nearest person's distance minus `distance`
    reason: str = ""  # why the track is (not) named


def fuse_identity(
    encodings: np.ndarray,
    gallery_names: Sequence[str],
    gallery: np.ndarray,
    threshold: float | OpenSetRule,
    negative_names: Sequence[str] = (),
    negatives: np.ndarray | None = None,
    weights: Sequence[float] | None = None,
    gallery_quality: Sequence[float] | None = None,
) -> FusedIdentity:
    """Identity of a track from its samples' encodings, under the open-set rule.

    The samples' mean encoding, weighted by ``weights`` (face quality) when given, is a
    template: averaging cancels per-frame noise of pose, blur and small faces. It is
    compared with every enrolled person and named only when the open-set rule accepts
    the nearest one (:mod:`pipeline.recognition.openset`: a threshold that tightens as
    the gallery grows, a margin over the second-nearest person, only good enrolment
    photos counting, per-person thresholds); otherwise it is unknown. ``threshold`` is
    the rule: an :class:`OpenSetRule` (the configured one: ``recognition.rule``), or a
    plain float (the default rule with that float as the pair ceiling).
    ``gallery_quality``: each photo's quality, when known.
    ``agreement`` says how many single samples pick the same person.

    ``negatives`` are faces a user marked "this is not NAME": a person is excluded when
    the track is at least as close to one of their negatives as to any of their photos (and the
    next nearest person is considered instead).
    """
    n = len(encodings)
    if n == 0 or len(gallery_names) == 0:
        return FusedIdentity(None, None, 0.0, n, reason="no samples or no enrolled person")
    enc = np.asarray(encodings, dtype=float)
    gal = np.asarray(gallery, dtype=float)
    w = None if weights is None else np.asarray(weights, dtype=float)
    if w is not None and (len(w) != n or not np.isfinite(w).all() or w.sum() <= 0):
        w = None
    mean = np.average(enc, axis=0, weights=w)
    d_mean = np.linalg.norm(gal - mean, axis=1)
    names = np.asarray(gallery_names, dtype=object)
    if negatives is not None and len(negative_names):
        d_neg = np.linalg.norm(np.asarray(negatives, dtype=float) - mean, axis=1)
        neg_names = np.asarray(negative_names, dtype=object)
        for person in set(negative_names):
            mine = names == person
            if mine.any() and d_neg[neg_names == person].min() <= d_mean[mine].min():
                d_mean = np.where(mine, np.inf, d_mean)
    prepared = rule_of(threshold).prepare(gallery_names, gallery, gallery_quality)
    decision = prepared.decide(d_mean)
    if decision.nearest is None:
        return FusedIdentity(None, None, 0.0, n, reason=decision.reason)
    per_sample = np.linalg.norm(enc[:, None, :] - gal[None, :, :], axis=2)
    per_sample = np.where(prepared.counts[None, :], per_sample, np.inf).argmin(axis=1)
    agreement = float(np.mean([gallery_names[k] == decision.nearest for k in per_sample]))
    return FusedIdentity(
        decision.name,
        decision.distance,
        agreement,
        n,
        nearest=decision.nearest,
        threshold=decision.threshold,
        margin=decision.margin,
        reason=decision.reason,
    )


@dataclass
class FusedAttributes:
    age: float | None
    age_spread: float | None  # half the inter-quartile range, years
    gender: str | None  # "male" | "female" | None (unsure)
    gender_confidence: float | None
    samples: int


def fuse_attributes(
    ages: Sequence[float], p_female: Sequence[float], min_confidence: float = 0.6
) -> FusedAttributes:
    """Median age with a spread; mean P(female); abstain on gender when unsure."""
    if not ages:
        return FusedAttributes(None, None, None, None, 0)
    a = np.asarray(ages, dtype=float)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    p = float(np.mean(p_female))
    gender, conf = ("female", p) if p >= 0.5 else ("male", 1.0 - p)
    return FusedAttributes(
        age=float(med),
        age_spread=float((q3 - q1) / 2.0),
        gender=gender if conf >= min_confidence else None,
        gender_confidence=conf,
        samples=len(a),
    )
