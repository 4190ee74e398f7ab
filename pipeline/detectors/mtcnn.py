"""MTCNN (Zhang et al. 2016) through the ``mtcnn`` package on TensorFlow; weights shipped.

Three cascaded CNNs (P-Net proposals over an image pyramid, R-Net refinement, O-Net
output with 5 landmarks). The package's ``min_face_size`` is deliberately not exposed:
with values >= ~32 it returns nothing (or crashes on small frames), so faces smaller than
``min_size`` are filtered after detection instead.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from pipeline.detectors.base import Detector
from pipeline.record import Face
from pipeline.registry import BackendOptions

# the package's keypoint names, in the order facepipe stores landmarks
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


class MtcnnOptions(BackendOptions):
    threshold_pnet: float = Field(0.6, gt=0, lt=1, description="P-Net proposal threshold")
    threshold_rnet: float = Field(0.7, gt=0, lt=1, description="R-Net threshold")
    threshold_onet: float = Field(0.8, gt=0, lt=1, description="O-Net (final) threshold")
    scale_factor: float = Field(0.709, gt=0.3, lt=0.95, description="image pyramid step")


class MtcnnDetector(Detector):
    """``mtcnn``: boxes, confidences and 5 landmarks (eyes, nose, mouth corners)."""

    name = "mtcnn"
    Options = MtcnnOptions

    def __init__(self, options: MtcnnOptions | None = None) -> None:
        super().__init__(options)
        from mtcnn import MTCNN

        self._mtcnn = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")

    def _detect(self, image: np.ndarray, min_size: int) -> list[Face]:
        if min(image.shape[:2]) < 12:  # smaller than P-Net's window: nothing to find
            return []
        o = self.options
        found = self._mtcnn.detect_faces(
            np.ascontiguousarray(image),
            threshold_pnet=o.threshold_pnet,
            threshold_rnet=o.threshold_rnet,
            threshold_onet=o.threshold_onet,
            scale_factor=o.scale_factor,
        )
        faces = []
        for d in found:
            kp = d.get("keypoints") or {}
            landmarks = [(float(kp[k][0]), float(kp[k][1])) for k in LANDMARKS if k in kp]
            face = Face(
                box=tuple(int(v) for v in d["box"]),
                score=float(d["confidence"]),
                landmarks=landmarks or None,
            )
            faces.append(face)
        return faces
