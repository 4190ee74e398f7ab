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

    def __init__(self, num_jitters: int = 1) -> None:
        import dlib
        import face_recognition_models as frm

        self.num_jitters = num_jitters
        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def landmarks(self, image: np.ndarray, face: Face) -> list[tuple[float, float]]:
        import dlib

        x, y, w, h = face.box
        shape = self._shape(image, dlib.rectangle(x, y, x + w, y + h))
        return [(p.x, p.y) for p in shape.parts()]

    def encode(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """RGB uint8 image and boxes in it -> ``(len(faces), 128)`` float array."""
        import dlib

        if not faces:
            return np.zeros((0, self.dim), dtype=np.float64)
        image = np.ascontiguousarray(image)
        out = np.empty((len(faces), self.dim), dtype=np.float64)
        for i, face in enumerate(faces):
            x, y, w, h = face.box
            shape = self._shape(image, dlib.rectangle(x, y, x + w, y + h))
            out[i] = np.asarray(self._net.compute_face_descriptor(image, shape, self.num_jitters))
        return out


def distances(gallery: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Euclidean distances, ``(len(query), len(gallery))``."""
    if gallery.size == 0:
        return np.full((len(query), 0), np.inf)
    return np.linalg.norm(query[:, None, :] - gallery[None, :, :], axis=2)
