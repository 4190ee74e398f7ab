"""128-d face encodings with dlib's ResNet model (through face_recognition).

Landmarks use the 5-point model (public domain), not the 68-point one (iBUG 300-W,
non-commercial). Distances are Euclidean; dlib's published operating point is 0.6.
"""

from __future__ import annotations

import numpy as np

from pipeline.record import Face


class DlibEncoder:
    """Loads the dlib models once; ``encode`` returns one 128-d row per face."""

    dim = 128

    def __init__(self, num_jitters: int = 1, min_face_px: int = 80) -> None:
        import dlib
        import face_recognition_models as frm

        self.num_jitters = num_jitters
        self.min_face_px = min_face_px
        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def encode(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """RGB uint8 image and boxes in it -> ``(len(faces), 128)`` float array."""
        return self.encode_with_landmarks(image, faces)[0]

    def encode_with_landmarks(
        self, image: np.ndarray, faces: list[Face]
    ) -> tuple[np.ndarray, list[list[tuple[float, float]]]]:
        """Encodings and the 5 landmarks used for each (in ``image`` coordinates)."""
        import dlib

        if not faces:
            return np.zeros((0, self.dim), dtype=np.float64), []
        image = np.ascontiguousarray(image)
        out = np.empty((len(faces), self.dim), dtype=np.float64)
        marks = []
        for i, face in enumerate(faces):
            img, (x, y, w, h), (ox, oy, scale) = self._upscaled(image, face)
            shape = self._shape(img, dlib.rectangle(x, y, x + w, y + h))
            out[i] = np.asarray(self._net.compute_face_descriptor(img, shape, self.num_jitters))
            marks.append([(ox + p.x / scale, oy + p.y / scale) for p in shape.parts()])
        return out, marks

    def _upscaled(
        self, image: np.ndarray, face: Face
    ) -> tuple[np.ndarray, tuple[int, ...], tuple[int, int, float]]:
        """Small faces: crop with context and upscale (bicubic) to ``min_face_px`` tall."""
        x, y, w, h = face.box
        if h >= self.min_face_px or h <= 0:
            return image, (x, y, w, h), (0, 0, 1.0)
        import cv2

        scale = self.min_face_px / h
        m = int(round(0.5 * max(w, h)))
        ih, iw = image.shape[:2]
        x1, y1 = max(0, x - m), max(0, y - m)
        x2, y2 = min(iw, x + w + m), min(ih, y + h + m)
        crop = cv2.resize(
            image[y1:y2, x1:x2], None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC
        )
        box = tuple(int(round(v * scale)) for v in (x - x1, y - y1, w, h))
        return np.ascontiguousarray(crop), box, (x1, y1, scale)
