"""Decode UTKFace once into cached numpy arrays under ``runs/`` (never in the repository).

Two caches, each an ``.npz`` (read with ``allow_pickle=False``) keyed by image size or
feature kind, holding ``names``, ``ages``, ``genders``, ``races``, ``is_val`` and the data:

* ``images``: every image resized (area interpolation) to ``size`` x ``size`` RGB uint8,
  the whole 200x200 chip (which is what a HOG box grown by the UTKFace margin covers);
* ``features``: per image, features of a frozen network. For dlib (``utkface_dlib128pm``,
  :class:`MirroredDlibFeatures`) 256 columns: the 128-d encoding computed like the pipeline
  computes it (5-point landmarks in the detector-like box of
  :func:`~pipeline.agegender.framing.face_crop_box`), then the encoding of the mirrored
  face chip. Built in resumable chunks because it costs ~0.15-0.3 s per image on this
  machine: ``nice -n 10 python -m training.agegender.data`` (the "dev" files first, in
  their own file, then validation, then training chunks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.agegender.framing import face_crop_box
from pipeline.agegender.images import read_rgb, resize
from pipeline.agegender.split import Sample, list_samples, split_of
from pipeline.datasets import REPO_ROOT, require

log = logging.getLogger(__name__)

CACHE_DIR = REPO_ROOT / "runs" / "agegender" / "cache"


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


class MirroredDlibFeatures:
    """Plain and mirrored 128-d dlib encodings of UTKFace-like face images (256 columns).

    Columns 0-127 are exactly what :class:`~pipeline.recognition.encoder.DlibEncoder`
    computes (the 150x150 aligned chip dlib builds from the 5-point landmarks);
    columns 128-255 are the encoding of the horizontally mirrored chip, the same face
    seen in a mirror: a label-preserving augmentation for the transfer heads, and with
    the first half the input of flip-averaged encodings. The mirror costs little
    (the two chips go through the network as one batch).
    """

    dim = 256

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as frm

        from pipeline.recognition.encoder import onnx_network

        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        # dlib's network in onnxruntime: the same encodings (recognition.engine onnx)
        self._net = onnx_network()

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        import dlib

        out = np.empty((len(images), self.dim), dtype=np.float32)
        chips = []
        for im in images:
            im = np.ascontiguousarray(im)
            x, y, w, h = face_crop_box(*im.shape[:2]).box
            rect = dlib.rectangle(int(x), int(y), int(x + w), int(y + h))
            shape = self._shape(im, rect)
            chips.append(dlib.get_face_chip(im, shape, size=150, padding=0.25))
        if chips:
            batch = np.stack(chips)
            out[:, :128] = self._net(batch)
            out[:, 128:] = self._net(np.ascontiguousarray(batch[:, :, ::-1]))
        return out


def cache_first(extract: MirroredDlibFeatures) -> dict[str, np.ndarray]:
    """The "dev" training files (what the ensemble's stacker is fitted on) first, in their
    own file, so the stacker can be fitted before the whole cache is built."""
    from pipeline.agegender.split import sides_of

    path = CACHE_DIR / "dev_dlib128pm.npz"
    if not path.exists():
        folder = require("utkface")
        names = [s.name for s in list_samples(folder)]
        dev = [n for n, side in zip(names, sides_of(np.array(names)), strict=True) if side == "dev"]
        feats = extract([read_rgb(folder / n) for n in dev])
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        np.savez(path.with_suffix(".tmp.npz"), names=np.array(dev), features=feats)
        path.with_suffix(".tmp.npz").replace(path)
        log.info("dev features: %d images", len(dev))
    z = load_npz(path)
    return {str(n): f for n, f in zip(z["names"], z["features"], strict=True)}


def build_mirrored_cache(partial: bool = False) -> dict[str, np.ndarray]:
    """``utkface_dlib128pm`` (plain + mirrored encodings of every file), resumable."""
    extract = MirroredDlibFeatures()
    first = cache_first(extract) if not partial else None
    return feature_cache(
        "dlib128pm",
        extract,
        partial=partial,
        progress=lambda d, n: log.info("dlib128pm: %d/%d images", d, n),
        reuse=first,
    )


def mirrored_features(names: list[str]) -> np.ndarray:
    """Cached (plain + mirrored) rows of ``names`` from what is built so far (the dev file
    and the finished chunks); KeyError names a file not computed yet."""
    index: dict[str, np.ndarray] = {}
    dev = CACHE_DIR / "dev_dlib128pm.npz"
    if dev.exists():
        z = load_npz(dev)
        index.update(zip((str(n) for n in z["names"]), z["features"], strict=True))
    try:
        d = feature_cache("dlib128pm", MirroredDlibFeatures, partial=True)  # type: ignore[arg-type]
        index.update(zip((str(n) for n in d["names"]), d["features"], strict=True))
    except FileNotFoundError:
        pass
    missing = [n for n in names if n not in index]
    if missing:
        raise KeyError(f"{len(missing)} files not in the dlib feature cache yet, e.g. {missing[0]}")
    return np.stack([index[n] for n in names]) if names else np.zeros((0, 256), np.float32)


def mirrored_cache(partial: bool = False) -> dict[str, np.ndarray]:
    """Labels + ``features`` (N, 256: plain | mirrored encodings) of every UTKFace file,
    or with ``partial=True`` of the files computed so far (dev file + finished chunks)."""
    if not partial:
        return build_mirrored_cache()
    d = feature_cache("dlib128pm", MirroredDlibFeatures, partial=True)  # type: ignore[arg-type]
    dev = CACHE_DIR / "dev_dlib128pm.npz"
    if dev.exists():
        z = load_npz(dev)
        have = set(d["names"].tolist())
        extra = [i for i, n in enumerate(z["names"]) if str(n) not in have]
        if extra:
            folder = require("utkface")
            by_name = {s.name: s for s in list_samples(folder)}
            lab = _labels([by_name[str(z["names"][i])] for i in extra])
            feats = np.concatenate([d["features"], z["features"][extra]])
            d = {**{k: np.concatenate([d[k], lab[k]]) for k in lab}, "features": feats}
    return d


if __name__ == "__main__":  # python -m training.agegender.data (builds the mirrored cache)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    build_mirrored_cache()
