"""DlibEncoder: the default is dlib's descriptor (run by onnxruntime, the same encodings as
dlib's own code), ``flip=True`` is chip + mirror averaged.

No dataset needed: the real dlib models on scikit-image's astronaut() photo.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.recognition.encoder import CHIP_PADDING, CHIP_SIZE, DlibEncoder, flip_average
from pipeline.record import Face

# ----- flip_average maths -----------------------------------------------------------------


def test_flip_average_is_the_mean_direction_at_the_mean_length() -> None:
    a = np.array([3.0, 0.0, 0.0])
    b = np.array([0.0, 1.0, 0.0])
    out = flip_average(a, b)
    mean = (a + b) / 2
    # same direction as the plain mean ...
    assert np.allclose(out / np.linalg.norm(out), mean / np.linalg.norm(mean))
    # ... but as long as the two inputs are on average (the plain mean is shorter)
    assert np.linalg.norm(out) == pytest.approx(2.0)
    assert np.linalg.norm(mean) < 2.0
    assert np.allclose(flip_average(b, a), out)


def test_flip_average_of_identical_and_opposite_vectors() -> None:
    v = np.array([0.1, -0.4, 0.25])
    assert np.allclose(flip_average(v, v), v)
    assert np.allclose(flip_average(v, -v), 0.0)  # no division by zero


# ----- the real encoder -------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, Face]:
    import dlib
    from skimage import data

    img = np.ascontiguousarray(data.astronaut())
    rects = dlib.get_frontal_face_detector()(img, 1)
    r = min(rects, key=lambda r: r.top())  # the face, not the patch lower down
    return img, Face(box=(r.left(), r.top(), r.width(), r.height()))


@pytest.fixture(scope="module")
def encoders() -> tuple[DlibEncoder, DlibEncoder]:
    return DlibEncoder(), DlibEncoder(flip=True)


@pytest.fixture(scope="module")
def dlib_net() -> object:
    """dlib's own implementation of the network, to compare with."""
    import dlib
    import face_recognition_models as frm

    return dlib.face_recognition_model_v1(frm.face_recognition_model_location())


def _mirrored(img: np.ndarray, face: Face) -> tuple[np.ndarray, Face]:
    x, y, w, h = face.box
    return np.ascontiguousarray(img[:, ::-1]), Face(box=(img.shape[1] - x - w, y, w, h))


@pytest.mark.slow
def test_default_is_the_plain_dlib_descriptor(
    astronaut: tuple[np.ndarray, Face], encoders: tuple[DlibEncoder, DlibEncoder], dlib_net: Any
) -> None:
    import dlib

    img, face = astronaut
    plain, _ = encoders
    assert plain.flip is False and DlibEncoder.__init__.__defaults__ == (1, 80, False, "onnx")
    x, y, w, h = face.box
    shape = plain._shape(img, dlib.rectangle(x, y, x + w, y + h))
    expected = np.asarray(dlib_net.compute_face_descriptor(img, shape, 1))
    # onnxruntime and dlib sum in different orders: float32 rounding apart, the same
    assert np.abs(plain.encode(img, [face])[0] - expected).max() < 1e-5
    own = DlibEncoder(engine="dlib")
    assert np.array_equal(own.encode(img, [face])[0], expected)


def test_flip_is_the_average_of_the_chip_and_its_mirror(
    astronaut: tuple[np.ndarray, Face], encoders: tuple[DlibEncoder, DlibEncoder], dlib_net: Any
) -> None:
    import dlib

    img, face = astronaut
    plain, flip = encoders
    x, y, w, h = face.box
    shape = plain._shape(img, dlib.rectangle(x, y, x + w, y + h))
    chip = dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    mirror = np.asarray(dlib_net.compute_face_descriptor(np.ascontiguousarray(chip[:, ::-1])))
    a = plain.encode(img, [face])[0]
    out, marks = flip.encode_with_landmarks(img, [face])
    assert out.shape == (1, 128) and len(marks[0]) == 5
    assert np.allclose(out[0], flip_average(a, mirror), atol=1e-5)
    # it differs from the plain encoding, but stays the same face (well within 0.6) and on
    # the same scale
    assert 0.01 < np.linalg.norm(out[0] - a) < 0.3
    assert np.linalg.norm(out[0]) == pytest.approx(np.linalg.norm(a), rel=0.02)


def test_flip_brings_a_photo_and_its_mirror_closer(
    astronaut: tuple[np.ndarray, Face], encoders: tuple[DlibEncoder, DlibEncoder]
) -> None:
    img, face = astronaut
    mimg, mface = _mirrored(img, face)
    plain, flip = encoders
    d_plain = np.linalg.norm(plain.encode(img, [face])[0] - plain.encode(mimg, [mface])[0])
    d_flip = np.linalg.norm(flip.encode(img, [face])[0] - flip.encode(mimg, [mface])[0])
    # plain encodings of a photo and its mirror differ; flip-averaged ones are much closer
    # (measured 0.18 vs 0.07: not equal, because the landmarks are re-detected on the
    # mirrored photo, so its chip is not exactly the mirror of the original chip)
    assert d_plain > 0.05
    assert d_flip < 0.6 * d_plain


def test_flip_with_small_face_upscaling_and_several_faces(
    astronaut: tuple[np.ndarray, Face], encoders: tuple[DlibEncoder, DlibEncoder]
) -> None:
    import cv2

    img, face = astronaut
    _, flip = encoders
    small = cv2.resize(img, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    sface = Face(box=tuple(int(round(v * 0.4)) for v in face.box))
    assert sface.box[3] < flip.min_face_px  # goes through the upscaling path
    both = flip.encode(small, [sface, sface])
    assert both.shape == (2, 128) and np.array_equal(both[0], both[1])
    # the same person as the full-size face
    assert np.linalg.norm(both[0] - flip.encode(img, [face])[0]) < 0.45
    assert flip.encode(img, []).shape == (0, 128)
