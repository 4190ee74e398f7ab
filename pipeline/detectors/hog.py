"""dlib's HOG + linear SVM face detector, through face_recognition (the default)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from pipeline.detectors.base import Detector, filter_min_size
from pipeline.record import Face
from pipeline.registry import BackendOptions


class HogOptions(BackendOptions):
    upsample: int = Field(
        0,
        ge=0,
        le=3,
        description="times to upsample the image (finds smaller faces, 4x slower each)",
    )


class HogDetector(Detector):
    name = "hog"
    Options = HogOptions

    def __init__(self, options: HogOptions | None = None) -> None:
        super().__init__(options)
        import dlib

        self._detector = dlib.get_frontal_face_detector()

    def detect(self, image: np.ndarray, min_size: int = 0) -> list[Face]:
        rects, scores, _ = self._detector.run(
            np.ascontiguousarray(image), self.options.upsample, -0.0
        )
        faces = []
        h, w = image.shape[:2]
        for r, s in zip(rects, scores, strict=True):
            face = Face(box=(r.left(), r.top(), r.width(), r.height()), score=float(s))
            faces.append(face.clipped(w, h))
        return filter_min_size([f for f in faces if f.box[2] > 0 and f.box[3] > 0], min_size)
