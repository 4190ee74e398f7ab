"""Evaluation of facepipe against labelled data: each evaluation runs the product's code
and keeps its metrics here, tested on hand-made cases; ``scripts/eval_*.py`` are their
command lines.

- :mod:`~pipeline.evaluation.detection`: detection AP (pure numpy);
  :mod:`~pipeline.evaluation.detectors`: the detector backends on WIDER FACE;
- :mod:`~pipeline.evaluation.verification`: face verification on LFW pairs;
- :mod:`~pipeline.evaluation.attributes`: age/gender on UTKFace;
- :mod:`~pipeline.evaluation.tracking`: the track stage on YouTube Faces clips and the
  Hamilton clip; :mod:`~pipeline.evaluation.tracking_pipeline`: ``facepipe run`` on them;
- :mod:`~pipeline.evaluation.common`: an even subset of a dataset, a timestamped log.

Models, detectors and datasets are imported inside the functions that need them, so
importing a module here is cheap.
"""

from pipeline.evaluation.detection import (
    DetectionResult,
    average_precision,
    evaluate_detections,
    iou_matrix,
    match_image,
)

__all__ = [
    "DetectionResult",
    "average_precision",
    "evaluate_detections",
    "iou_matrix",
    "match_image",
]
