"""dlib's HOG + linear SVM face detector (``dlib.get_frontal_face_detector``)."""

from __future__ import annotations

import numpy as np

from pipeline.detectors.base import Detector, dlib_faces, upsample_option
from pipeline.record import Face
from pipeline.registry import BackendOptions


class HogOptions(BackendOptions):
    upsample: int = upsample_option(3, "4x")


class HogDetector(Detector):
    name = "hog"
    Options = HogOptions

    def __init__(self, options: HogOptions | None = None) -> None:
        super().__init__(options)
        import dlib

        self._detector = dlib.get_frontal_face_detector()

    def _detect(self, image: np.ndarray, min_size: int) -> list[Face]:
        rects, scores, _ = self._detector.run(
            np.ascontiguousarray(image), self.options.upsample, -0.0
        )
        return dlib_faces(rects, scores)
