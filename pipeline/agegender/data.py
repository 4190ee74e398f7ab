"""Decode UTKFace once into cached numpy arrays under ``runs/`` (never in the repository).

Two caches, each an ``.npz`` (read with ``allow_pickle=False``) keyed by image size or
feature kind, holding ``names``, ``ages``, ``genders``, ``races``, ``is_val`` and the data:

* ``images``: every image resized (area interpolation) to ``size`` x ``size`` RGB uint8,
  the whole 200x200 chip (which is what a HOG box grown by the UTKFace margin covers);
* ``features``: one 128-d dlib encoding per image, computed like the pipeline computes them
  (5-point landmarks in the detector-like box of :func:`~pipeline.agegender.framing.face_crop_box`).
  Built in resumable chunks because it costs ~0.1 s per image.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.agegender.framing import face_crop_box
from pipeline.agegender.split import Sample, list_samples, split_of
from pipeline.datasets import REPO_ROOT, require

log = logging.getLogger(__name__)

CACHE_DIR = REPO_ROOT / "runs" / "agegender" / "cache"


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


def _labels(samples: list[Sample]) -> dict[str, np.ndarray]:
    return {
        "names": np.array([s.name for s in samples]),
        "ages": np.array([s.age for s in samples], dtype=np.int16),
        "genders": np.array([s.gender for s in samples], dtype=np.int8),
        "races": np.array([s.race for s in samples], dtype=np.int8),
        "is_val": np.array([split_of(s.name) == "val" for s in samples], dtype=bool),
    }


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def image_cache(
    size: int = 80, folder: Path | None = None, cache_dir: Path = CACHE_DIR
) -> dict[str, np.ndarray]:
    """All UTKFace images at ``size`` x ``size`` plus labels (built on first use)."""
    path = cache_dir / f"utkface_{size}.npz"
    if path.exists():
        return load_npz(path)
    folder = folder or require("utkface")
    samples = list_samples(folder)
    images = np.empty((len(samples), size, size, 3), dtype=np.uint8)
    t0 = time.time()
    for i, s in enumerate(samples):
        images[i] = resize(read_rgb(folder / s.name), size)
        if i % 2000 == 0:
            log.info("decoded %d/%d (%.0f s)", i, len(samples), time.time() - t0)
    data = {**_labels(samples), "images": images}
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    return data


def feature_cache(
    kind: str,
    extract: Callable[[list[np.ndarray]], np.ndarray],
    folder: Path | None = None,
    cache_dir: Path = CACHE_DIR,
    chunk: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Features of every UTKFace image (``extract``: list of full RGB images -> rows).

    Chunks are saved as they finish, so an interrupted run resumes where it stopped.
    """
    path = cache_dir / f"utkface_{kind}.npz"
    if path.exists():
        return load_npz(path)
    folder = folder or require("utkface")
    samples = list_samples(folder)
    part_dir = cache_dir / f"utkface_{kind}.parts"
    part_dir.mkdir(parents=True, exist_ok=True)
    parts = []
    for start in range(0, len(samples), chunk):
        part = part_dir / f"{start:06d}.npy"
        if not part.exists():
            batch = [read_rgb(folder / s.name) for s in samples[start : start + chunk]]
            rows = np.asarray(extract(batch), dtype=np.float32)
            np.save(part.with_suffix(".tmp.npy"), rows)
            part.with_suffix(".tmp.npy").replace(part)
        parts.append(np.load(part, allow_pickle=False))
        if progress:
            progress(min(start + chunk, len(samples)), len(samples))
    data = {**_labels(samples), "features": np.concatenate(parts)}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **data)
    tmp.replace(path)
    return data


def dlib_features(images: list[np.ndarray], encoder: object | None = None) -> np.ndarray:
    """128-d dlib encodings of already-cropped UTKFace-like face images."""
    from pipeline.recognition.encoder import DlibEncoder

    enc = encoder if encoder is not None else DlibEncoder()
    out = np.empty((len(images), 128), dtype=np.float32)
    for i, im in enumerate(images):
        h, w = im.shape[:2]
        out[i] = enc.encode(im, [face_crop_box(h, w)])[0]  # type: ignore[attr-defined]
    return out
