"""A tiny end-to-end training run on scikit-image's LFW subset, mining and resuming."""

import numpy as np
import pytest

from pipeline.vj.cascade import Cascade
from training.vj.data import NegativeImage, allowed_windows, crop_window
from training.vj.train import mine_negatives, train_cascade


def mosaic(crops: np.ndarray, cols: int) -> np.ndarray:
    rows = len(crops) // cols
    h, w = crops.shape[1:]
    return (
        crops[: rows * cols]
        .reshape(rows, cols, h, w)
        .transpose(0, 2, 1, 3)
        .reshape(rows * h, cols * w)
    )


@pytest.fixture(scope="module")
def trained(lfw_subset, tmp_path_factory):
    faces, non = lfw_subset
    train_faces = np.concatenate([faces[:80], faces[:80, :, ::-1]])
    rng = np.random.default_rng(0)
    pool = [
        NegativeImage(f"mosaic{i}", mosaic(non[:80][rng.permutation(80)], 10)) for i in range(6)
    ]
    out = tmp_path_factory.mktemp("vj") / "cascade.json"
    kwargs = dict(
        n_features=1500, n_pos=160, n_neg=150, hit_target=0.99, fa_target=0.3,
        stage_sizes=[3, 6, 10], seed=1, log=lambda m: None,
    )  # fmt: skip
    first = train_cascade(out, train_faces, pool, stages=2, **kwargs)
    first_json = first.to_dict()["stages"]
    full = train_cascade(out, train_faces, pool, stages=3, resume=True, **kwargs)
    return full, first_json, faces, non


def test_tiny_cascade_separates_held_out_faces_from_non_faces(trained) -> None:
    cascade, _, faces, non = trained
    face_rate = cascade.classify(faces[80:])[0].mean()
    non_rate = cascade.classify(non[80:])[0].mean()
    assert face_rate >= 0.8, face_rate
    assert non_rate <= 0.3, non_rate
    assert face_rate - non_rate >= 0.6


def test_resume_keeps_finished_stages(trained) -> None:
    cascade, first_json, _, _ = trained
    assert len(cascade.stages) == 3
    assert cascade.to_dict()["stages"][:2] == first_json
    assert len(cascade.meta["stages"]) == 3
    assert [r["from_stage"] for r in cascade.meta["runs"]] == [0, 2]


def test_mined_negatives_pass_the_cascade(trained) -> None:
    cascade, _, faces, non = trained
    img = mosaic(np.concatenate([non[80:], faces[80:]]), 8)
    neg, stats = mine_negatives(
        cascade, [NegativeImage("free", img)], 30, np.random.default_rng(0), max_passes=1
    )
    assert stats.accepted > 0 and 0 < len(neg) <= 30
    assert cascade.classify(neg)[0].all()


def test_allowed_windows_rule() -> None:
    face = np.array([[100.0, 100.0, 100.0, 100.0]])
    w = np.array(
        [
            [100, 100, 100, 100],  # the face itself
            [80, 80, 140, 140],  # contains it
            [120, 120, 30, 30],  # an eye-sized part: a fine negative
            [300, 300, 50, 50],  # elsewhere
            [170, 100, 100, 100],  # overlapping by 30 % of its width
        ],
        dtype=float,
    )
    np.testing.assert_array_equal(allowed_windows(w, face), [False, False, True, True, False])


def test_crop_window_geometry() -> None:
    img = np.zeros((100, 100), np.uint8)
    img[40:60, 40:60] = 200
    crop = crop_window(img, (40, 40, 20, 20), 10)
    assert crop.shape == (10, 10) and crop.min() == 200
    wide = crop_window(img, (40, 40, 20, 20), 10, scale=2.0)
    assert wide[0, 0] == 0 and wide[5, 5] == 200
    flipped = crop_window(img, (30, 40, 20, 20), 10, flip=True)
    np.testing.assert_array_equal(flipped, crop_window(img, (30, 40, 20, 20), 10)[:, ::-1])
    with pytest.raises(ValueError):
        crop_window(img, (0, 0, 1, 1), 10)


def test_train_cascade_refuses_bad_crops(tmp_path) -> None:
    with pytest.raises(ValueError, match="crops"):
        train_cascade(tmp_path / "c.json", np.zeros((4, 24, 20)), [], stages=1)
    assert not isinstance(Cascade, type(None))
