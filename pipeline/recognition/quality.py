"""Face quality for choosing and weighting identity samples: size, sharpness, frontal pose.

Each factor is in [0, 1]; the quality is their product. Samples of a track are weighted
by it when its encodings are fused, and the best one becomes the event's snapshot.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.record import Face

FULL_SIZE_PX = 80.0  # faces this tall or taller get the full size factor
SHARP_VAR = 150.0  # Laplacian variance (64x64 grey crop) that counts as fully sharp


def size_factor(face: Face) -> float:
    return float(min(1.0, max(face.box[3], 0) / FULL_SIZE_PX))


def sharpness_factor(image: np.ndarray, face: Face) -> float:
    x, y, w, h = face.clipped(image.shape[1], image.shape[0]).box
    if w < 4 or h < 4:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[y : y + h, x : x + w]), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA)
    return float(min(1.0, cv2.Laplacian(grey, cv2.CV_64F).var() / SHARP_VAR))


def frontal_factor(landmarks: list[tuple[float, float]] | None) -> float:
    """From dlib's 5 points (two corners of each eye, then the base of the nose):
    1 when the nose sits midway between the eyes, falling to 0 at a half-profile."""
    if not landmarks or len(landmarks) != 5:
        return 0.5
    pts = np.asarray(landmarks, dtype=float)
    return _frontal(pts[0:2].mean(axis=0), pts[2:4].mean(axis=0), pts[4])


def detector_frontal_factor(landmarks: list[tuple[float, float]] | None) -> float:
    """Frontal factor from a detector's keypoints (BlazeFace's 6, MTCNN's 5: the two eye
    centres, then the nose tip); 0.5 when there are none."""
    if not landmarks or len(landmarks) < 3:
        return 0.5
    pts = np.asarray(landmarks[:3], dtype=float)
    return _frontal(pts[0], pts[1], pts[2])


def _frontal(eye_a: np.ndarray, eye_b: np.ndarray, nose: np.ndarray) -> float:
    inter = np.linalg.norm(eye_a - eye_b)
    if inter < 1e-6:
        return 0.0
    offset = abs(nose[0] - (eye_a[0] + eye_b[0]) / 2.0) / inter
    return float(max(0.0, 1.0 - 2.0 * offset))


def detection_quality(face: Face) -> float:
    """What the track stage can tell without the image: size x frontal pose (from the
    detector's keypoints) x detector confidence. It picks which frames to sample."""
    score = min(max(face.score, 0.0), 1.0)
    return size_factor(face) * detector_frontal_factor(face.landmarks) * score


def face_quality(
    image: np.ndarray, face: Face, landmarks: list[tuple[float, float]] | None = None
) -> float:
    return size_factor(face) * sharpness_factor(image, face) * frontal_factor(landmarks)
