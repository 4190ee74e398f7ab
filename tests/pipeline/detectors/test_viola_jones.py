"""The `viola-jones` backend with the shipped cascade."""

import numpy as np
import pytest
from skimage import data

from pipeline.detectors.base import Detector
from pipeline.detectors.viola_jones import SHIPPED_CASCADE, ViolaJonesDetector
from pipeline.registry import BackendError, Registry
from pipeline.vj.cascade import Cascade

ASTRONAUT_FACE = (160, 60, 110, 130)  # x, y, w, h of the face region in the 512 x 512 image


def iou(a, b) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    ix = max(0, min(ax2, bx2) - max(a[0], b[0]))
    iy = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def detector() -> ViolaJonesDetector:
    return ViolaJonesDetector()


def test_shipped_cascade_is_small_json_with_stages() -> None:
    assert SHIPPED_CASCADE.stat().st_size < 2_000_000
    cascade = Cascade.load(SHIPPED_CASCADE)
    assert cascade.window == 24 and len(cascade.stages) >= 5
    assert cascade.n_features == sum(len(s) for s in cascade.stages)


def test_finds_the_astronauts_face(detector) -> None:
    faces = detector.detect(data.astronaut())
    assert faces, "no face found"
    best = max(iou(f.box, ASTRONAUT_FACE) for f in faces)
    assert best >= 0.3, [f.box for f in faces]
    assert all(f.score > 0 for f in faces)


def test_no_faces_in_a_flat_or_tiny_image(detector) -> None:
    assert detector.detect(np.full((200, 300, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((10, 10, 3), np.uint8)) == []


def test_min_size_filters_small_faces(detector) -> None:
    img = data.astronaut()
    assert all(f.box[3] >= 150 for f in detector.detect(img, min_size=150))
    assert detector.detect(img, min_size=600) == []


def test_registry_creates_it_by_name_and_checks_options(tmp_path) -> None:
    reg = Registry("detector", "pipeline.detectors", Detector)
    det = reg.create("viola-jones", {"scale_factor": 1.3, "min_neighbors": 1})
    assert isinstance(det, ViolaJonesDetector) and det.options.step == 2
    with pytest.raises(BackendError, match="scale_facter"):
        reg.create("viola-jones", {"scale_facter": 1.3})
    short = reg.create("viola-jones", {"stages": 3})
    assert len(short.cascade.stages) == 3
    with pytest.raises(ValueError, match="stages=99"):
        ViolaJonesDetector(ViolaJonesDetector.Options(stages=99))
    with pytest.raises(FileNotFoundError, match="train one"):
        ViolaJonesDetector(ViolaJonesDetector.Options(cascade=str(tmp_path / "none.json")))


def test_bad_input_gives_a_clear_error(detector) -> None:
    with pytest.raises(ValueError, match="RGB image"):
        detector.detect(np.zeros((4, 4, 3, 2), np.uint8))
