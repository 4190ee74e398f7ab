"""Video-like degradations of the scratch CNN's augmentation, and group-balanced weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from training.agegender import augment  # noqa: E402
from training.agegender.training import (  # noqa: E402
    Dataset,
    TrainConfig,
    balance_weights,
    synthetic_dataset,
    train,
)


def _faces(n: int = 8, size: int = 64, seed: int = 0) -> np.ndarray:
    """Images with fine detail (a checkerboard plus texture), values 0..1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    board = ((yy // 2 + xx // 2) % 2).astype(np.float32)
    x = 0.25 + 0.5 * board[None, :, :, None] * np.ones((n, 1, 1, 3), np.float32)
    x += rng.uniform(-0.1, 0.1, x.shape).astype(np.float32)
    return np.clip(x, 0, 1).astype(np.float32)


def _only(monkeypatch: pytest.MonkeyPatch, part: str) -> None:
    monkeypatch.setattr(
        augment, "DEGRADE_PARTS", {k: (1.0 if k == part else 0.0) for k in augment.DEGRADE_PARTS}
    )


def _high_freq(x: np.ndarray) -> float:
    """Mean absolute difference of neighbouring pixels (detail left in the image)."""
    return float(np.abs(np.diff(x, axis=1)).mean() + np.abs(np.diff(x, axis=2)).mean())


SEED = tf.constant([7, 11])


def test_blur_kernels_are_normalised_and_distinct() -> None:
    ks = augment.blur_kernels()
    assert len(ks) == 7
    for k in ks:
        assert k.shape == (5, 5) and abs(k.sum() - 1.0) < 1e-9 and (k >= 0).all()
    flat = np.stack([k.ravel() for k in ks])
    assert len({tuple(np.round(r, 6)) for r in flat}) == len(ks)


def test_degrade_is_deterministic_under_a_seed_and_changes_images() -> None:
    x = _faces()
    a = augment.degrade_batch(x, 1.0, seed=SEED).numpy()
    b = augment.degrade_batch(x, 1.0, seed=SEED).numpy()
    c = augment.degrade_batch(x, 1.0, seed=tf.constant([8, 11])).numpy()
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0
    # with probability 1 most images are changed (each part has its own probability)
    changed = np.abs(a - x).reshape(len(x), -1).max(axis=1) > 0.02
    assert changed.sum() >= len(x) // 2


def test_degrade_probability_zero_leaves_images_alone() -> None:
    x = _faces()
    out = augment.degrade_batch(x, 0.0, seed=SEED).numpy()
    assert np.array_equal(out, x)


@pytest.mark.parametrize("part", ["lowres", "blur"])
def test_lowres_and_blur_remove_detail(monkeypatch: pytest.MonkeyPatch, part: str) -> None:
    _only(monkeypatch, part)
    x = _faces()
    out = augment.degrade_batch(x, 1.0, seed=SEED).numpy()
    assert _high_freq(out) < 0.7 * _high_freq(x)
    # brightness is kept (no darkening from borders or kernels that do not sum to 1)
    assert abs(out.mean() - x.mean()) < 0.02


def test_noise_adds_variation_to_a_flat_image(monkeypatch: pytest.MonkeyPatch) -> None:
    _only(monkeypatch, "noise")
    x = np.full((8, 64, 64, 3), 0.5, np.float32)
    out = augment.degrade_batch(x, 1.0, seed=SEED).numpy()
    sd = out.reshape(8, -1).std(axis=1)
    assert (sd > 0.005).all() and (sd < 0.08).all()


def test_jpeg_changes_the_image_and_keeps_it_close(monkeypatch: pytest.MonkeyPatch) -> None:
    _only(monkeypatch, "jpeg")
    x = _faces()
    out = augment.degrade_batch(x, 1.0, seed=SEED).numpy()
    diff = np.abs(out - x).reshape(len(x), -1).mean(axis=1)
    assert (diff > 0.005).all() and (diff < 0.2).all()


def test_augment_batch_with_degradations_shape_and_range() -> None:
    imgs = (np.random.default_rng(1).uniform(0, 255, (6, 80, 80, 3))).astype(np.uint8)
    out = augment.augment_batch(tf.constant(imgs), 64, degrade=1.0).numpy()
    assert out.shape == (6, 64, 64, 3)
    assert out.min() >= 0.0 and out.max() <= 255.0
    # as the training input pipeline runs it: traced into a graph, unknown batch size
    spec = tf.TensorSpec([None, 80, 80, 3], tf.uint8)
    graph = tf.function(lambda x: augment.augment_batch(x, 64, degrade=0.5), input_signature=[spec])
    for n in (1, 6):
        assert graph(tf.constant(imgs[:n])).shape == (n, 64, 64, 3)


def _groups_dataset() -> Dataset:
    # 30 white men aged 30, 10 black women aged 30, 5 asian girls aged 5; all training
    ages = np.array([30] * 30 + [30] * 10 + [5] * 5)
    genders = np.array([0] * 30 + [1] * 10 + [1] * 5)
    races = np.array([0] * 30 + [1] * 10 + [2] * 5)
    n = len(ages)
    x = np.zeros((n, 4), np.float32)
    return Dataset(x, ages, genders, np.array(["train"] * n), {}, races)


def test_balance_weights_ratios_and_mean() -> None:
    ds = _groups_dataset()
    w = balance_weights(ds, 0.5)
    assert w.shape == (45,) and abs(w.mean() - 1.0) < 1e-5
    # (mean size / group size) ** 0.5: ratios between groups are sqrt of size ratios
    assert w[30] / w[0] == pytest.approx(np.sqrt(30 / 10), rel=1e-4)
    assert w[40] / w[0] == pytest.approx(np.sqrt(30 / 5), rel=1e-4)
    # each group's total weight moves towards equal shares
    totals = [w[:30].sum(), w[30:40].sum(), w[40:].sum()]
    assert max(totals) / min(totals) < 30 / 5
    assert np.array_equal(balance_weights(ds, 0.0), np.ones(45, np.float32))
    assert len(balance_weights(ds, 0.5, limit=20)) == 20


def test_balance_weights_need_races() -> None:
    ds = _groups_dataset()
    ds.races = None
    with pytest.raises(ValueError):
        balance_weights(ds, 0.5)


def test_weighted_training_runs_and_resume_keeps_the_runs_options(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    ds = synthetic_dataset(n=256, dim=8, seed=2)
    extra = {"balance": 0.5, "degrade": 0.3}
    cfg = TrainConfig(
        model="transfer",
        epochs=2,
        batch_size=32,
        run_dir=str(run),
        export_dir=str(out),
        extra=extra,
    )
    card = train(cfg, dataset=ds, verbose=0)
    assert card["training"]["balance_power"] == 0.5 and card["training"]["degrade"] == 0.3
    more = TrainConfig(model="transfer", epochs=3, run_dir=str(run), export_dir=str(out))
    card = train(more, resume=True, dataset=ds, verbose=0)
    assert card["training"]["balance_power"] == 0.5  # the run's own, not the new default
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 3 and state["config"]["extra"]["balance"] == 0.5


def test_degraded_eval_summary_finds_the_worst_adult_group() -> None:
    from types import SimpleNamespace

    from training.agegender.degraded_eval import summary

    samples, ages, pf = [], [], []
    # 40 white men aged 30 all right, 40 black women aged 45 with 8 wrong
    for _ in range(40):
        samples.append(SimpleNamespace(age=30, gender=0, race=0))
        ages.append(32.0)
        pf.append(0.1)
    for i in range(40):
        samples.append(SimpleNamespace(age=45, gender=1, race=1))
        ages.append(40.0)
        pf.append(0.3 if i < 8 else 0.95)
    s = summary((np.array(ages), np.array(pf)), samples)
    assert s["n"] == 80 and s["age_mae"] == pytest.approx(3.5)
    assert s["gender_accuracy"] == pytest.approx(0.9)
    assert s["worst_adult_group"]["group"] == "black/female/40-59"
    assert s["worst_adult_group"]["gender_accuracy"] == pytest.approx(0.8)
    assert s["adult_groups_below_93"] == ["black/female/40-59"]
    # at the pipeline's threshold (0.8) the 8 wrong answers (p_female 0.3 -> 0.7 male) abstain
    assert s["abstain_0.8"]["all"]["coverage"] == pytest.approx(0.9)
    assert s["abstain_0.8"]["all"]["accuracy"] == pytest.approx(1.0)
