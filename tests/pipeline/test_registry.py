import numpy as np
import pytest

from pipeline.detectors import registry as detectors
from pipeline.registry import BackendError


def test_lists_backends_without_importing_them():
    names = detectors.names()
    assert "hog" in names
    assert "base" not in names


def test_unknown_backend_lists_available():
    with pytest.raises(BackendError, match="available:.*hog"):
        detectors.get("no-such-detector")


def test_bad_option_named():
    with pytest.raises(BackendError, match=r"detector\.options\.upsampel"):
        detectors.create("hog", {"upsampel": 1})


def test_hog_finds_astronaut_face():
    from skimage.data import astronaut

    det = detectors.create("hog", {"upsample": 1})
    faces = det.detect(astronaut())
    # the face is around x 160-270, y 60-190 of the 512x512 portrait
    assert any(150 < f.box[0] + f.box[2] / 2 < 280 and 60 < f.box[1] + f.box[3] / 2 < 190
               for f in faces)  # fmt: skip
    assert det.detect(np.zeros((100, 100, 3), np.uint8)) == []
