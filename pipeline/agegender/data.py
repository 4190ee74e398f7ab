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


def chunk_of(sample: Sample, val_chunks: int = 7, train_chunks: int = 31) -> str:
    """Cache chunk of a sample: validation chunks first, each a hash-random subset."""
    import hashlib

    h = int.from_bytes(hashlib.sha1(f"chunk:{sample.name}".encode()).digest()[:4], "big")
    if split_of(sample.name) == "val":
        return f"0val{h % val_chunks:02d}"
    return f"1train{h % train_chunks:02d}"


def feature_cache(
    kind: str,
    extract: Callable[[list[np.ndarray]], np.ndarray],
    folder: Path | None = None,
    cache_dir: Path = CACHE_DIR,
    progress: Callable[[int, int], None] | None = None,
    partial: bool = False,
    reuse: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Features of UTKFace images (``extract``: list of full RGB images -> rows).

    Work is split in ~500-image chunks (validation first; each chunk a random subset),
    saved as they finish, so an interrupted run resumes where it stopped. With
    ``partial=True`` nothing is computed: the finished chunks are returned (a random
    subset of the training files), for training while the cache is still being built.
    ``reuse`` maps file names to rows already computed elsewhere.
    """
    path = cache_dir / f"utkface_{kind}.npz"
    if path.exists():
        return load_npz(path)
    folder = folder or require("utkface")
    samples = list_samples(folder)
    chunks: dict[str, list[Sample]] = {}
    for s in samples:
        chunks.setdefault(chunk_of(s), []).append(s)
    part_dir = cache_dir / f"utkface_{kind}.chunks"
    part_dir.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    rows: list[np.ndarray] = []
    done = 0
    for key in sorted(chunks):
        part = part_dir / f"{key}.npy"
        members = chunks[key]
        if not part.exists():
            if partial:
                continue
            todo = [i for i, s in enumerate(members) if not (reuse and s.name in reuse)]
            fresh = np.asarray(
                extract([read_rgb(folder / members[i].name) for i in todo]), dtype=np.float32
            )
            dim = fresh.shape[1] if len(todo) else len(next(iter(reuse.values())))  # type: ignore[union-attr]
            out = np.empty((len(members), dim), dtype=np.float32)
            for j, i in enumerate(todo):
                out[i] = fresh[j]
            for i, s in enumerate(members):
                if reuse and s.name in reuse:
                    out[i] = reuse[s.name]
            tmp = part.with_suffix(".tmp.npy")
            np.save(tmp, out)
            tmp.replace(part)
        rows.append(np.load(part, allow_pickle=False))
        names.extend(s.name for s in members)
        done += len(members)
        if progress:
            progress(done, len(samples))
    if not rows:
        raise FileNotFoundError(f"no finished feature chunks in {part_dir}")
    by_name = {s.name: s for s in samples}
    data = {**_labels([by_name[n] for n in names]), "features": np.concatenate(rows)}
    if not partial or done == len(samples):
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
