"""The open-set rule on synthetic encodings: distances are placed exactly around a probe."""

import numpy as np
import pytest

from pipeline.fusion import fuse_identity
from pipeline.recognition import openset as R
from pipeline.recognition.openset import OpenSetRule, RuleThreshold

PROBE = np.zeros(128)


def at(distance, seed):
    """A point at exactly ``distance`` from PROBE, in a random direction."""
    v = np.random.default_rng(seed).normal(size=128)
    return PROBE + distance * v / np.linalg.norm(v)


def gallery(n_people, near=None, far=1.2):
    """``n_people`` people: "a" at ``near`` (if given), the others ``far`` away."""
    names, rows = [], []
    if near is not None:
        names.append("a")
        rows.append(at(near, 0))
    for i in range(n_people - len(names)):
        names.append(f"p{i}")
        rows.append(at(far, 1000 + i))
    return names, np.stack(rows)


def name_of(names, gal, threshold=0.6, **kw):
    return fuse_identity(PROBE[None, :], names, gal, threshold, **kw).name


def test_threshold_tightens_as_the_gallery_grows():
    rule = OpenSetRule()
    t = [rule.gallery_threshold(n) for n in (1, 10, 100, 1000, 10000)]
    assert all(a > b for a, b in zip(t, t[1:], strict=False)), t
    assert t[0] <= rule.ceiling
    # the rate per comparison that keeps a stranger's chance of any match at the target
    q = R.per_comparison_rate(1000, 0.01)
    assert 1 - (1 - q) ** 1000 == pytest.approx(0.01)


def test_gallery_growth_turns_an_accepted_face_unknown():
    rule = OpenSetRule()
    d = (rule.gallery_threshold(2) + rule.gallery_threshold(1000)) / 2  # between the two
    small = gallery(2, near=d)
    large = gallery(1000, near=d)
    assert name_of(*small) == "a"
    got = fuse_identity(PROBE[None, :], *large, 0.6)
    assert got.name is None and got.nearest == "a"
    assert "1000 people" in got.reason
    # the fixed pair threshold (the rule before) would have named it
    fixed = OpenSetRule(target_fpir=None)
    assert name_of(*large, threshold=fixed) == "a"


def test_a_close_second_best_is_unknown():
    rule = OpenSetRule(margin=0.05)
    names = ["a", "b"]
    close = np.stack([at(0.35, 0), at(0.37, 1)])
    clear = np.stack([at(0.35, 0), at(0.70, 1)])
    got = fuse_identity(PROBE[None, :], names, close, rule)
    assert got.name is None and got.nearest == "a" and "margin" in got.reason
    assert got.margin == pytest.approx(0.02)
    assert name_of(names, clear, rule) == "a"
    # several photos of one person are not rivals: the margin is to another person
    same = np.stack([at(0.35, 0), at(0.36, 2), at(0.70, 1)])
    assert name_of(["a", "a", "b"], same, rule) == "a"


def test_a_low_quality_enrolment_does_not_widen_acceptance():
    rule = OpenSetRule(min_enrol_quality=0.2)
    names = ["a", "a", "b"]
    # a's good photo is far from the probe, a's poor photo (a blurred track) near it
    gal = np.stack([at(0.9, 0), at(0.3, 1), at(1.2, 2)])
    assert name_of(names, gal, rule, gallery_quality=[0.8, 0.05, 0.8]) is None
    # the same photo with a good quality counts (so the test above is the quality's doing)
    assert name_of(names, gal, rule, gallery_quality=[0.8, 0.8, 0.8]) == "a"
    # a person with nothing better keeps their photos
    assert name_of(["a", "b"], gal[1:], rule, gallery_quality=[0.05, 0.8]) == "a"


@pytest.mark.parametrize("spread", [0.05, 0.2, 1.0, 3.0])
def test_per_person_threshold_is_never_looser_than_the_global_rule(spread):
    rule = OpenSetRule(person_min_photos=3)
    photos = np.stack([at(spread / 2, s) for s in range(3)])
    for n in (1, 10, 1000):
        t = rule.gallery_threshold(n)
        assert rule.person_threshold(photos, t) <= t


def test_a_compact_person_gets_a_tighter_threshold():
    rule = OpenSetRule(person_min_photos=3, margin=0.0)
    center = at(0.3, 0)  # the probe is 0.3 from the person's photos' centre
    tight = center + np.stack([at(0.02, s) for s in (1, 2, 3)])  # three near-identical photos
    names = ["a", "a", "a", "b"]
    gal = np.vstack([tight, at(1.2, 9)[None, :]])
    prepared = rule.prepare(names, gal)
    assert prepared.thresholds[0] < prepared.global_threshold
    got = fuse_identity(PROBE[None, :], names, gal, rule)
    assert got.name is None and "their own threshold" in got.reason
    # with too few photos the global threshold applies and the same face is named
    assert name_of(["a", "b"], np.stack([tight[0], at(1.2, 9)]), rule) == "a"
    # and switched off
    assert name_of(names, gal, OpenSetRule(person_min_photos=0, margin=0.0)) == "a"


def test_impostor_quantile_interpolates_and_extrapolates():
    table = ((0.1, 0.7), (0.01, 0.6), (0.001, 0.5))
    assert R.impostor_quantile(0.01, table) == pytest.approx(0.6)
    assert R.impostor_quantile(10**-1.5, table) == pytest.approx(0.65)
    assert R.impostor_quantile(1e-4, table) == pytest.approx(0.4)  # the last slope
    assert R.impostor_quantile(0.5, table) == pytest.approx(0.7)  # capped at the data


def test_a_plain_float_is_the_default_rule_with_that_ceiling():
    rule = R.rule_of(0.55)
    assert rule.ceiling == 0.55 and rule.target_fpir == R.DEFAULT_TARGET_FPIR
    carried = RuleThreshold(OpenSetRule(ceiling=0.5, margin=0.2), explicit=True)
    assert carried == 0.5 and R.rule_of(carried).margin == 0.2
    assert R.rule_of(rule) is rule


def test_config_resolves_the_rule_and_an_explicit_threshold_overrides_it():
    from pipeline.config import ConfigError, load_config

    rec = load_config(None, environ={}).recognition
    rule = R.rule_of(rec.threshold)
    assert rule.target_fpir == 0.01 and rule.ceiling == rec.threshold
    assert rule.gallery_threshold(1000) < rec.threshold
    explicit = load_config(None, environ={"FACEPIPE__RECOGNITION__THRESHOLD": "0.55"})
    fixed = R.rule_of(explicit.recognition.threshold)
    assert fixed.target_fpir is None and fixed.gallery_threshold(1000) == 0.55
    off = load_config(None, environ={"FACEPIPE__RECOGNITION__TARGET_FPIR": "null"})
    assert R.rule_of(off.recognition.threshold).gallery_threshold(1000) == rec.threshold
    env = {"FACEPIPE__RECOGNITION__MARGIN": "0.1", "FACEPIPE__RECOGNITION__PERSON_MIN_PHOTOS": "5"}
    tuned = R.rule_of(load_config(None, environ=env).recognition.threshold)
    assert (tuned.margin, tuned.person_min_photos) == (0.1, 5)
    # re-validation (an assignment) keeps an explicit threshold explicit
    explicit.recognition.margin = 0.0
    assert R.rule_of(explicit.recognition.threshold).target_fpir is None
    for bad in ({"FACEPIPE__RECOGNITION__TARGET_FPIR": "0"},
                {"FACEPIPE__RECOGNITION__MIN_ENROL_QUALITY": "2"},
                {"FACEPIPE__RECOGNITION__NO_SUCH_KEY": "1"}):  # fmt: skip
        with pytest.raises(ConfigError):
            load_config(None, environ=bad)
