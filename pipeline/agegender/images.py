"""Reading and resizing face images for the age/gender models (OpenCV, imported lazily)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8, or ValueError when it cannot be decoded."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ValueError(f"cannot decode image: {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Square resize with area interpolation (downscaling) or linear (upscaling)."""
    import cv2

    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if min(h, w) >= size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)
