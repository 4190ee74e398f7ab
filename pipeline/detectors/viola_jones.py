"""``viola-jones``: the from-scratch Viola-Jones cascade (numpy; no OpenCV cascade code).

The trained cascade ships as JSON in ``pipeline/models/viola_jones/cascade.json`` and is
loaded once per detector. Detection slides the 24 x 24 window over an image pyramid (see
:mod:`pipeline.vj.scan`); ``cv2`` is only used to convert and resize images. How it was
trained and how well it does: docs/viola-jones.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from pipeline.detectors.base import Detector
from pipeline.record import Face
from pipeline.registry import BackendOptions
from pipeline.vj.cascade import Cascade
from pipeline.vj.scan import detect, to_gray

SHIPPED_CASCADE = Path(__file__).resolve().parent.parent / "models" / "viola_jones" / "cascade.json"


class ViolaJonesOptions(BackendOptions):
    scale_factor: float = Field(
        1.2, gt=1.0, le=2.0, description="image pyramid step (smaller: slower, more recall)"
    )
    step: int = Field(2, ge=1, le=8, description="window stride in pixels of each pyramid level")
    min_neighbors: int = Field(
        2, ge=0, le=50, description="overlapping raw windows needed (beyond one) to keep a box"
    )
    cascade: str | None = Field(
        None, description="path of a cascade JSON (default: the shipped cascade)"
    )
    stages: int | None = Field(
        None, ge=1, description="use only the first N stages (default: all; fewer = more recall)"
    )


class ViolaJonesDetector(Detector):
    """Multi-scale sliding-window detection with the from-scratch cascade."""

    name = "viola-jones"
    Options = ViolaJonesOptions

    def __init__(self, options: ViolaJonesOptions | None = None) -> None:
        super().__init__(options)
        path = Path(self.options.cascade) if self.options.cascade else SHIPPED_CASCADE
        if not path.is_file():
            raise FileNotFoundError(
                f"Viola-Jones cascade {path} not found (train one: facepipe train viola-jones)"
            )
        self.cascade = Cascade.load(path)
        if not self.cascade.stages:
            raise ValueError(f"cascade {path} has no stages")
        if self.options.stages is not None:
            if self.options.stages > len(self.cascade.stages):
                raise ValueError(
                    f"stages={self.options.stages} but cascade {path} has "
                    f"{len(self.cascade.stages)} stages"
                )
            self.cascade.stages = self.cascade.stages[: self.options.stages]
        self._scale = float(self.cascade.box.get("scale", 1.0))

    def _detect(self, image: np.ndarray, min_size: int) -> list[Face]:
        gray = to_gray(image)
        opts = self.options
        boxes, scores = detect(
            gray,
            self.cascade,
            scale_factor=opts.scale_factor,
            step=opts.step,
            min_neighbors=opts.min_neighbors,
            # faces of min_size px are reported from windows of min_size / scale px
            min_size=max(min_size / self._scale, 0.0),
        )
        return [Face(box=tuple(b), score=float(s)) for b, s in zip(boxes, scores, strict=True)]
