"""Shot-cut detection on synthetic frames."""

import numpy as np
import pytest

from pipeline.shots import CutDetector


def scene(hue_bgr, rng, shift=0):
    """A textured frame of one dominant colour, optionally shifted (camera motion)."""
    base = np.zeros((180, 320, 3), np.uint8) + np.array(hue_bgr, np.uint8)
    noise = rng.integers(0, 40, (180, 360, 3)).astype(np.uint8)
    return np.clip(base.astype(int) + noise[:, shift : shift + 320], 0, 255).astype(np.uint8)


def test_motion_within_a_shot_is_not_a_cut_a_new_shot_is():
    rng = np.random.default_rng(0)
    det = CutDetector(0.4)
    stage = [scene((40, 90, 160), rng, shift=s) for s in range(0, 30, 3)]  # a warm scene
    street = [scene((160, 120, 40), rng, shift=s) for s in range(0, 30, 3)]  # a blue one
    flags = [det.update(f) for f in stage + street]
    assert flags == [False] * 10 + [True] + [False] * 9


def test_threshold_is_validated():
    with pytest.raises(ValueError):
        CutDetector(0.0)
    with pytest.raises(ValueError):
        CutDetector(1.5)
