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
