"""A demo video built from a real face that a pip package ships (scikit-image).

``skimage.data.astronaut()`` is a public-domain NASA portrait of astronaut Eileen Collins.
The demo enrolls that photo and runs the pipeline on a short clip in which a crop of the
portrait drifts and zooms across a textured background.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEMO_NAME = "eileen-collins"


def astronaut_rgb() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def write_enrollment_photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # a head-and-shoulders crop: the full portrait has a second face-like patch on the suit
    crop = astronaut_rgb()[0:260, 110:330]
    cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return path


def make_demo_video(
    path: Path, frames: int = 60, size: tuple[int, int] = (640, 360), fps: float = 15.0
) -> Path:
    """Write an MP4 (MPEG-4 part 2) of ``frames`` frames with one moving face."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    portrait = cv2.cvtColor(astronaut_rgb(), cv2.COLOR_RGB2BGR)[0:300, 100:340]  # head+shoulders
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([(xx * 255 // w), (yy * 255 // h), np.full_like(xx, 90)], axis=-1).astype(
        np.uint8
    )
    background = cv2.add(background, rng.integers(0, 25, background.shape, dtype=np.uint8))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write video {path} (OpenCV has no mp4v encoder?)")
    try:
        for i in range(frames):
            t = i / max(frames - 1, 1)
            scale = 0.85 + 0.25 * np.sin(np.pi * t)
            ph, pw = int(portrait.shape[0] * scale), int(portrait.shape[1] * scale)
            face = cv2.resize(portrait, (pw, ph), interpolation=cv2.INTER_AREA)
            x = int(20 + t * (w - pw - 40))
            y = int((h - ph) / 2 + 10 * np.sin(2 * np.pi * t))
            frame = background.copy()
            frame[max(y, 0) : y + ph, x : x + pw] = face[max(-y, 0) : min(ph, h - y), : w - x]
            writer.write(frame)
    finally:
        writer.release()
    return path
