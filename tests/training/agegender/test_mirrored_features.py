"""Plain + mirrored dlib encodings (the transfer heads' training augmentation)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.data import astronaut

from pipeline.agegender.framing import face_crop_box
from training.agegender import data

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def chip() -> np.ndarray:
    # a UTKFace-like face crop of the astronaut: HOG box (179, 83, 88, 88) / 0.89
    return np.ascontiguousarray(astronaut()[72:171, 173:272])


def test_first_half_is_the_pipeline_encoding(chip: np.ndarray) -> None:
    from pipeline.recognition.encoder import DlibEncoder

    feats = data.MirroredDlibFeatures()([chip])
    assert feats.shape == (1, 256)
    plain = DlibEncoder().encode(chip, [face_crop_box(*chip.shape[:2])])[0]
    assert np.abs(feats[0, :128] - plain).max() < 1e-5
    # the mirror is the same face: close, but not the same vector
    d = float(np.linalg.norm(feats[0, 128:] - feats[0, :128]))
    assert 1e-3 < d < 0.4
    # and close to the encoding of the mirrored image (landmarks found on it)
    flipped = DlibEncoder().encode(
        np.ascontiguousarray(chip[:, ::-1]), [face_crop_box(*chip.shape[:2])]
    )[0]
    assert float(np.linalg.norm(feats[0, 128:] - flipped)) < d


def test_training_set_adds_mirrored_training_rows_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.agegender import training

    names = np.array([f"{i}_{i % 2}_0_x.jpg" for i in range(400)])
    rng = np.random.default_rng(0)
    fake = {
        "names": names,
        "ages": np.arange(400) % 90,
        "genders": np.arange(400) % 2,
        "features": rng.normal(size=(400, 256)).astype(np.float32),
    }
    monkeypatch.setattr(data, "mirrored_cache", lambda partial=False: fake)
    monkeypatch.setattr(training, "require", lambda name: ".")
    monkeypatch.setattr(training.splitmod, "list_samples", lambda folder: [])
    ds = training.utkface_dataset(training.TrainConfig(model="transfer"))
    side = training.sides_of(names)
    n_train = int((side == "train").sum())
    assert ds.x.shape == (800, 128)
    assert (ds.side == "train").sum() == 2 * n_train
    xv, _, _ = ds.part("val")
    assert np.array_equal(xv, fake["features"][side == "val", :128])  # plain only
    xt, at, _ = ds.part("train")
    assert np.array_equal(xt[n_train:], fake["features"][side == "train", 128:])
    assert np.array_equal(at[:n_train], at[n_train:])
