"""Shared fixtures: scikit-image's LFW subset as grey uint8 crops."""

import numpy as np
import pytest


@pytest.fixture(scope="session")
def lfw_subset() -> tuple[np.ndarray, np.ndarray]:
    """(faces, non_faces): 100 + 100 grey 25 x 25 uint8 crops that scikit-image ships."""
    from skimage import data

    from pipeline.vj.data import to_gray

    imgs = np.stack([to_gray(i) for i in data.lfw_subset()])
    return imgs[:100], imgs[100:]
