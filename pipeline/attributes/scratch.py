"""From-scratch age/gender: facepipe's own CNN trained on UTKFace (LiteRT, ~2-5 ms/face).

A 64x64 multi-task CNN (batch norm, augmentation; age as the expected value over one-year
bins, gender as p(female)), trained with ``facepipe train age-gender --model scratch``
and shipped as ``pipeline/models/age_gender/scratch.tflite`` with its model card
(``scratch.md`` / ``scratch.json``). Runs without TensorFlow (``ai_edge_litert``).

``crop_margin`` is measured, not guessed: dlib's HOG box covers ~0.89 of a UTKFace image
side, so a HOG box grown by 0.062 on each side frames a face like the training images
(see :mod:`pipeline.agegender.framing`).

``calibrate`` (default on): the outputs go through ``scratch.calibration.json``, a linear
age correction (and gender, when it helps) fitted on held-out *training* files, the
"dev" files no model here was trained on (:mod:`training.agegender.stacking`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from pipeline.agegender.framing import UTKFACE_MARGIN
from pipeline.agegender.runtime import MODELS_DIR, ScratchRuntime
from pipeline.agegender.stacker import load_calibration
from pipeline.attributes.base import (
    AgeGender,
    AttributeEstimator,
    CalibratedOptions,
    calibrated,
    to_attributes,
)


class ScratchOptions(CalibratedOptions):
    model: str | None = Field(
        None,
        description="path to a .tflite trained by `facepipe train age-gender` (default: shipped)",
    )
    flip: bool = Field(
        True, description="also run the mirrored crop and average (2x cost, a bit more accurate)"
    )


class ScratchEstimator(AttributeEstimator):
    name = "scratch"
    Options = ScratchOptions
    crop_margin = UTKFACE_MARGIN

    def __init__(self, options: ScratchOptions | None = None) -> None:
        super().__init__(options)
        path = Path(self.options.model) if self.options.model else MODELS_DIR / "scratch.tflite"
        self._run = ScratchRuntime(path, flip=self.options.flip)
        self.card = self._run.card
        self.calibration = load_calibration(path) if self.options.calibrate else None

    def predict(self, crops: list[np.ndarray]) -> list[AgeGender]:
        if not crops:
            return []
        return calibrated(self.calibration, to_attributes(*self._run(crops)))
