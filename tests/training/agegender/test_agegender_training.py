"""Training on generated data: the loss goes down, runs resume, exports load and predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from pipeline.agegender.models import AGE_BINS  # noqa: E402
from pipeline.agegender.runtime import HeadsRuntime, ScratchRuntime  # noqa: E402
from training.agegender.training import TrainConfig, synthetic_dataset, train  # noqa: E402


def _history(run: Path) -> list[dict]:
    return json.loads((run / "state.json").read_text())["history"]


def test_heads_training_reduces_loss_resumes_and_exports(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    ds = synthetic_dataset(n=640, dim=16, seed=3)
    cfg = TrainConfig(
        model="transfer",
        epochs=4,
        batch_size=32,
        learning_rate=3e-3,
        run_dir=str(run),
        export_dir=str(out),
    )
    card = train(cfg, dataset=ds, verbose=0)
    hist = _history(run)
    assert len(hist) == 4
    assert hist[-1]["loss"] < 0.8 * hist[0]["loss"]
    # better than always answering the mean age of the generated labels
    _, ages, _ = ds.part("val")
    assert card["metrics"]["val"]["age_mae"] < np.abs(ages - ages.mean()).mean()
    assert (out / "transfer.json").is_file() and (out / "transfer.md").is_file()

    with pytest.raises(FileExistsError):
        train(
            TrainConfig(model="transfer", epochs=4, run_dir=str(run), export_dir=str(out)),
            dataset=ds,
            verbose=0,
        )
    more = TrainConfig(model="transfer", epochs=6, run_dir=str(run), export_dir=str(out))
    train(more, resume=True, dataset=ds, verbose=0)
    assert [h["epoch"] for h in _history(run)] == [1, 2, 3, 4, 5, 6]

    heads = HeadsRuntime(out / "transfer.npz")
    xv, _, _ = ds.part("val")
    probs, pf = heads(xv)
    assert probs.shape == (len(xv), AGE_BINS)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-6) and np.all((pf >= 0) & (pf <= 1))


def test_scratch_training_reduces_loss_and_exports_litert(tmp_path: Path) -> None:
    run, out = tmp_path / "run", tmp_path / "out"
    ds = synthetic_dataset(n=256, seed=4)
    cfg = TrainConfig(
        model="scratch",
        epochs=3,
        batch_size=32,
        learning_rate=3e-3,
        widths=(8, 8, 16, 16),
        bf16=False,
        run_dir=str(run),
        export_dir=str(out),
    )
    card = train(cfg, dataset=ds, verbose=0)
    hist = _history(run)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert card["file"] == "scratch.tflite" and card["input"]["size"] == 64
    rt = ScratchRuntime(out / "scratch.tflite")
    crops = [np.full((90, 70, 3), 120, np.uint8), np.zeros((30, 30, 3), np.uint8)]
    probs, pf = rt(crops)
    assert probs.shape == (2, AGE_BINS) and pf.shape == (2,)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-4)
    with pytest.raises(ValueError, match="RGB crop"):
        rt([np.zeros((10, 10), np.uint8)])
