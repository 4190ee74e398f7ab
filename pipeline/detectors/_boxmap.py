"""Mapping a detector's face box (and 5 landmarks) onto the box dlib's HOG detector gives.

The recognition encoder runs dlib's 5-point shape predictor *inside the detector's box*,
and that predictor was trained on dlib HOG boxes: squares from the eyebrows to just
below the lower lip. Enrolment photos are found with HOG too. A detector whose boxes
are framed differently (YuNet's are taller than wide, from the forehead to the chin)
makes the predictor place the landmarks a little off, and the encodings of the same face
drift apart (docs/detectors.md, "Boxes for recognition").

:class:`BoxMap` is a linear least-squares map fitted on faces both detectors find.
Everything is expressed in units of the detector box's height ``h``, origin at its
centre ``(cx, cy)``, so the map does not depend on the face's size or position:

* features: the 5 landmarks ``((lx - cx) / h, (ly - cy) / h)`` (10 values), the box's
  aspect ratio ``w / h`` and a constant 1 (12 values);
* targets: the HOG box's centre ``((hx - cx) / h, (hy - cy) / h)`` and its width and
  height ``(hw / h, hh / h)``.

A ridge term (``l2``) keeps the fit stable; the predicted size is kept between
``SIZE_LIMITS`` of the detector box's height so that odd landmarks (a profile, a face
cut by the frame) cannot make an absurd box. Without landmarks only the box is used
(:func:`box_only_features`, a separate 4 x 2 fit is not needed: the landmark columns of
a face without landmarks are filled with the training mean).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

N_LANDMARKS = 5
N_FEATURES = 2 * N_LANDMARKS + 2
TARGETS = ("centre_x", "centre_y", "width", "height")
# predicted width/height, in units of the detector box's height, are clipped to this range
SIZE_LIMITS = (0.4, 2.0)

Box = Sequence[float]
Landmarks = Sequence[Sequence[float]]


def features(box: Box, landmarks: Landmarks) -> np.ndarray:
    """The 12 features of one face (see the module docstring)."""
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        raise ValueError(f"box without area: {tuple(box)}")
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if len(pts) != N_LANDMARKS:
        raise ValueError(f"expected {N_LANDMARKS} landmarks, got {len(pts)}")
    cx, cy = x + w / 2.0, y + h / 2.0
    rel = (pts - (cx, cy)) / h
    return np.concatenate([rel.ravel(), [w / h, 1.0]])


def targets(box: Box, dlib_box: Box) -> np.ndarray:
    """The 4 targets: ``dlib_box`` in units of ``box`` (centre offset, width, height)."""
    x, y, w, h = (float(v) for v in box)
    hx, hy, hw, hh = (float(v) for v in dlib_box)
    cx, cy = x + w / 2.0, y + h / 2.0
    return np.array([(hx + hw / 2.0 - cx) / h, (hy + hh / 2.0 - cy) / h, hw / h, hh / h])


def from_targets(box: Box, t: Sequence[float]) -> tuple[float, float, float, float]:
    """The box ``(x, y, w, h)`` that targets ``t`` describe relative to ``box``."""
    x, y, w, h = (float(v) for v in box)
    cx, cy = x + w / 2.0 + t[0] * h, y + h / 2.0 + t[1] * h
    lo, hi = SIZE_LIMITS
    nw = float(np.clip(t[2], lo, hi)) * h
    nh = float(np.clip(t[3], lo, hi)) * h
    return (cx - nw / 2.0, cy - nh / 2.0, nw, nh)


@dataclass(frozen=True)
class BoxMap:
    """``coef`` (12 x 4): targets = features @ coef. ``source``: what it was fitted on."""

    coef: np.ndarray
    mean_features: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.coef.shape != (N_FEATURES, len(TARGETS)):
            raise ValueError(f"coef must be {N_FEATURES} x {len(TARGETS)}, not {self.coef.shape}")
        if self.mean_features.shape != (N_FEATURES,):
            raise ValueError(f"mean_features must have {N_FEATURES} values")

    def apply(self, box: Box, landmarks: Landmarks | None) -> tuple[float, float, float, float]:
        """``box`` (with its face's 5 landmarks, or None) mapped to a dlib-HOG-like box."""
        x, y, w, h = (float(v) for v in box)
        if w <= 0 or h <= 0:
            return (x, y, w, h)
        if landmarks is None or len(landmarks) != N_LANDMARKS:
            f = self.mean_features.copy()
            f[-2] = w / h
        else:
            f = features(box, landmarks)
        return from_targets(box, f @ self.coef)

    @classmethod
    def fit(
        cls,
        boxes: Sequence[Box],
        landmarks: Sequence[Landmarks],
        dlib_boxes: Sequence[Box],
        l2: float = 1e-3,
        source: dict[str, Any] | None = None,
    ) -> BoxMap:
        """Ridge least squares on faces both detectors found (detector box, its landmarks,
        dlib's box of the same face). The constant column is not penalised."""
        if not len(boxes) == len(landmarks) == len(dlib_boxes):
            raise ValueError("boxes, landmarks and dlib_boxes differ in length")
        if len(boxes) < N_FEATURES:
            raise ValueError(f"need at least {N_FEATURES} faces to fit, got {len(boxes)}")
        x = np.stack([features(b, lm) for b, lm in zip(boxes, landmarks, strict=True)])
        y = np.stack([targets(b, d) for b, d in zip(boxes, dlib_boxes, strict=True)])
        penalty = np.full(N_FEATURES, l2 * len(x))
        penalty[-1] = 0.0
        coef = np.linalg.solve(x.T @ x + np.diag(penalty), x.T @ y)
        return cls(coef=coef, mean_features=x.mean(axis=0), source=dict(source or {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": [f"lm{i // 2}_{'xy'[i % 2]}" for i in range(2 * N_LANDMARKS)]
            + ["aspect", "const"],
            "targets": list(TARGETS),
            "coef": np.round(self.coef, 6).tolist(),
            "mean_features": np.round(self.mean_features, 6).tolist(),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BoxMap:
        return cls(
            coef=np.asarray(data["coef"], dtype=np.float64),
            mean_features=np.asarray(data["mean_features"], dtype=np.float64),
            source=dict(data.get("source", {})),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> BoxMap:
        return cls.from_dict(json.loads(Path(path).read_text()))


def ratio_map(boxes: Sequence[Box], dlib_boxes: Sequence[Box]) -> np.ndarray:
    """The simpler alternative the verification evaluation uses for its fallback
    detectors: the median targets (centre offset, width, height in box-height units)."""
    return np.median(np.stack([targets(b, d) for b, d in zip(boxes, dlib_boxes, strict=True)]), 0)
