"""The open-set rule on synthetic encodings: distances are placed exactly around a probe."""

import numpy as np
import pytest

from pipeline.fusion import fuse_identity
from pipeline.recognition import openset as R
from pipeline.recognition.openset import OpenSetRule

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


def test_the_threshold_for_large_galleries_is_tighter():
    rule = OpenSetRule()
    t = {n: rule.gallery_threshold(n) for n in (100, 1000, 10000, 100000)}
    assert t[100] >= t[1000] > t[10000] > t[100000], t
    # a stricter target, a stricter threshold
    assert OpenSetRule(target_fpir=0.001).gallery_threshold(1000) < t[1000]


def test_gallery_growth_turns_an_accepted_face_unknown():
    """The same face, the same enrolled person at 0.5: with one other person far away it
    is named; among 1,000 people, some of them 0.07 further than "a" (a crowd, as a
    stranger's face has around it), it is not."""
    small = gallery(2, near=0.5)
    names, gal = gallery(1000, near=0.5)
    crowd = np.stack([at(0.57 + 0.001 * i, 5000 + i) for i in range(100)])
    gal = np.vstack([gal[:900], crowd])
    assert name_of(*small) == "a"
    got = fuse_identity(PROBE[None, :], names, gal, 0.6)
    assert got.name is None and got.nearest == "a"
    assert "1000 people" in got.reason and got.margin == pytest.approx(0.07)
    # the fixed pair threshold (the rule before) would have named it
    fixed = OpenSetRule(target_fpir=None, margin=0.0)
    assert name_of(names, gal, threshold=fixed) == "a"


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


def test_a_photo_of_unknown_quality_counts():
    """Photos enrolled before their quality was stored (None) are not set aside: only a
    photo known to be poor is."""
    rule = OpenSetRule(min_enrol_quality=0.2)
    names = ["a", "a", "b"]
    gal = np.stack([at(0.9, 0), at(0.3, 1), at(1.2, 2)])
    assert name_of(names, gal, rule, gallery_quality=[0.8, None, 0.8]) == "a"
    assert name_of(names, gal, rule, gallery_quality=[0.8, float("nan"), None]) == "a"
    assert name_of(names, gal, rule, gallery_quality=[None, 0.05, None]) is None


@pytest.mark.parametrize("spread", [0.05, 0.2, 1.0, 3.0])
def test_per_person_threshold_is_never_looser_than_the_global_rule(spread):
    rule = OpenSetRule(person_min_photos=3)
    without = OpenSetRule(person_min_photos=0)
    photos = np.stack([at(spread / 2, s) for s in range(3)])
    assert rule.person_threshold(photos) <= rule.ceiling
    names = ["a", "a", "a", "b", "c"]
    gal = np.vstack([photos, at(1.0, 10)[None, :], at(1.1, 11)[None, :]])
    rng = np.random.default_rng(int(spread * 100))
    for probe in rng.normal(size=(200, 128)) * rng.uniform(0.01, 0.08, size=(200, 1)):
        got = fuse_identity(probe[None, :], names, gal, rule).name
        if got is not None:  # whatever the per-person rule names, the global one names too
            assert fuse_identity(probe[None, :], names, gal, without).name == got


def test_a_compact_person_gets_a_tighter_threshold():
    rule = OpenSetRule(person_min_photos=3, margin=0.0)
    center = at(0.3, 0)  # the probe is 0.3 from the person's photos' centre
    # three photos close together (0.17 apart: a compact person, not copies of one photo)
    tight = center + np.stack([at(0.12, s) for s in (1, 2, 3)])
    names = ["a", "a", "a", "b"]
    gal = np.vstack([tight, at(1.2, 9)[None, :]])
    prepared = rule.prepare(names, gal)
    assert prepared.person_limits[0] < rule.ceiling
    got = fuse_identity(PROBE[None, :], names, gal, rule)
    assert got.name is None and "a's own threshold" in got.reason
    # with too few photos the global threshold applies and the same face is named
    assert name_of(["a", "b"], np.stack([tight[0], at(1.2, 9)]), rule) == "a"
    # and switched off
    assert name_of(names, gal, OpenSetRule(person_min_photos=0, margin=0.0)) == "a"


def test_table_threshold_interpolates_in_log_n_and_log_fpir():
    table = (
        (0.001, ((1, 0.1), (10, 0.2), (100, 0.3))),
        (0.01, ((1, 0.2), (10, 0.4), (100, 0.35))),
    )
    assert R.table_threshold(10, 0.01, table) == pytest.approx(0.4)
    assert R.table_threshold(int(10**1.5), 0.01, table) == pytest.approx(0.375, abs=1e-3)
    assert R.table_threshold(1000, 0.01, table) == pytest.approx(0.3)  # extended: tighter
    assert R.table_threshold(1000, 0.001, table) == pytest.approx(0.3)  # held, never looser
    assert R.table_threshold(10, 10**-2.5, table) == pytest.approx(0.3)
    assert R.table_threshold(10, 0.1, table) == pytest.approx(0.4)  # capped at the table


def test_score_rewards_a_face_that_stands_out():
    assert R.score(0.5, 0.7, 1.0, 0.5) == pytest.approx(0.3)
    assert R.score(0.5, np.inf, 1.0, 0.5) == pytest.approx(0.0)  # no second: the cap
    assert R.score(0.5, 0.52, 1.0, 0.5) > R.score(0.5, 0.9, 1.0, 0.5)


def test_a_plain_float_is_the_default_rule_with_that_ceiling():
    rule = R.rule_of(0.55)
    assert rule.ceiling == 0.55 and rule.target_fpir == R.DEFAULT_TARGET_FPIR
    assert R.rule_of(rule) is rule
    assert R.rule_of(0.55) is rule  # one object per setting: its gallery cache is shared


def test_config_resolves_the_rule_and_an_explicit_threshold_overrides_it():
    from pipeline.config import ConfigError, load_config

    rec = load_config(None, environ={}).recognition
    rule = rec.rule
    assert type(rec.threshold) is float and not rec.threshold_explicit
    assert rule.target_fpir == 0.01 and rule.ceiling == rec.threshold
    assert rec.rule is rule  # the same object each time
    assert rule.gallery_threshold(1000) < rec.threshold
    explicit = load_config(None, environ={"FACEPIPE__RECOGNITION__THRESHOLD": "0.55"})
    fixed = explicit.recognition.rule
    assert fixed.target_fpir is None and fixed.gallery_threshold(1000) == 0.55
    off = load_config(None, environ={"FACEPIPE__RECOGNITION__TARGET_FPIR": "null"})
    assert off.recognition.rule.gallery_threshold(1000) == rec.threshold
    env = {"FACEPIPE__RECOGNITION__MARGIN": "0.1", "FACEPIPE__RECOGNITION__PERSON_MIN_PHOTOS": "5"}
    tuned = load_config(None, environ=env).recognition.rule
    assert (tuned.margin, tuned.person_min_photos) == (0.1, 5)
    # re-validation (an assignment) keeps an explicit threshold explicit, a default not
    explicit.recognition.margin = 0.0
    assert explicit.recognition.rule.target_fpir is None
    default = load_config(None, environ={}).recognition
    default.margin = 0.0
    assert default.rule.target_fpir == 0.01 and not default.threshold_explicit
    null = load_config(None, environ={"FACEPIPE__RECOGNITION__THRESHOLD": "null"})
    assert null.recognition.rule.target_fpir == 0.01  # null: the calibrated default
    for bad in ({"FACEPIPE__RECOGNITION__TARGET_FPIR": "0"},
                {"FACEPIPE__RECOGNITION__MIN_ENROL_QUALITY": "2"},
                {"FACEPIPE__RECOGNITION__NO_SUCH_KEY": "1"}):  # fmt: skip
        with pytest.raises(ConfigError):
            load_config(None, environ=bad)


def test_weight_at_interpolates_in_log_n_and_holds_beyond():
    weights = ((2, 0.0), (20, 0.5), (200, 1.0))
    assert R.weight_at(1, weights) == 0.0 and R.weight_at(2, weights) == 0.0
    assert R.weight_at(int(2 * 10**0.5), weights) == pytest.approx(0.25, abs=0.02)
    assert R.weight_at(20, weights) == pytest.approx(0.5)
    assert R.weight_at(100_000, weights) == 1.0  # held beyond the last size
    assert R.weight_at(7, 0.3) == 0.3  # one number: every size


def test_calibrated_weight_is_zero_for_a_few_people_and_grows_with_the_gallery():
    """In a gallery of a few people the second-nearest is just another enrolled person,
    not a crowd: the calibration puts no weight on the margin there, and as much as
    before (1) from the large galleries the margin term was chosen for."""
    w = R.calibration().weight
    assert R.weight_at(2, w) == 0.0
    ws = [R.weight_at(n, w) for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)]
    assert ws == sorted(ws) and ws[-1] >= 1.0


def test_two_similar_enrolled_people_do_not_cost_each_other_their_names():
    """Two enrolled people who resemble each other (0.18 apart as seen from the face):
    with the weight-1 score the face at 0.50 from "a" was unknown among 2 people; the
    distance alone decides in a gallery of two, within the threshold that keeps 1 % of
    strangers named, so it is named, and a face equally far from both is not."""
    rule = OpenSetRule()
    names = ["a", "b"]
    gal = np.stack([at(0.50, 0), at(0.68, 1)])
    got = fuse_identity(PROBE[None, :], names, gal, rule)
    assert got.name == "a", got.reason
    # the old weight-1 score, at its old table threshold for 2 people, abstained
    assert R.score(0.50, 0.68, 1.0, 0.5) > 0.3048
    # a stranger near neither: unknown; near both alike: unknown (the margin)
    assert name_of(names, np.stack([at(0.68, 0), at(0.70, 1)]), rule) is None
    assert name_of(names, np.stack([at(0.50, 0), at(0.52, 1)]), rule) is None


def test_one_photo_enrolled_again_and_again_is_one_photo():
    """Re-enrolling the same photo (e.g. every `facepipe demo` run) must not give the
    person a per-person threshold of zero spread that nobody meets."""
    rule = OpenSetRule(person_min_photos=3)
    photos = np.stack([at(0.3, 0)] * 6)  # the probe is 0.3 from the photo: clearly a
    assert rule.person_threshold(photos) == rule.ceiling
    names = ["a"] * 6 + ["b"]
    gal = np.vstack([photos, at(1.2, 2)[None, :]])
    assert name_of(names, gal, rule) == "a"
