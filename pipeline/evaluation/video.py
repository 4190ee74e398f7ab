"""Video helpers of the evaluations: a file's frames as the capture reads them, its shot cuts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, BGR as the capture reads them."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def shot_cuts(frames_bgr: Sequence[np.ndarray], threshold: float | None) -> list[int]:
    """Frames the capture marks as a shot's first (``FrameRecord.cut``): the product's
    :class:`pipeline.shots.CutDetector` fed every frame; ``threshold`` None: never."""
    from pipeline.shots import CutDetector

    if threshold is None:
        return []
    det = CutDetector(threshold)
    return [i for i, bgr in enumerate(frames_bgr) if det.update(bgr)]
