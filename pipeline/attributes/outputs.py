"""The arrays facepipe's own age/gender models output, as :class:`AgeGender` results.

:mod:`pipeline.agegender` runs the models and applies calibrations on plain arrays (it
does not import this package); the backends turn the arrays into results here.
"""

from __future__ import annotations

import numpy as np

from pipeline.agegender.models import age_from_probs
from pipeline.agegender.stacker import Stacker, calibrate
from pipeline.attributes.base import AgeGender


def to_attributes(probs: np.ndarray, p_female: np.ndarray) -> list[AgeGender]:
    """Results of age probabilities ``(N, AGE_BINS)`` and p(female) ``(N,)``."""
    ages, _ = age_from_probs(probs)
    return [
        AgeGender.from_p_female(float(a), float(p)) for a, p in zip(ages, p_female, strict=True)
    ]


def calibrated(stacker: Stacker | None, results: list[AgeGender]) -> list[AgeGender]:
    """Results of one model through its calibration (unchanged when it has none)."""
    if stacker is None or not results:
        return results
    ages, pf = calibrate(
        stacker, np.array([r.age for r in results]), np.array([r.p_female for r in results])
    )
    return [AgeGender.from_p_female(float(a), float(p)) for a, p in zip(ages, pf, strict=True)]
