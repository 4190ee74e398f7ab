"""Each pre-trained detector backend finds the astronaut's face; options are validated."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from pipeline.detectors import Detector, registry
from pipeline.evaluation import iou_matrix
from pipeline.record import Face
from pipeline.registry import BackendError

# Eileen Collins' face in skimage.data.astronaut() (512 x 512): x 160-270, y 60-190
EXPECTED = np.array([[160, 60, 110, 130]])

BACKENDS = [
    ("haar", {}),
    ("hog", {}),
    ("dlib-cnn", {}),
    ("mtcnn", {}),
    ("blazeface", {}),
    ("blazeface", {"model": "short"}),
]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


_cache: dict[str, object] = {}


def make(name: str, options: dict) -> object:
    key = f"{name}{sorted(options.items())}"
    if key not in _cache:
        _cache[key] = registry.create(name, options)
    return _cache[key]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "options"), BACKENDS, ids=lambda v: str(v) if v else "")
def test_finds_the_astronaut(name: str, options: dict, astronaut: np.ndarray) -> None:
    faces = make(name, options).detect(astronaut)
    assert faces, f"{name} found no face"
    best = max(faces, key=lambda f: f.score)
    assert iou_matrix(np.array([best.box]), EXPECTED)[0, 0] >= 0.3, best.box
    for f in faces:
        x, y, w, h = f.box
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 512 and y + h <= 512


@pytest.mark.parametrize(("name", "options", "n_points"), [("mtcnn", {}, 5), ("blazeface", {}, 6)])
def test_landmarks_fall_inside_the_face(
    name: str, options: dict, n_points: int, astronaut: np.ndarray
) -> None:
    best = max(make(name, options).detect(astronaut), key=lambda f: f.score)
    assert best.landmarks is not None and len(best.landmarks) == n_points
    pts = np.array(best.landmarks)
    x, y, w, h = best.box
    # eyes, nose and mouth (not blazeface's ear points, which sit at the box edge)
    inner = pts[:4] if n_points == 6 else pts
    assert (inner[:, 0] > x).all() and (inner[:, 0] < x + w).all()
    assert (inner[:, 1] > y).all() and (inner[:, 1] < y + h).all()


def test_min_size_filters_faces(astronaut: np.ndarray) -> None:
    det = make("haar", {})
    assert det.detect(astronaut, min_size=50)
    assert det.detect(astronaut, min_size=200) == []


def test_blank_and_tiny_images_give_no_faces() -> None:
    for name, options in [("haar", {}), ("blazeface", {}), ("mtcnn", {})]:
        det = make(name, options)
        assert det.detect(np.zeros((240, 320, 3), dtype=np.uint8)) == []
        assert det.detect(np.zeros((8, 8, 3), dtype=np.uint8)) == []


def test_blazeface_boxes_map_back_through_the_letterbox(astronaut: np.ndarray) -> None:
    # the same face on a wide canvas, shifted right: the box must move with it
    canvas = np.zeros((512, 1024, 3), dtype=np.uint8)
    canvas[:, 400:912] = astronaut
    det = make("blazeface", {})
    best = max(det.detect(canvas), key=lambda f: f.score)
    shifted = EXPECTED + np.array([[400, 0, 0, 0]])
    assert iou_matrix(np.array([best.box]), shifted)[0, 0] >= 0.3, best.box


def test_blazeface_anchor_counts_match_the_models() -> None:
    from pipeline.detectors.blazeface import MODELS, ssd_anchors

    assert len(ssd_anchors(MODELS["short"])) == 896
    assert len(ssd_anchors(MODELS["full"])) == 2304
    a = ssd_anchors(MODELS["short"])
    # first layer: 16x16 cells, 2 anchors each, row-major from the top-left cell
    np.testing.assert_allclose(a[:3], [[1 / 32, 1 / 32], [1 / 32, 1 / 32], [3 / 32, 1 / 32]])


@pytest.mark.parametrize(
    ("name", "options", "word"),
    [
        ("haar", {"min_neigbors": 3}, "min_neigbors"),
        ("haar", {"cascade": "frontalface_nope"}, "frontalface_nope"),
        ("blazeface", {"model": "tiny"}, "model"),
        ("mtcnn", {"min_face_size": 40}, "min_face_size"),
        ("dlib-cnn", {"upsample": 9}, "upsample"),
    ],
)
def test_bad_options_name_the_key(name: str, options: dict, word: str) -> None:
    with pytest.raises(BackendError, match=word):
        registry.create(name, options)


class _Fixed(Detector):
    """A backend that returns given boxes whatever the image (for the base class)."""

    name = "fixed-test"

    def __init__(self, boxes: list[tuple[int, int, int, int]]) -> None:
        super().__init__()
        self.boxes = boxes
        self.hints: list[int] = []

    def _detect(self, image: np.ndarray, min_size: int) -> list[Face]:
        self.hints.append(min_size)
        return [Face(box=b, score=1.0) for b in self.boxes]


def test_base_clips_boxes_to_the_image_and_drops_empty_ones() -> None:
    det = _Fixed([(-10, -5, 40, 30), (90, 50, 30, 40), (120, 10, 20, 20), (5, 5, 20, 20)])
    faces = det.detect(np.zeros((80, 100, 3), np.uint8))
    # left/top overflow cut; right/bottom overflow cut; wholly outside dropped
    assert [f.box for f in faces] == [(0, 0, 30, 25), (90, 50, 10, 30), (5, 5, 20, 20)]


def test_base_filters_min_size_after_clipping() -> None:
    det = _Fixed([(0, 0, 30, 30), (0, 70, 30, 30), (50, 10, 10, 12)])
    faces = det.detect(np.zeros((80, 100, 3), np.uint8), min_size=20)
    # the second box is 30 px tall but only 10 px of it are inside the image
    assert [f.box for f in faces] == [(0, 0, 30, 30)]
    assert det.hints == [20]


def test_base_rejects_non_rgb_input() -> None:
    det = _Fixed([])
    for shape in [(10, 10), (10, 10, 4), (4, 4, 3, 2)]:
        with pytest.raises(ValueError, match="RGB"):
            det.detect(np.zeros(shape, np.uint8))
