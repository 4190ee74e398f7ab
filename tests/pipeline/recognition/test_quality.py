import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from pipeline.recognition.encoder import DlibEncoder
from pipeline.recognition.quality import face_quality, frontal_factor, sharpness_factor
from pipeline.record import Face

FACE = Face(box=(175, 76, 90, 90))  # HOG's box on the astronaut portrait


def test_sharp_frontal_face_beats_blurred_and_small():
    img = astronaut()
    enc = DlibEncoder()
    _, (marks,) = enc.encode_with_landmarks(img, [FACE])
    assert len(marks) == 5
    # landmarks land on the face, in image coordinates
    assert all(170 < x < 270 and 70 < y < 175 for x, y in marks)
    sharp = face_quality(img, FACE, marks)
    blurred = face_quality(cv2.GaussianBlur(img, (0, 0), 4), FACE, marks)
    small = cv2.resize(img, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    small_face = Face(box=tuple(int(v * 0.3) for v in FACE.box))
    _, (small_marks,) = enc.encode_with_landmarks(small, [small_face])
    assert sharp > 0.5
    assert sharp > 2 * blurred
    assert sharp > face_quality(small, small_face, small_marks)


def test_upscaled_small_face_landmarks_map_back_to_the_image():
    img = cv2.resize(astronaut(), None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)
    face = Face(box=(52, 23, 27, 27))
    _, (marks,) = DlibEncoder(min_face_px=80).encode_with_landmarks(img, [face])
    assert all(48 < x < 83 and 18 < y < 54 for x, y in marks)


def test_frontal_factor_from_nose_offset():
    eyes = [(0.0, 0.0), (10.0, 0.0), (30.0, 0.0), (40.0, 0.0)]
    assert frontal_factor([*eyes, (20.0, 20.0)]) == 1.0
    assert frontal_factor([*eyes, (32.5, 20.0)]) < 0.5  # nose under one eye: profile-ish
    assert frontal_factor(None) == 0.5


def test_flat_image_has_no_sharpness():
    assert (
        sharpness_factor(np.full((100, 100, 3), 128, np.uint8), Face(box=(10, 10, 50, 50))) == 0.0
    )


def test_detection_quality_prefers_big_confident_frontal_faces():
    from pipeline.recognition.quality import detection_quality
    from pipeline.record import Face

    frontal = [(40.0, 40.0), (60.0, 40.0), (50.0, 50.0)]
    turned = [(40.0, 40.0), (60.0, 40.0), (41.0, 50.0)]
    big = Face(box=(0, 0, 80, 80), score=0.9, landmarks=frontal)
    assert detection_quality(big) == pytest.approx(0.9)
    assert detection_quality(Face(box=(0, 0, 40, 40), score=0.9, landmarks=frontal)) < 0.5
    assert detection_quality(Face(box=(0, 0, 80, 80), score=0.9, landmarks=turned)) < 0.1
    assert detection_quality(Face(box=(0, 0, 80, 80), score=0.45)) == pytest.approx(0.225)
