"""The age/gender evaluation (pipeline.evaluation.attributes) on hand-made predictions and a
stand-in estimator (no dataset, no model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pipeline.attributes.base import AgeGender
from pipeline.evaluation import attributes as ev
from pipeline.evaluation.common import spread


@dataclass
class Sample:
    name: str
    age: int
    gender: int


def test_metrics_by_hand():
    ages = [10, 15, 30, 40]
    genders = [0, 1, 1, 0]  # 1 = female
    pred = [12, 15, 20, 40]  # errors 2, 0, 10, 0
    pf = [0.6, 0.9, 0.4, 0.1]  # wrong, right, wrong, right
    m = ev.age_gender_metrics(pred, pf, ages, genders)
    assert m["n"] == 4
    assert m["age_mae"] == pytest.approx(3.0)
    assert m["gender_accuracy"] == pytest.approx(0.5)
    assert m["gender_accuracy_13plus"] == 0.6667  # rounded to 4 places
    assert m["by_age_group"] == {
        "0-12": {"n": 1, "age_mae": 2.0, "gender_accuracy": 0.0},
        "13-19": {"n": 1, "age_mae": 0.0, "gender_accuracy": 1.0},
        "30-39": {"n": 1, "age_mae": 10.0, "gender_accuracy": 0.0},
        "40-49": {"n": 1, "age_mae": 0.0, "gender_accuracy": 1.0},
    }


def test_combine_means_every_pair_and_all():
    preds = {
        "a": (np.array([10.0]), np.array([0.2])),
        "b": (np.array([20.0]), np.array([0.4])),
        "c": (np.array([30.0]), np.array([0.9])),
    }
    out = ev.combine(preds)
    assert list(out) == ["mean(a + b + c)", "mean(a + b)", "mean(a + c)", "mean(b + c)"]
    assert out["mean(a + c)"][0] == pytest.approx([20.0])
    assert out["mean(a + b + c)"][1] == pytest.approx([0.5])
    assert list(ev.combine({k: preds[k] for k in "ab"})) == ["mean(a + b)"]


def test_spread_is_even_and_keeps_the_ends():
    assert spread(list(range(10)), 3) == [0, 4, 9]
    assert spread(list(range(3)), 10) == [0, 1, 2]
    assert spread(list(range(3)), None) == [0, 1, 2]


class Stub:
    """Age = 30 unless the face carries an encoding (then its first value); p(female) 0.7."""

    crop_margin = 0.1

    def __init__(self) -> None:
        self.calls: list[list] = []

    def estimate(self, image, faces):
        self.calls.append(faces)
        f = faces[0]
        age = f.encoding[0] if f.encoding is not None else 30.0
        return [AgeGender.from_p_female(age, 0.7)]


def test_evaluate_estimator_passes_the_stage_encoding_and_times_both_paths():
    samples = [Sample("a", 20, 1), Sample("b", 40, 0)]
    images = {"a": np.zeros((100, 100, 3), np.uint8), "b": np.zeros((50, 80, 3), np.uint8)}
    given = []

    def encodings(key, image, face):
        given.append((key, face.box))
        return [22.0] * 128 if key == "a" else [41.0] * 128

    est = Stub()
    m, (age, pf) = ev.evaluate_estimator(
        est, samples, images.__getitem__, encodings=encodings, time_n=1
    )
    np.testing.assert_allclose(age, [22.0, 41.0])
    assert m["age_mae"] == pytest.approx(1.5)
    assert m["gender_accuracy"] == pytest.approx(0.5)
    # the face-crop box of `facepipe analyze --face-crop`, centred, 0.89 of the short side
    key, box = given[1]
    assert key == "b"
    assert box[2] == pytest.approx(0.89 * 50, abs=1)
    assert box[0] == pytest.approx((80 - 0.89 * 50) / 2, abs=1)
    # first face timed with and without the encoding: 3 estimate calls in all
    assert len(est.calls) == 3 and est.calls[1][0].encoding is None
    assert m["ms_timed_faces"] == 1 and m["ms_per_face_reusing_encoding"] is not None
    assert m["crop_margin"] == 0.1


def test_uses_encodings_looks_at_the_members():
    class Options:
        reuse_encoding = True

    class Transfer:
        options = Options()
        _encoder = object()

    class Ensemble:
        members = [Stub(), Transfer()]

    assert ev.uses_encodings(Transfer())
    assert ev.uses_encodings(Ensemble())
    assert not ev.uses_encodings(Stub())


def test_group_metrics_and_worst_adult_group():
    # two adult groups with enough faces, one small adult group, one child group
    ages = [30] * 40 + [45] * 40 + [70] * 3 + [5] * 40
    genders = [1] * 40 + [0] * 40 + [0] * 3 + [1] * 40
    races = [0] * 40 + [1] * 40 + [2] * 3 + [0] * 40
    pf = [0.9] * 36 + [0.1] * 4 + [0.2] * 40 + [0.9] * 3 + [0.3] * 40
    g = ev.group_metrics([a + 2 for a in ages], pf, ages, genders, races, min_n=30)
    groups = g["groups"]
    assert groups["white/female/20-39"]["gender_accuracy"] == pytest.approx(0.9)
    assert groups["white/female/20-39"]["age_mae"] == pytest.approx(2.0)
    assert groups["black/male/40-59"]["gender_accuracy"] == 1.0
    assert groups["asian/male/60+"] == {
        "n": 3,
        "age_mae": 2.0,
        "gender_accuracy": 0.0,
        "gender_accuracy_low95": 0.0,
    }
    assert groups["white/female/0-12"]["gender_accuracy"] == 0.0
    # the small group and the children are listed but not ranked
    assert g["worst_adult_gender"]["group"] == "white/female/20-39"
    assert g["adult_groups_ranked"] == 2
    assert g["adult_groups_below_93"] == ["white/female/20-39"]
    assert 0.7 < groups["white/female/20-39"]["gender_accuracy_low95"] < 0.9


def test_group_metrics_at_the_pipelines_gender_threshold():
    # an adult group whose wrong answers are all unsure: abstaining at 0.8 leaves it right
    ages = [30] * 40 + [45] * 40
    genders = [1] * 40 + [0] * 40
    races = [0] * 80
    pf = [0.95] * 34 + [0.3] * 6 + [0.05] * 30 + [0.85] * 2 + [0.4] * 8
    g = ev.group_metrics(ages, pf, ages, genders, races, min_n=30, min_confidence=0.8)
    women, men = g["groups"]["white/female/20-39"], g["groups"]["white/male/40-59"]
    assert women["gender_accuracy"] == pytest.approx(0.85)
    assert women["coverage"] == pytest.approx(34 / 40)
    assert women["gender_accuracy_answered"] == 1.0
    # a sure mistake stays a mistake
    assert men["coverage"] == pytest.approx(32 / 40)
    assert men["gender_accuracy_answered"] == pytest.approx(30 / 32)
    assert g["worst_adult_gender"]["group"] == "white/female/20-39"
    assert g["worst_adult_gender_answered"]["group"] == "white/male/40-59"
    assert g["adult_groups_answered_below_93"] == []
    # without a threshold the figures are not made up
    plain = ev.group_metrics(ages, pf, ages, genders, races, min_n=30)
    assert "coverage" not in plain["groups"]["white/male/40-59"]
    assert "worst_adult_gender_answered" not in plain
    md = "\n".join(ev.group_markdown("x", {"by_group": g, "abstention": []}))
    assert "| white/male/40-59 | 40 | 0.0 | 95.0% |" in md
    assert "80.0% | 93.8% |" in md
    assert "worst adult group (n >= 30) white/male/40-59 93.8%" in md


def test_abstention_curve_trades_coverage_for_accuracy():
    ages = [5, 5, 30, 30, 30, 30]
    genders = [1, 0, 1, 0, 1, 0]
    pf = [0.45, 0.6, 0.95, 0.05, 0.4, 0.65]  # the unsure ones are wrong
    rows = ev.abstention_curve(pf, ages, genders, thresholds=(0.5, 0.68, 0.9))
    assert rows[0]["all"] == {"coverage": 1.0, "accuracy": 0.3333}
    assert rows[1]["all"] == {"coverage": 0.3333, "accuracy": 1.0}
    assert rows[1]["0-12"] == {"coverage": 0.0, "accuracy": None}
    assert rows[2]["13+"] == {"coverage": 0.5, "accuracy": 1.0}


def test_card_section_is_replaced_not_appended_twice(tmp_path):
    ages = [30] * 40 + [5] * 10
    genders = [1] * 40 + [0] * 10
    races = [0] * 50
    pf = [0.9] * 40 + [0.6] * 10
    pred = [31] * 40 + [6] * 10
    m = ev.age_gender_metrics(pred, pf, ages, genders)
    m.update(
        ev.detail_metrics(
            (np.array(pred), np.array(pf)),
            [
                type("S", (), {"age": a, "gender": g, "race": r, "name": "x"})()
                for a, g, r in zip(ages, genders, races, strict=True)
            ],
        )
    )
    meta = {
        "command": "python scripts/eval_attributes.py --cards",
        "date": "d",
        "machine": "m",
        "boxes": "utkface",
        "images": 50,
    }
    card = tmp_path / "x.md"
    card.write_text("# Model card\n\ntraining text\n")
    ev.write_card_section(card, ev.card_section("x", m, meta))
    ev.write_card_section(card, ev.card_section("x", m, meta))
    text = card.read_text()
    assert text.startswith("# Model card\n\ntraining text\n")
    assert text.count(ev.CARD_MARK) == 1
    assert "white/female/20-39" in text and "white/male/0-12" in text
    assert "worst adult group (n >= 30): white/female/20-39 100.0%" in text
