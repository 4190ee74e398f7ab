"""Training the from-scratch CNN face detector: crop labels, scene windows, a short
training run, the `facepipe train cnn` command."""

from __future__ import annotations

import numpy as np

from pipeline.cnn_detector.boxes import iou_matrix, window_boxes
from pipeline.cnn_detector.model import PROPOSAL
from training.cnn_detector.data import (
    NEG,
    PART,
    POS,
    FaceImage,
    Scene,
    face_crops,
    scene_crops,
    scene_windows,
)


def _synthetic_face_image(rng: np.random.Generator) -> FaceImage:
    img = rng.integers(0, 80, (120, 120, 3)).astype(np.uint8)
    box = np.array([[30.0, 25.0, 80.0, 85.0]])
    img[25:85, 30:80] = 200
    return FaceImage(img, box, "synthetic")


def test_face_crops_labels_follow_iou_thresholds() -> None:
    rng = np.random.default_rng(2)
    faces = [_synthetic_face_image(rng)]
    crops = face_crops(faces, 30, 20, 30, 32, rng)
    assert crops.x.shape == (80, 32, 32, 3)
    assert (crops.y == POS).sum() == 30 and (crops.y == PART).sum() == 20
    assert (crops.y == NEG).sum() == 30
    # positives are windows close to the face: their offsets are small
    assert np.abs(crops.t[crops.y == POS]).max() < 0.45
    assert np.abs(crops.t[crops.y == NEG]).max() == 0
    # a positive crop is mostly the bright face
    assert crops.x[crops.y == POS].mean() > crops.x[crops.y == NEG].mean()


def test_scene_windows_avoid_forbidden_boxes() -> None:
    rng = np.random.default_rng(3)
    img = np.zeros((200, 300, 3), np.uint8)
    forbidden = np.array([[50.0, 50.0, 150.0, 150.0]])
    wins = scene_windows(Scene(img, forbidden), 200, rng)
    assert len(wins) == 200
    assert iou_matrix(window_boxes(wins), forbidden).max() < 0.1
    assert wins[:, 2].min() >= 16 and (wins[:, 0] >= 0).all() and (wins[:, 1] >= 0).all()
    assert (wins[:, 0] + wins[:, 2] <= 300 + 1e-6).all() and (
        wins[:, 1] + wins[:, 2] <= 200 + 1e-6
    ).all()
    crops = scene_crops([Scene(img, forbidden)], 50, 32, rng)
    assert crops.x.shape == (50, 32, 32, 3) and (crops.y == NEG).all()


def test_short_training_on_lfw_subset_separates_faces(tmp_path) -> None:
    """A few hundred steps on skimage's 100 faces / 100 non-faces lower the loss a lot."""
    import cv2
    import skimage.data

    from training.cnn_detector.train import StageTrainer, TrainConfig

    data = skimage.data.lfw_subset()  # (200, 25, 25) float, faces first
    crops = np.stack([cv2.resize(im, (32, 32)) for im in data])
    x = np.repeat((crops * 255).astype(np.uint8)[..., None], 3, axis=3)
    y = np.array([POS] * 100 + [NEG] * 100, np.int8)
    x = np.concatenate([x, x[:, :, ::-1]])  # flips double the set
    y = np.concatenate([y, y])
    t = np.zeros((len(y), 4), np.float32)
    trainer = StageTrainer(PROPOSAL, TrainConfig(work=str(tmp_path), lr=3e-3), tmp_path)
    order = np.random.default_rng(0).permutation(len(y))
    train_idx, test_idx = order[:320], order[320:]
    first = None
    for step in range(150):
        b = np.random.default_rng(step).choice(train_idx, 64, replace=False)
        loss, _, _ = trainer.train_step(x[b].astype(np.float32), y[b], t[b])
        first = float(loss) if first is None else first
    final = float(
        trainer.train_step(
            x[train_idx[:64]].astype(np.float32), y[train_idx[:64]], t[train_idx[:64]]
        )[0]
    )
    assert final < 0.5 * first
    prob = 1 / (1 + np.exp(-trainer.predict(x[test_idx])[:, 0]))
    acc = ((prob > 0.5) == (y[test_idx] == POS)).mean()
    assert acc >= 0.8, acc


def test_train_command_is_registered_and_checks_its_arguments(tmp_path) -> None:
    from click.testing import CliRunner

    from pipeline.commands.train import train

    runner = CliRunner()
    result = runner.invoke(train, ["cnn", "--help"])
    assert result.exit_code == 0
    for flag in ("--epochs", "--resume", "--out", "--work", "--stage"):
        assert flag in result.output
    both = runner.invoke(train, ["cnn", "--resume", "--restart", "--work", str(tmp_path)])
    assert both.exit_code != 0 and "exclude each other" in both.output
    bad = runner.invoke(train, ["cnn", "--epochs", "0", "--work", str(tmp_path)])
    assert bad.exit_code != 0 and "epochs" in bad.output
