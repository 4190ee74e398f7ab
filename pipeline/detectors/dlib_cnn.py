"""dlib's CNN face detector (MMOD), with the model face_recognition_models ships.

Much more robust to pose than HOG, but slow on a CPU: about 2 s per 640x360 frame on the
project's 2-core machine (see docs/detectors.md), so it suits offline use, not live video.
The MMOD model is public domain; it was trained on images of faces >= ~80 px after its
own upsampling, so without ``upsample`` it misses faces smaller than ~40 px.
"""

from __future__ import annotations

import numpy as np

from pipeline.detectors.base import Detector, dlib_faces, upsample_option
from pipeline.record import Face
from pipeline.registry import BackendOptions


class DlibCnnOptions(BackendOptions):
    upsample: int = upsample_option(2, "~4x")


class DlibCnnDetector(Detector):
    """``dlib-cnn``: ``dlib.cnn_face_detection_model_v1`` (max-margin object detection)."""

    name = "dlib-cnn"
    Options = DlibCnnOptions

    def __init__(self, options: DlibCnnOptions | None = None) -> None:
        super().__init__(options)
        import dlib
        import face_recognition_models

        self._net = dlib.cnn_face_detection_model_v1(
            face_recognition_models.cnn_face_detector_model_location()
        )

    def _detect(self, image: np.ndarray, min_size: int) -> list[Face]:
        found = self._net(np.ascontiguousarray(image), self.options.upsample)
        return dlib_faces([d.rect for d in found], [d.confidence for d in found])
