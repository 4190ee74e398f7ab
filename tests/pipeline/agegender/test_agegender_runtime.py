"""Inference helpers: expected age from bins, numpy heads, framing inverse of crop_face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.agegender.framing import UTKFACE_MARGIN, face_crop_box, inner_box
from pipeline.agegender.models import AGE_BINS, age_from_probs
from pipeline.agegender.runtime import HeadsRuntime
from pipeline.attributes.base import crop_face, to_attributes


def test_age_from_probs_mean_and_spread() -> None:
    p = np.zeros((2, AGE_BINS))
    p[0, 30] = 1.0
    p[1, 20] = p[1, 40] = 0.5
    mean, std = age_from_probs(p)
    assert mean == pytest.approx([30.0, 30.0])
    assert std == pytest.approx([0.0, 10.0])


def test_to_attributes_gender_and_confidence() -> None:
    p = np.full((2, AGE_BINS), 1.0 / AGE_BINS)
    out = to_attributes(p, np.array([0.9, 0.2]))
    assert [o.gender for o in out] == ["female", "male"]
    assert out[0].gender_confidence == pytest.approx(0.9)
    assert out[1].gender_confidence == pytest.approx(0.8)
    assert out[0].age == pytest.approx(50.0)


def _heads(path: Path, dim: int = 6) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        mean=np.zeros(dim, np.float32),
        scale=np.ones(dim, np.float32),
        W0=rng.normal(size=(dim, 8)).astype(np.float32),
        b0=np.zeros(8, np.float32),
        Wa=rng.normal(size=(8, AGE_BINS)).astype(np.float32),
        ba=np.zeros(AGE_BINS, np.float32),
        Wg=rng.normal(size=(8, 1)).astype(np.float32),
        bg=np.zeros(1, np.float32),
    )
    return path


def test_heads_runtime_shapes_and_errors(tmp_path: Path) -> None:
    heads = HeadsRuntime(_heads(tmp_path / "h.npz"))
    probs, pf = heads(np.random.default_rng(1).normal(size=(5, 6)))
    assert probs.shape == (5, AGE_BINS) and pf.shape == (5,)
    assert np.allclose(probs.sum(1), 1.0) and np.all((pf > 0) & (pf < 1))
    with pytest.raises(ValueError, match="features of shape"):
        heads(np.zeros((2, 7)))
    with pytest.raises(FileNotFoundError, match="facepipe train age-gender"):
        HeadsRuntime(tmp_path / "none.npz")


def test_face_crop_box_and_inner_box_invert_crop_face() -> None:
    box = face_crop_box(200, 200)
    assert box.box[2] == pytest.approx(178, abs=1)
    image = np.zeros((200, 200, 3), np.uint8)
    crop = crop_face(image, box, UTKFACE_MARGIN)
    assert abs(crop.shape[0] - 200) <= 2  # the margin turns the box back into the image
    for margin in (0.06, 0.25, 0.3):
        inner = inner_box(300, 300, margin)
        assert inner.box[2] * (1 + 2 * margin) == pytest.approx(300, abs=2)
    with pytest.raises(ValueError):
        face_crop_box(0, 10)


def test_heads_runtime_averages_seed_heads(tmp_path: Path) -> None:
    """Weights with a leading seed axis: mean of the seeds' age distributions and gender
    logits, each seed computed like a single-head file."""
    a, b = _heads(tmp_path / "a.npz"), tmp_path / "b.npz"
    rng = np.random.default_rng(7)
    with np.load(a) as z:
        one = {k: z[k] for k in z.files}
    two = {k: (v + rng.normal(scale=0.3, size=v.shape)).astype(np.float32) for k, v in one.items()}
    two["mean"], two["scale"] = one["mean"], one["scale"]
    np.savez(b, **two)
    stacked = tmp_path / "s.npz"
    np.savez(
        stacked,
        mean=one["mean"],
        scale=one["scale"],
        **{k: np.stack([one[k], two[k]]) for k in one if k not in ("mean", "scale")},
    )
    x = rng.normal(size=(4, 6))
    p1, g1 = HeadsRuntime(a)(x)
    p2, g2 = HeadsRuntime(b)(x)
    heads = HeadsRuntime(stacked)
    assert heads.seeds == 2 and heads.dim == 6
    probs, pf = heads(x)
    assert np.allclose(probs, (p1 + p2) / 2)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    assert np.allclose(np.log(pf / (1 - pf)), (logit(g1) + logit(g2)) / 2)
