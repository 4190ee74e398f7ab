"""dlib's CNN face detector (MMOD), with the model face_recognition_models ships.

Much more robust to pose than HOG, but slow on a CPU: about 2 s per 640x360 frame on the
project's 2-core machine (see docs/detectors.md), so it suits offline use, not live video.
The MMOD model is public domain; it was trained on images of faces >= ~80 px after its
own upsampling, so without ``upsample`` it misses faces smaller than ~40 px.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from pipeline.detectors.base import Detector, filter_min_size
from pipeline.record import Face
from pipeline.registry import BackendOptions


class DlibCnnOptions(BackendOptions):
    upsample: int = Field(
        0,
        ge=0,
        le=2,
        description="times to upsample the image (finds smaller faces, ~4x slower each)",
    )


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

    def detect(self, image: np.ndarray, min_size: int = 0) -> list[Face]:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        found = self._net(np.ascontiguousarray(image), self.options.upsample)
        h, w = image.shape[:2]
        faces = []
        for d in found:
            r = d.rect
            face = Face(box=(r.left(), r.top(), r.width(), r.height()), score=d.confidence)
            faces.append(face.clipped(w, h))
        return filter_min_size([f for f in faces if f.box[2] > 0 and f.box[3] > 0], min_size)
