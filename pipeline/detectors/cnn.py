"""`cnn`: the face detector trained from scratch here (two-stage Keras cascade).

A fully convolutional 32x32 proposal net scans an image pyramid; a 48x48 refine net
re-scores and re-boxes each candidate; NMS merges the rest. Weights ship in
``pipeline/models/cnn_detector`` (retrain with ``facepipe train cnn``); architecture,
data and measurements are in docs/cnn-detector.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from pipeline.detectors.base import Detector
from pipeline.record import Face
from pipeline.registry import BackendOptions


class CnnOptions(BackendOptions):
    score_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="refine-net probability a face must reach"
    )
    nms_iou: float = Field(0.4, gt=0.0, le=1.0, description="IoU above which boxes are merged")
    min_face: float = Field(
        32.0,
        ge=8.0,
        description="smallest face searched, pixels (24 finds more small faces, ~2x slower)",
    )
    max_face: float = Field(0.0, ge=0.0, description="largest face searched, pixels (0 = any)")
    scale_factor: float = Field(0.75, gt=0.3, lt=0.95, description="pyramid step between scales")
    proposal_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="proposal-net probability that makes a candidate"
    )
    max_candidates: int = Field(300, ge=1, description="candidates passed to the refine net")
    refine: bool = Field(True, description="run the refine net (off: proposals only, faster)")
    model_dir: str | None = Field(None, description="weights folder (default: the shipped ones)")


class CnnDetector(Detector):
    name = "cnn"
    Options = CnnOptions

    def __init__(self, options: CnnOptions | None = None) -> None:
        super().__init__(options)
        from pipeline.cnn_detector.inference import Cascade, CascadeSettings
        from pipeline.cnn_detector.model import PROPOSAL, REFINE

        o = self.options
        model_dir = Path(o.model_dir) if o.model_dir else None
        self._cascade = Cascade.load(model_dir, (PROPOSAL, REFINE) if o.refine else (PROPOSAL,))
        self._settings = CascadeSettings(
            min_face=o.min_face,
            max_face=o.max_face,
            scale_factor=o.scale_factor,
            proposal_threshold=o.proposal_threshold,
            max_candidates=o.max_candidates,
            score_threshold=o.score_threshold,
            nms_iou=o.nms_iou,
            refine=o.refine,
        )

    def _detect(self, image: np.ndarray, min_size: int) -> list[Face]:
        from dataclasses import replace

        settings = self._settings
        if min_size > 0:
            # search from a little below min_size: the box regression can grow a window
            settings = replace(settings, min_face=max(settings.min_face, 0.8 * min_size))
        boxes, scores = self._cascade.detect(image, settings)
        return [
            Face.from_xyxy(tuple(float(v) for v in b), score=float(s))
            for b, s in zip(boxes, scores, strict=True)
        ]
