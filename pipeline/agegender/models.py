"""What the age/gender models facepipe trains output, and how it is read at run time.

Age is predicted as a distribution over ``AGE_BINS`` (0..100 years, one bin per year) and
read out as its expected value (:func:`age_from_probs`); gender is p(female). The Keras
definitions of the nets and their losses are training code
(:mod:`training.agegender.models`).
"""

from __future__ import annotations

import numpy as np

AGE_BINS = 101  # 0..100 years
INPUT_SIZE = 64  # side of the from-scratch CNN's RGB input


def age_from_probs(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected age and standard deviation (years) of ``(N, AGE_BINS)`` probabilities."""
    ages = np.arange(probs.shape[-1], dtype=np.float64)
    mean = probs @ ages
    var = probs @ (ages**2) - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))
