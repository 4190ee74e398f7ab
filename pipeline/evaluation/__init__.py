"""Evaluation of facepipe's models against labelled data (detection AP, ...).

Pure numpy: nothing here imports a detector, so the metrics can be tested on hand-made
cases and reused by any script.
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
