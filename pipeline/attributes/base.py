"""The age/gender interface: face crops in, age in years + gender with a probability out."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from pydantic import Field

from pipeline.agegender.models import age_from_probs
from pipeline.agegender.stacker import Stacker, calibrate
from pipeline.record import Face
from pipeline.registry import Backend, BackendOptions


@dataclass
class AgeGender:
    age: float  # years
    gender: str  # "male" | "female"
    gender_confidence: float  # probability of `gender`, 0.5..1
    # the model's distribution over one-year age bins, when it has one (facepipe's own
    # models, uncalibrated); the ensemble pools these
    age_probs: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_p_female(
        cls, age: float, p_female: float, age_probs: np.ndarray | None = None
    ) -> AgeGender:
        p = float(p_female)
        if p >= 0.5:
            return cls(float(age), "female", p, age_probs)
        return cls(float(age), "male", 1.0 - p, age_probs)

    @property
    def p_female(self) -> float:
        return self.gender_confidence if self.gender == "female" else 1.0 - self.gender_confidence


def crop_face(image: np.ndarray, face: Face, margin: float) -> np.ndarray:
    """Square crop around ``face.box`` grown by ``margin`` x size on each side.

    Parts outside the image are filled by edge replication, so the face stays centred.
    """
    x, y, w, h = face.box
    side = max(w, h) * (1.0 + 2.0 * margin)
    cx, cy = x + w / 2.0, y + h / 2.0
    x1, y1 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x2, y2 = x1 + int(round(side)), y1 + int(round(side))
    ih, iw = image.shape[:2]
    pad = max(0, -x1, -y1, x2 - iw, y2 - ih)
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        x1, y1, x2, y2 = x1 + pad, y1 + pad, x2 + pad, y2 + pad
    return image[y1:y2, x1:x2]


class CalibratedOptions(BackendOptions):
    """Options of a backend whose model file may have a calibration beside it."""

    calibrate: bool = Field(
        True,
        description="apply the calibration beside the model file (MODEL.calibration.json, "
        "fitted on held-out training files) when there is one",
    )


class AttributeEstimator(Backend):
    """An age/gender backend.

    Subclasses implement :meth:`predict` on RGB ``uint8`` face crops (any size; the
    backend resizes). ``crop_margin`` says how much context around a detector box the
    backend was trained with (UTKFace-like crops have about 0.25-0.4).
    """

    crop_margin: ClassVar[float] = 0.3

    @abstractmethod
    def predict(self, crops: list[np.ndarray]) -> list[AgeGender]:
        raise NotImplementedError

    def estimate(self, image: np.ndarray, faces: list[Face]) -> list[AgeGender]:
        """Age/gender of each face in a full RGB frame (crops with ``crop_margin``)."""
        if not faces:
            return []
        return self.predict([crop_face(image, f, self.crop_margin) for f in faces])

    def warmup(self) -> None:
        self.predict([np.zeros((64, 64, 3), dtype=np.uint8)])


# The arrays facepipe's own age/gender models output (pipeline.agegender runs the models
# and applies calibrations on plain arrays; it does not import this package), as results.
def to_attributes(probs: np.ndarray, p_female: np.ndarray) -> list[AgeGender]:
    """Results of age probabilities ``(N, AGE_BINS)`` and p(female) ``(N,)``."""
    ages, _ = age_from_probs(probs)
    return [
        AgeGender.from_p_female(float(a), float(p), q)
        for a, p, q in zip(ages, p_female, probs, strict=True)
    ]


def calibrated(stacker: Stacker | None, results: list[AgeGender]) -> list[AgeGender]:
    """Results of one model through its calibration (unchanged when it has none)."""
    if stacker is None or not results:
        return results
    ages, pf = calibrate(
        stacker, np.array([r.age for r in results]), np.array([r.p_female for r in results])
    )
    return [AgeGender.from_p_female(float(a), float(p)) for a, p in zip(ages, pf, strict=True)]
