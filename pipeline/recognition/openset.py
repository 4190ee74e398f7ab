"""Open-set identification: which enrolled person a face is, or nobody.

A pair threshold (1:1, :mod:`pipeline.recognition.thresholds`) does not hold for 1:N: a
stranger compared with N enrolled people gets N chances of a false match, so the share of
strangers given *some* name grows with the gallery (docs/openset.md measured 10 % of them
named at 10 people and 94 % at 1,000, at the pair threshold 0.60). The rule here
(:class:`OpenSetRule`, applied by :func:`pipeline.fusion.fuse_identity` to every track
the sink names and every event a correction re-matches) names a face only when all of
these hold, and abstains (unknown) otherwise:

1. **Gallery size.** Its score, the distance to the nearest person minus the margin to
   the second-nearest (``score``: ``d1 - w(N) * min(d2 - d1, gap_cap)``), is within
   the threshold at which a stranger gets a name with probability ``target_fpir`` (the
   false-positive identification rate) against a gallery of N people: the threshold
   table of :data:`CALIBRATED`, measured on LFW by giving random galleries of N people
   (1 to 1,000) every image of everyone else as strangers, and interpolated in log N and
   log FPIR (the threshold at FPIR 1 %: 0.565 at 2 people, 0.533 at 10, 0.429 at
   100, 0.366 at 1,000). As N grows a stranger's nearest person gets nearer and the
   second nearest closer behind: the same face with the same nearest person, named
   among a few people, is unknown among many whose faces crowd it. An enrolled
   person's face stands out from the crowd by its margin, which the score rewards (on
   LFW it names 58 % of enrolled people's photos at 1,000 people where the distance
   alone names 39 % at the same measured FPIR, docs/openset.md). The margin's weight
   ``w(N)`` is calibrated per gallery size (:func:`weight_at`; each size's threshold
   measured with its weight): among a few people there is no crowd, a stranger's
   second-nearest is just another enrolled person, and the margin term buys no DIR on
   LFW while it costs enrolled people who resemble each other their names (at weight 1
   a face 0.50 from one of two enrolled people 0.18 further from the other was
   unknown). So ``w`` is 0 up to 10 people (the distance alone, within the distance at
   which 1 % of strangers are named among N) and grows to 1 at 500. Never beyond the
   pair ceiling
   ``recognition.threshold`` (the calibrated FAR 1 % point) either. Calibrated on LFW:
   on UTKFace's demographic groups it names 1-16 % of strangers instead of 1 %
   (docs/openset.md); a deployment should re-measure the table on its own faces.
2. **Margin.** The second-nearest *other* person is at least ``margin`` further away:
   a face about as near two people cannot tell them apart.
3. **Quality-weighted enrolment.** Photos (or enrolled tracks) whose quality is below
   ``min_enrol_quality`` do not count when the person has a better one: a blurred or
   tiny enrolment never widens the person's acceptance region. The quality is stored
   with each photo (``encodings.quality``): ``facepipe enroll`` stores the photo's face
   quality, naming an unknown-N its tracks' best sample's (and tracks below
   ``min_enrol_quality`` are not enrolled at all, :mod:`pipeline.identities`); a photo of
   unknown quality (enrolled before it was stored) counts.
4. **Per-person threshold.** A person with at least ``person_min_photos`` (counting)
   photos must also be within ``person_scale * spread`` of one of them, ``spread``
   being the largest distance between two of their own photos: an extra condition, so
   never looser than the global rule, tighter for a person whose photos agree closely.

Calibration (``python scripts/eval_openset.py --calibrate``, LFW folds 1-3, the
recognize stage's encodings): :data:`CALIBRATED` holds per encoder setting the threshold
table, the score's weight per gallery size (each size's threshold measured with its
weight) and cap, the margin and the per-person scale. Beyond 1,000
people the table is extended linearly in log N from its last two sizes where that
tightens it (else held). How well it holds on people it was not measured on is in
docs/openset.md (held-out check).

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

    # target FPIR -> ((gallery size N, score threshold), ...), N ascending
    thresholds: tuple[tuple[float, tuple[tuple[int, float], ...]], ...]
    weight: tuple[tuple[int, float], ...]  # of the margin in the score, per gallery size N
    gap_cap: float  # the margin counts up to this much
    margin: float  # the default best-vs-second margin
    person_scale: float  # per-person threshold = person_scale x own spread (capped)


# (num_jitters, flip) -> calibration, from `python scripts/eval_openset.py --calibrate`
# (LFW folds 1-3: 2,320 images of 1,241 people; the recognize stage's encodings; 20
# random galleries per size, the strangers' scores pooled, each size's score with its
# weight) and the margin sweep of
# docs/openset.md
CALIBRATED: dict[tuple[int, bool], Calibration] = {
    (1, False): Calibration(
        thresholds=(
            (
                0.001,
                (
                    (1, 0.5242),
                    (2, 0.4931),
                    (5, 0.4886),
                    (10, 0.4757),
                    (20, 0.4302),
                    (50, 0.3952),
                    (100, 0.3519),
                    (200, 0.3247),
                    (500, 0.2872),
                    (1000, 0.2892),
                ),
            ),
            (
                0.003,
                (
                    (1, 0.5632),
                    (2, 0.527),
                    (5, 0.5193),
                    (10, 0.5006),
                    (20, 0.4629),
                    (50, 0.4252),
                    (100, 0.3896),
                    (200, 0.3617),
                    (500, 0.3291),
                    (1000, 0.3214),
                ),
            ),
            (
                0.01,
                (
                    (1, 0.5979),
                    (2, 0.5647),
                    (5, 0.5523),
                    (10, 0.5329),
                    (20, 0.4983),
                    (50, 0.4624),
                    (100, 0.429),
                    (200, 0.4023),
                    (500, 0.372),
                    (1000, 0.3656),
                ),
            ),
            (
                0.03,
                (
                    (1, 0.6339),
                    (2, 0.6016),
                    (5, 0.5842),
                    (10, 0.5643),
                    (20, 0.5324),
                    (50, 0.498),
                    (100, 0.4662),
                    (200, 0.4409),
                    (500, 0.4124),
                    (1000, 0.4051),
                ),
            ),
            (
                0.1,
                (
                    (1, 0.6827),
                    (2, 0.6471),
                    (5, 0.6236),
                    (10, 0.6012),
                    (20, 0.5717),
                    (50, 0.5392),
                    (100, 0.5115),
                    (200, 0.4879),
                    (500, 0.4627),
                    (1000, 0.453),
                ),
            ),
        ),  # fmt: skip
        # the score: d1 - w(N) x min(d2 - d1, 0.5), w(N) per gallery size: at each size
        # the smallest of 0, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2 whose DIR at a measured FPIR
        # of 1 % is within 1 point of the best there (`--calibrate` prints the sweep as
        # "weights_tried": 100 draws at 2-20 people, 30 at 50-200, 10 at 500-1,000), never
        # smaller than at a smaller size. DIR at weight 0 / the best / weight 1: 95.5 /
        # 95.7 / 93.2 % at 2 people, 91.4 / 91.7 / 88.0 % at 5, 89.4 / 89.9 / 87.6 % at
        # 10, 66.0 / 72.3 / 72.3 % at 100, 38.9 / 58.4 / 57.5 % at 1,000: the margin buys
        # nothing among a few people (and costs two enrolled look-alikes their names),
        # much among many. Each size's thresholds above are measured with its weight.
        # The cost: where faces are denser than LFW's the margin term had also held back
        # strangers; on UTKFace (all ages, each group's own faces as gallery and
        # strangers, 10 draws) strangers named, pooled over groups, weight 1 -> these
        # weights: 4.1 -> 9.2 % at 2 people, 5.7 -> 10.0 % at 5, 4.9 -> 8.4 % at 10
        # (white male 1.3 -> 1.6 %, asian female 9.7 -> 33.9 % at 2): both far off the
        # 1 % target there (docs/openset.md, UTKFace)
        weight=(
            (2, 0.0),
            (5, 0.0),
            (10, 0.0),
            (20, 0.1),
            (50, 0.25),
            (100, 0.5),
            (200, 0.75),
            (500, 1.0),
            (1000, 1.0),
        ),  # fmt: skip
        gap_cap=0.5,
        # the largest margin of 0, 0.02, ..., 0.1 that costs at most 1 point of DIR at
        # every gallery size (10, 100, 1,000; 4 draws each, docs/openset.md): wrong names
        # 1.08/0.84/0.47 % at margin 0 -> 1.08/0.83/0.36 %, DIR 89.6/74.5/57.2 ->
        # 89.6/74.2/56.5 %
        margin=0.06,
        # 99th percentile of (probe's distance to the nearest of 3 photos) / (largest
        # distance between the 3), 408 probes of LFW people with 4+ images
        person_scale=1.2,
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


Weight = float | tuple[tuple[int, float], ...]  # one weight, or (N, weight) per gallery size


def weight_at(n_people: int, weight: Weight) -> float:
    """The margin's weight in the score for a gallery of ``n_people``: ``weight`` itself if
    it is one number, else linear in log N between its ``(N, weight)`` rows (held beyond
    the first and last)."""
    if isinstance(weight, (int, float)):
        return float(weight)
    xs = np.log([max(r[0], 1) for r in weight])
    ys = np.array([r[1] for r in weight], dtype=float)
    return float(np.interp(math.log(max(int(n_people), 1)), xs, ys))


def score(d1: Any, d2: Any, weight: float, cap: float) -> Any:
    """The rule's score of a face: its distance to the nearest person minus ``weight``
    times the margin to the second-nearest (capped at ``cap``; ``cap`` when there is no
    second). Lower is surer. Works on numbers and arrays."""
    gap = np.minimum(np.asarray(d2, dtype=float) - np.asarray(d1, dtype=float), cap)
    return np.asarray(d1, dtype=float) - weight * gap


def table_threshold(
    n_people: int, target_fpir: float, table: Sequence[tuple[float, Sequence[tuple[int, float]]]]
) -> float:
    """The score threshold for ``n_people`` at ``target_fpir``: linear in log N between
    the table's sizes (beyond them extended from the last two, only if that tightens),
    then linear in log FPIR between its rows (extended likewise)."""
    ln = math.log(max(int(n_people), 1))

    def at(rows: Sequence[tuple[int, float]]) -> float:
        xs = np.log([r[0] for r in rows])
        ys = np.array([r[1] for r in rows], dtype=float)
        if ln > xs[-1]:  # extended only where it tightens: never looser than measured
            slope = min((ys[-1] - ys[-2]) / (xs[-1] - xs[-2]), 0.0)
            return float(ys[-1] + slope * (ln - xs[-1]))
        return float(np.interp(ln, xs, ys))

    fs = np.log([f for f, _ in table])
    ts = np.array([at(rows) for _, rows in table])
    lf = math.log(target_fpir)
    if lf < fs[0]:
        return float(ts[0] + (ts[1] - ts[0]) / (fs[1] - fs[0]) * (lf - fs[0]))
    if lf > fs[-1]:
        return float(ts[-1])
    return float(np.interp(lf, fs, ts))


# one photo enrolled twice gives the same encoding (the demo's photo, enrolled at every
# `facepipe demo` run: 6 identical rows in a long-used home), two photos of one person
# lie far further apart than this: below it, two enrolled photos are copies
SAME_PHOTO_DISTANCE = 0.1


@dataclass(frozen=True)
class OpenSetRule:
    """The open-set decision rule's settings (module docstring)."""

    ceiling: float = 0.6  # the pair threshold: nothing further is ever named
    target_fpir: float | None = DEFAULT_TARGET_FPIR  # None: the fixed ceiling
    margin: float = CALIBRATED[(1, False)].margin
    min_enrol_quality: float = 0.0
    person_min_photos: int = DEFAULT_PERSON_MIN_PHOTOS  # 0: no per-person thresholds
    person_scale: float = CALIBRATED[(1, False)].person_scale
    weight: Weight = CALIBRATED[(1, False)].weight  # per gallery size (see weight_at)
    gap_cap: float = CALIBRATED[(1, False)].gap_cap
    table: tuple[tuple[float, tuple[tuple[int, float], ...]], ...] = CALIBRATED[
        (1, False)
    ].thresholds
    _cache: dict[int, tuple[Any, ...]] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    @classmethod
    def from_config(cls, recognition: Any, explicit_threshold: bool = False) -> OpenSetRule:
        """The rule of a ``recognition`` config section (its ``threshold`` resolved);
        ``explicit_threshold``: the user set it, a fixed pair threshold that replaces the
        gallery-size one."""
        cal = calibration(recognition.num_jitters, recognition.flip)
        margin = recognition.margin
        return interned(cls(
            ceiling=float(recognition.threshold),
            target_fpir=None if explicit_threshold else recognition.target_fpir,
            margin=cal.margin if margin is None else float(margin),
            min_enrol_quality=recognition.min_enrol_quality,
            person_min_photos=recognition.person_min_photos,
            person_scale=cal.person_scale,
            weight=cal.weight,
            gap_cap=cal.gap_cap,
            table=cal.thresholds,
        ))  # fmt: skip

    def gallery_threshold(self, n_people: int) -> float:
        """The score threshold for a gallery of ``n_people`` distinct people (with a
        fixed pair threshold, ``target_fpir`` None: the ceiling, on the distance)."""
        if self.target_fpir is None:
            return self.ceiling
        return table_threshold(n_people, self.target_fpir, self.table)

    def score(self, d1: Any, d2: Any, n_people: int) -> Any:
        """:func:`score` with this rule's weight for a gallery of ``n_people`` and its cap
        (the distance itself with a fixed pair threshold)."""
        if self.target_fpir is None:
            return np.asarray(d1, dtype=float)
        return score(d1, d2, weight_at(n_people, self.weight), self.gap_cap)

    def person_threshold(self, photos: np.ndarray) -> float:
        """The distance a face must be within for a person with enough photos:
        ``min(ceiling, person_scale x spread)`` (``spread``: the largest distance between
        two of them); else the ceiling. An extra condition: never looser."""
        if self.person_min_photos <= 0 or len(photos) < max(self.person_min_photos, 2):
            return self.ceiling
        p = np.asarray(photos, dtype=float)
        d = np.linalg.norm(p[:, None, :] - p[None, :, :], axis=2)
        # the same photo enrolled again (re-encoded: jitter noise only) says nothing of how
        # the person varies: near-copies count once, else their tiny spread would make a
        # threshold nobody meets
        distinct = [i for i in range(len(p)) if not (d[i, :i] < SAME_PHOTO_DISTANCE).any()]
        if len(distinct) < max(self.person_min_photos, 2):
            return self.ceiling
        return float(min(self.ceiling, self.person_scale * d.max()))

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
    threshold: float | None  # the score threshold for the gallery's size
    score: float | None  # the face's score (the distance, with a fixed pair threshold)
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
    person_limits: np.ndarray  # per person: the largest distance accepted
    global_threshold: float  # on the score

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
            # a photo of unknown quality (None, NaN: enrolled before it was stored)
            # counts as good: the gate only sets aside photos known to be poor
            q = np.array([np.nan if x is None else x for x in quality], dtype=float)
            good = ~(q < rule.min_enrol_quality)
            for i in range(len(people)):
                mine = owner == i
                if good[mine].any():  # only the good photos count; else all of them
                    counts[mine] = good[mine]
        gal = np.asarray(gallery, dtype=float)
        own = [gal[(owner == i) & counts] for i in range(len(people))]
        limits = np.array([rule.person_threshold(p) for p in own])
        return cls(rule, people, owner, counts, limits, rule.gallery_threshold(len(people)))

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
        rule = self.rule
        per = self.person_distances(np.asarray(d_rows, dtype=float))
        if not len(per) or not np.isfinite(per).any():
            return Decision(None, None, None, None, None, None, None, "no enrolled person")
        order = np.argsort(per, kind="stable")
        j = int(order[0])
        d1 = float(per[j])
        k = int(order[1]) if len(order) > 1 and np.isfinite(per[order[1]]) else None
        d2 = float(per[k]) if k is not None else None
        nearest, second = self.people[j], (self.people[k] if k is not None else None)
        s = float(rule.score(d1, np.inf if d2 is None else d2, len(self.people)))
        t = self.global_threshold
        found = f"nearest {nearest} at {d1:.3f}" + (
            f", next {second} at {d2:.3f}" if d2 is not None else ""
        )

        def no(why: str) -> Decision:
            return Decision(None, nearest, d1, second, d2, t, s, f"{found}: {why}")

        if d1 > rule.ceiling:
            return no(f"beyond the pair threshold {rule.ceiling:.3f}")
        if d1 > self.person_limits[j]:
            return no(f"beyond {nearest}'s own threshold {self.person_limits[j]:.3f}")
        if d2 is not None and d2 - d1 < rule.margin:
            return no(f"margin {d2 - d1:.4f} < {rule.margin:.3f}")
        if rule.target_fpir is not None and s > t:
            return no(f"score {s:.3f} > {t:.3f} (the threshold for {len(self.people)} people)")
        what = "score" if rule.target_fpir is not None else "distance"
        return Decision(
            nearest, nearest, d1, second, d2, t, s, f"{found}: {what} {s:.3f} <= {t:.3f}"
        )


def rule_of(threshold: float | OpenSetRule) -> OpenSetRule:
    """The rule a ``threshold`` argument stands for: a rule as is (e.g. the config's
    ``recognition.rule``); a plain float: the default rule with that pair ceiling."""
    if isinstance(threshold, OpenSetRule):
        return threshold
    return interned(OpenSetRule(ceiling=float(threshold)))


_INTERNED: dict[OpenSetRule, OpenSetRule] = {}


def interned(rule: OpenSetRule) -> OpenSetRule:
    """One object per distinct rule (equal settings compare equal), so that its
    prepared-gallery cache is reused by every caller that builds the same rule."""
    if rule not in _INTERNED and len(_INTERNED) > 32:
        _INTERNED.clear()
    return _INTERNED.setdefault(rule, rule)
