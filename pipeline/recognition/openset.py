"""Open-set identification: which enrolled person a face is, or nobody.

A pair threshold (1:1, :mod:`pipeline.recognition.thresholds`) does not hold for 1:N: a
stranger compared with N enrolled people gets N chances of a false match, so the share of
strangers given *some* name grows with the gallery (docs/openset.md measured 10 % of them
named at 10 people and 94 % at 1,000, at the pair threshold 0.60). The rule here
(:class:`OpenSetRule`, applied by :func:`pipeline.fusion.fuse_identity` to every track
the sink names and every event a correction re-matches) names a face only when all of
these hold, and abstains (unknown) otherwise:

1. **Gallery size.** The nearest person's distance is within the threshold at which a
   stranger gets a name with probability ``target_fpir`` (the false-positive
   identification rate) against a gallery of N people:
   ``t(N) = Q(1 - (1 - target_fpir) ** (1 / N))``, where ``Q(q)`` is the distance within
   which a share ``q`` of impostor pairs falls (the calibrated impostor distance
   distribution, :data:`CALIBRATED`). More people enrolled -> a tighter threshold. It
   is never looser than the pair ceiling (``recognition.threshold``'s calibrated FAR 1 %
   point).
2. **Margin.** The second-nearest *other* person is at least ``margin`` further away:
   a face about as near two people cannot tell them apart.
3. **Quality-weighted enrolment.** Photos (or enrolled tracks) whose quality is below
   ``min_enrol_quality`` do not count when the person has a better one: a blurred or
   tiny enrolment never widens the person's acceptance region. (Which photos have a
   quality is up to the caller: tracks enrolled by naming an unknown-N are gated on it
   in :mod:`pipeline.identities`.)
4. **Per-person threshold.** A person with at least ``person_min_photos`` (counting)
   photos gets ``min(t(N), person_scale * spread)``, ``spread`` being the largest
   distance between two of their own photos: never looser than the global rule, tighter
   for a person whose photos agree closely.

Calibration (``python scripts/eval_openset.py --calibrate``, LFW folds 1-3, the
recognize stage's encodings): :data:`CALIBRATED` holds per encoder setting the impostor
distance quantiles ``Q(q)`` for ``q`` from 30 % down to 1e-6, the margin and the
per-person scale. Interpolation is linear in ``log10 q``; below the smallest
tabulated ``q`` (a gallery of more than ~10,000 people at FPIR 1 %) the last two points
are extrapolated. How well the independence formula above predicts the measured FPIR of
real galleries is in docs/openset.md.

Precedence (``recognition`` config section): an explicit ``threshold`` replaces the
gallery-size threshold by that fixed pair threshold (the rule before issue 10), the
margin, enrolment quality and per-person thresholds still apply; ``target_fpir: null``
does the same at the calibrated pair threshold. This module imports only numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np


class Calibration(NamedTuple):
    """One encoder setting's calibration (see the module docstring)."""

    # (q, distance): a share q of LFW impostor pairs are within that distance; q descending
    impostor_quantiles: tuple[tuple[float, float], ...]
    margin: float  # the default best-vs-second margin
    person_scale: float  # per-person threshold = person_scale x own spread (capped)
    impostor_pairs: int  # how many pairs the quantiles come from


# (num_jitters, flip) -> calibration, from `python scripts/eval_openset.py --calibrate`
# (LFW folds 1-3: 2,320 images, every pair of two different people's images; the
# recognize stage's encodings) and the margin sweep of docs/openset.md
CALIBRATED: dict[tuple[int, bool], Calibration] = {
    (1, False): Calibration(
        impostor_quantiles=(
            (0.3, 0.749),
            (0.1, 0.682),
            (0.03, 0.632),
            (0.01, 0.595),
            (0.003, 0.559),
            (0.001, 0.529),
            (3e-4, 0.496),
            (1e-4, 0.469),
            (3e-5, 0.441),
            (1e-5, 0.417),
            (3e-6, 0.387),
            (1e-6, 0.364),
        ),  # fmt: skip
        # the largest margin of 0, 0.02, ..., 0.1 that cost at most 1 point of DIR at the
        # default FPIR at every gallery size (10, 100, 1,000; 4 draws each): wrong names
        # 1.13/0.74/0.45 % at margin 0 -> 1.07/0.44/0.19 %, DIR 87.5/64.8/36.9 ->
        # 87.5/64.5/36.0 % (docs/openset.md)
        margin=0.06,
        # 99th percentile of (probe's distance to the nearest of 3 photos) / (largest
        # distance between the 3), 408 probes of LFW people with 4+ images
        person_scale=1.2,
        impostor_pairs=2_687_149,
    ),
}

DEFAULT_TARGET_FPIR = 0.01
DEFAULT_PERSON_MIN_PHOTOS = 3


def calibration(num_jitters: int = 1, flip: bool = False) -> Calibration:
    """The calibration of the setting nearest ``(num_jitters, flip)`` (only the
    recognize stage's default, 1 jitter without flip, is calibrated: others get it)."""
    if (num_jitters, flip) in CALIBRATED:
        return CALIBRATED[(num_jitters, flip)]
    same = [k for k in CALIBRATED if k[1] == flip] or list(CALIBRATED)
    return CALIBRATED[min(same, key=lambda k: (abs(k[0] - num_jitters), -k[0]))]


def impostor_quantile(q: float, table: Sequence[tuple[float, float]]) -> float:
    """Distance within which a share ``q`` of impostor pairs fall (log-linear in q)."""
    qs = np.log10([a for a, _ in table])[::-1]  # ascending
    ds = np.array([b for _, b in table], dtype=float)[::-1]
    lq = math.log10(min(max(q, 1e-300), 1.0))
    if lq < qs[0]:  # beyond the data: extend the last segment
        slope = (ds[1] - ds[0]) / (qs[1] - qs[0])
        return float(max(0.0, ds[0] + slope * (lq - qs[0])))
    return float(np.interp(lq, qs, ds))


def per_comparison_rate(n_people: int, target_fpir: float) -> float:
    """The pair false-match rate at which a stranger matches none of ``n_people``
    (independent comparisons) with probability ``1 - target_fpir``."""
    n = max(int(n_people), 1)
    return float(-math.expm1(math.log1p(-target_fpir) / n))


@dataclass(frozen=True)
class OpenSetRule:
    """The open-set decision rule's settings (module docstring)."""

    ceiling: float = 0.6  # the pair threshold: nothing further is ever named
    target_fpir: float | None = DEFAULT_TARGET_FPIR  # None: the fixed ceiling
    margin: float = CALIBRATED[(1, False)].margin
    min_enrol_quality: float = 0.0
    person_min_photos: int = DEFAULT_PERSON_MIN_PHOTOS  # 0: no per-person thresholds
    person_scale: float = CALIBRATED[(1, False)].person_scale
    quantiles: tuple[tuple[float, float], ...] = CALIBRATED[(1, False)].impostor_quantiles
    _cache: dict[int, tuple[Any, ...]] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    @classmethod
    def from_config(cls, recognition: Any, explicit_threshold: bool = False) -> OpenSetRule:
        """The rule of a ``recognition`` config section (its ``threshold`` resolved);
        ``explicit_threshold``: the user set it, a fixed pair threshold that replaces the
        gallery-size one."""
        cal = calibration(recognition.num_jitters, recognition.flip)
        explicit = explicit_threshold
        margin = recognition.margin
        return cls(
            ceiling=float(recognition.threshold),
            target_fpir=None if explicit else recognition.target_fpir,
            margin=cal.margin if margin is None else float(margin),
            min_enrol_quality=recognition.min_enrol_quality,
            person_min_photos=recognition.person_min_photos,
            person_scale=cal.person_scale,
            quantiles=cal.impostor_quantiles,
        )

    def gallery_threshold(self, n_people: int) -> float:
        """The acceptance threshold for a gallery of ``n_people`` distinct people."""
        if self.target_fpir is None:
            return self.ceiling
        q = per_comparison_rate(n_people, self.target_fpir)
        return min(self.ceiling, impostor_quantile(q, self.quantiles))

    def person_threshold(self, photos: np.ndarray, global_threshold: float) -> float:
        """``min(global, person_scale x spread)`` for a person with enough photos
        (``spread``: the largest distance between two of them); else the global one."""
        if self.person_min_photos <= 0 or len(photos) < max(self.person_min_photos, 2):
            return global_threshold
        p = np.asarray(photos, dtype=float)
        d = np.linalg.norm(p[:, None, :] - p[None, :, :], axis=2)
        return float(min(global_threshold, self.person_scale * d.max()))

    def prepare(
        self,
        names: Sequence[str],
        gallery: np.ndarray,
        quality: Sequence[float] | None = None,
    ) -> PreparedGallery:
        """The gallery as the rule sees it: counting photos, per-person thresholds.

        Cached per gallery array (the sink passes the same cached gallery for every
        track), so that a gallery of thousands is prepared once, not once per track."""
        key = id(gallery)
        hit = self._cache.get(key)
        if hit is not None and hit[0] is gallery and hit[1] is names and hit[2] is quality:
            return hit[3]  # type: ignore[no-any-return]
        prepared = PreparedGallery.build(self, names, gallery, quality)
        if len(self._cache) >= 4:
            self._cache.clear()
        self._cache[key] = (gallery, names, quality, prepared)
        return prepared


@dataclass(frozen=True)
class Decision:
    """What the rule says about one face (or a track's mean encoding)."""

    name: str | None  # None: unknown
    nearest: str | None  # the nearest person, named or not
    distance: float | None  # to the nearest person's nearest counting photo
    second: str | None  # the next nearest other person
    second_distance: float | None
    threshold: float | None  # the nearest person's acceptance threshold
    reason: str  # why it is (not) named

    @property
    def margin(self) -> float | None:
        if self.distance is None or self.second_distance is None:
            return None
        return self.second_distance - self.distance


@dataclass(frozen=True)
class PreparedGallery:
    """Per-person view of a gallery under a rule (build it with :meth:`OpenSetRule.prepare`)."""

    rule: OpenSetRule
    people: list[str]  # distinct names, first-appearance order
    owner: np.ndarray  # per gallery row: index into people
    counts: np.ndarray  # per gallery row: True if the photo counts
    thresholds: np.ndarray  # per person
    global_threshold: float

    @classmethod
    def build(
        cls,
        rule: OpenSetRule,
        names: Sequence[str],
        gallery: np.ndarray,
        quality: Sequence[float] | None = None,
    ) -> PreparedGallery:
        people = list(dict.fromkeys(names))
        index = {p: i for i, p in enumerate(people)}
        owner = np.array([index[n] for n in names], dtype=int)
        counts = np.ones(len(names), dtype=bool)
        if quality is not None and rule.min_enrol_quality > 0:
            q = np.asarray(quality, dtype=float)
            good = q >= rule.min_enrol_quality
            for i in range(len(people)):
                mine = owner == i
                if good[mine].any():  # only the good photos count; else all of them
                    counts[mine] = good[mine]
        t_global = rule.gallery_threshold(len(people))
        gal = np.asarray(gallery, dtype=float)
        own = [gal[(owner == i) & counts] for i in range(len(people))]
        thresholds = np.array([rule.person_threshold(p, t_global) for p in own])
        return cls(rule, people, owner, counts, thresholds, t_global)

    def person_distances(self, d_rows: np.ndarray) -> np.ndarray:
        """Per person: the smallest of ``d_rows`` (one distance per gallery row) over
        their counting photos (inf if none)."""
        out = np.full(len(self.people), np.inf)
        ok = self.counts & np.isfinite(d_rows)
        np.minimum.at(out, self.owner[ok], d_rows[ok])
        return out

    def decide(self, d_rows: np.ndarray) -> Decision:
        """The rule's answer given the distance of one face to every gallery row (rows of
        excluded people, e.g. by a "not NAME" correction, set to inf)."""
        per = self.person_distances(np.asarray(d_rows, dtype=float))
        if not len(per) or not np.isfinite(per).any():
            return Decision(None, None, None, None, None, None, "no enrolled person to compare")
        order = np.argsort(per, kind="stable")
        j = int(order[0])
        d1 = float(per[j])
        k = int(order[1]) if len(order) > 1 and np.isfinite(per[order[1]]) else None
        d2 = float(per[k]) if k is not None else None
        second = self.people[k] if k is not None else None
        t = float(self.thresholds[j])
        nearest = self.people[j]
        if d1 > t:
            why = f"nearest {nearest} at {d1:.3f} > {t:.3f}"
            if t < self.global_threshold:
                why += " (their own threshold)"
            else:
                why += f" (threshold for {len(self.people)} people)"
            return Decision(None, nearest, d1, second, d2, t, why)
        if d2 is not None and d2 - d1 < self.rule.margin:
            why = (
                f"nearest {nearest} at {d1:.3f}, {second} at {d2:.3f}: "
                f"margin {d2 - d1:.3f} < {self.rule.margin:.3f}"
            )
            return Decision(None, nearest, d1, second, d2, t, why)
        why = f"{nearest} at {d1:.3f} <= {t:.3f}"
        if d2 is not None:
            why += f", next {second} at {d2:.3f}"
        return Decision(nearest, nearest, d1, second, d2, t, why)


class RuleThreshold(float):
    """``recognition.threshold`` as the configuration resolves it: the pair ceiling (a
    float, as every caller expects) that also carries the section's open-set rule, so
    that whoever passes the threshold on (the sink, corrections, through
    ``EventStore.refuse``) has :func:`pipeline.fusion.fuse_identity` apply the whole rule."""

    rule: OpenSetRule
    explicit: bool  # set in the configuration (not the calibrated default)

    def __new__(cls, rule: OpenSetRule, explicit: bool = False) -> RuleThreshold:
        obj = super().__new__(cls, rule.ceiling)
        obj.rule = rule
        obj.explicit = explicit
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (RuleThreshold, (self.rule, self.explicit))


def rule_of(threshold: float | OpenSetRule) -> OpenSetRule:
    """The rule a ``threshold`` argument stands for: a rule as is; a configured
    threshold's own rule; a plain float: the default rule with that pair ceiling."""
    if isinstance(threshold, OpenSetRule):
        return threshold
    rule = getattr(threshold, "rule", None)
    if isinstance(rule, OpenSetRule):
        return rule
    return _default_rule(float(threshold))


_DEFAULTS: dict[float, OpenSetRule] = {}


def _default_rule(ceiling: float) -> OpenSetRule:
    """One default rule per ceiling (so that its prepared-gallery cache is reused)."""
    if ceiling not in _DEFAULTS:
        if len(_DEFAULTS) > 16:
            _DEFAULTS.clear()
        _DEFAULTS[ceiling] = OpenSetRule(ceiling=ceiling)
    return _DEFAULTS[ceiling]
