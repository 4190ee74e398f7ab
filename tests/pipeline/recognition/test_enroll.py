"""Enrolment photos: an encoding and the face quality the open-set rule's gate reads.

No dataset needed: the demo enrolment photo (scikit-image's astronaut).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.recognition.encoder import DlibEncoder
from pipeline.recognition.enroll import encode_photos, enrol_photos


@pytest.fixture(scope="module")
def encoder() -> DlibEncoder:
    return DlibEncoder(num_jitters=1)


def test_each_photo_gets_its_encoding_and_quality(demo_media, tmp_path, encoder):
    photo = demo_media["photo"]
    # the same face, shrunk and blurred: a poorer enrolment photo
    small = tmp_path / "small.png"
    im = Image.open(photo).convert("RGB")
    im.resize((im.width // 6, im.height // 6)).resize(im.size).save(small)
    (vec, q), (vec_small, q_small) = enrol_photos([str(photo), str(small)], encoder)
    assert vec.shape == (128,) and 0.0 < q <= 1.0
    assert q_small < q  # blurred: the sharpness factor falls
    # encode_photos is the same encodings without the quality
    (same,) = encode_photos([str(photo)], encoder)
    assert np.allclose(same, vec)
    assert np.linalg.norm(vec_small - vec) > 0
