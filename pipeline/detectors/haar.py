"""OpenCV's pre-trained Viola-Jones Haar cascades (the XML files opencv-python 4.x ships).

Scores: ``detectMultiScale3(..., outputRejectLevels=True)`` returns, per grouped box, the
sum of the weak classifiers' votes in the cascade's last stage (``levelWeights``). It is
larger for windows that passed the last stage with more margin, so detections can be
ranked and average precision is meaningful (plain ``detectMultiScale`` gives no score).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from pipeline.detectors.base import Detector
from pipeline.record import Face
from pipeline.registry import BackendOptions


def cascades_dir() -> Path:
    """The folder holding OpenCV's shipped cascade XML files."""
    import cv2

    data = getattr(cv2, "data", None)
    if data is None or not Path(data.haarcascades).is_dir():
        raise RuntimeError(
            "this OpenCV build ships no Haar cascades (opencv-python 5.0 has none); "
            "install opencv-python-headless<5"
        )
    return Path(data.haarcascades)


def available_cascades() -> list[str]:
    """Cascade names usable as the ``cascade`` option (file name without the prefix)."""
    return sorted(
        p.name.removeprefix("haarcascade_").removesuffix(".xml")
        for p in cascades_dir().glob("haarcascade_*.xml")
    )


class HaarOptions(BackendOptions):
    cascade: str = Field(
        "frontalface_default",
        description="cascade name: frontalface_default, frontalface_alt, frontalface_alt2, "
        "frontalface_alt_tree, profileface (any haarcascade_NAME.xml OpenCV ships)",
    )
    scale_factor: float = Field(
        1.1, gt=1.0, le=2.0, description="image pyramid step (smaller: slower, more recall)"
    )
    min_neighbors: int = Field(
        3, ge=0, le=50, description="overlapping raw windows needed to keep a box"
    )
    equalize: bool = Field(False, description="histogram-equalize the grey image first")

    @field_validator("cascade")
    @classmethod
    def _known_cascade(cls, value: str) -> str:
        names = available_cascades()
        if value not in names:
            raise ValueError(f"unknown cascade {value!r}; available: {', '.join(names)}")
        return value


class HaarDetector(Detector):
    """``haar``: OpenCV ``CascadeClassifier`` on the grey image."""

    name = "haar"
    Options = HaarOptions

    def __init__(self, options: HaarOptions | None = None) -> None:
        super().__init__(options)
        import cv2

        path = cascades_dir() / f"haarcascade_{self.options.cascade}.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV could not load the cascade {path}")
        self._cv2 = cv2

    def _detect(self, image: np.ndarray, min_size: int) -> list[Face]:
        cv2 = self._cv2
        gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        if self.options.equalize:
            gray = cv2.equalizeHist(gray)
        boxes, _levels, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=self.options.scale_factor,
            minNeighbors=self.options.min_neighbors,
            minSize=(min_size, min_size),
            outputRejectLevels=True,
        )
        return [
            Face(box=tuple(int(v) for v in b), score=float(s))
            for b, s in zip(np.reshape(boxes, (-1, 4)), np.reshape(weights, (-1,)), strict=True)
        ]
