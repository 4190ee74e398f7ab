"""The detector interface: an RGB image in, faces out."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from pipeline.record import Face
from pipeline.registry import Backend


class Detector(Backend):
    """A face detector backend.

    ``detect`` takes an RGB ``uint8`` array of shape ``(H, W, 3)`` and returns one
    :class:`~pipeline.record.Face` per face: ``box`` ``(x, y, w, h)`` in pixels of the
    given image, ``score`` (higher = more confident, comparable within one detector) and
    ``landmarks`` when the model gives them. ``min_size`` (pixels, face height) lets the
    caller skip faces smaller than that; backends may use it to search fewer scales.
    """

    @abstractmethod
    def detect(self, image: np.ndarray, min_size: int = 0) -> list[Face]:
        raise NotImplementedError

    def warmup(self) -> None:
        """Load weights and run once, so the first real frame is not slow."""
        self.detect(np.zeros((64, 64, 3), dtype=np.uint8))


def filter_min_size(faces: list[Face], min_size: int) -> list[Face]:
    if min_size <= 0:
        return faces
    return [f for f in faces if f.box[3] >= min_size]
