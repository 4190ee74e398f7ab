"""dlib encodings of UTKFace under video-like degradations, for the transfer heads.

Per file three 128-d encodings (384 columns), each made like the recognize stage makes
one (5-point landmarks in the detector-like box of :func:`face_crop_box`, dlib's 150 px
aligned chip, so training and inference use the same alignment):

* columns 0-127: the plain image (what the pipeline gets from a sharp frame);
* 128-255: the mirrored face chip (a label-preserving view);
* 256-383: the image after one random *video-like* degradation (:func:`degrade`):
  the face shrunk to 20-72 px and scaled back (low resolution), blur (Gaussian or
  motion), JPEG at quality 12-60, sensor noise, light (gamma, brightness, contrast, a
  colour cast, sometimes greyscale) and a small in-plane rotation; landmarks are
  found again on the degraded image, as they would be on a video frame.

The degradation of a file is seeded by its name, so the cache is reproducible. Built in
resumable chunks (dev files first, then training, then validation), which several
processes can share (each claims a chunk with a lock file; a killed worker leaves a stale
``.lock`` to delete). Training files come in tiers of their rank inside their race x gender
x age-band group (:data:`TIER_EDGES`), so a cache stopped early is a balanced subset::

    nice -n 10 python -m training.agegender.video_features --worker 0 --workers 2 &
    nice -n 10 python -m training.agegender.video_features --worker 1 --workers 2 &

The validation files' degraded encodings are used only to *report* how the heads hold
up on degraded faces; nothing is trained or chosen on them.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from pipeline.agegender.framing import face_crop_box
from pipeline.agegender.images import read_rgb
from pipeline.agegender.split import Sample, list_samples, sides_of
from pipeline.datasets import require
from training.agegender.data import CACHE_DIR, _labels, load_npz

log = logging.getLogger(__name__)

KIND = "dlib128v"
DIM = 384


def _rng(name: str) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha1(f"video:{name}".encode()).digest()[:8], "big")
    return np.random.default_rng(seed)


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random video-like degradation of an RGB uint8 face crop (same size out)."""
    import cv2

    h, w = image.shape[:2]
    x = image.astype(np.float32)
    # light: gamma, contrast, brightness, colour cast (white balance), sometimes grey
    x = 255.0 * (x / 255.0) ** rng.uniform(0.6, 1.6)
    x = (x - 128.0) * rng.uniform(0.6, 1.2) + 128.0 + rng.uniform(-35, 35)
    x = x * rng.uniform(0.85, 1.15, size=3)[None, None, :]
    if rng.random() < 0.15:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    x = np.clip(x, 0, 255).astype(np.uint8)
    # small in-plane rotation (head roll) about the centre, borders reflected
    if rng.random() < 0.5:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-15, 15), 1.0)
        x = cv2.warpAffine(x, m, (w, h), borderMode=cv2.BORDER_REFLECT_101)
    # low resolution: the face (0.89 of the side) shown at 20-72 px, then scaled back
    if rng.random() < 0.7:
        face_px = rng.uniform(20, 72)
        side = max(8, int(round(w * face_px / (0.89 * w))))
        small = cv2.resize(x, (side, side), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    # blur: out of focus or motion
    r = rng.random()
    if r < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.8, 2.5))
    elif r < 0.5:
        k = int(rng.integers(5, 13))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        m = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, m, (k, k))
        kernel /= max(kernel.sum(), 1e-6)
        x = cv2.filter2D(x, -1, kernel)
    # sensor noise
    if rng.random() < 0.4:
        x = np.clip(x + rng.normal(0, rng.uniform(2, 8), x.shape), 0, 255).astype(np.uint8)
    # JPEG / video codec blocks
    if rng.random() < 0.8:
        q = int(rng.integers(12, 61))
        ok, buf = cv2.imencode(".jpg", x[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            x = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(x, dtype=np.uint8)


class VideoDlibFeatures:
    """Plain, mirrored-chip and degraded-image dlib encodings (384 columns)."""

    dim = DIM

    def __init__(self, mirror: bool = True) -> None:
        import dlib
        import face_recognition_models as frm

        from pipeline.recognition.encoder import CHIP_PADDING, CHIP_SIZE

        self.mirror = mirror

        self._size, self._pad = CHIP_SIZE, CHIP_PADDING
        from pipeline.recognition.encoder import onnx_network

        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        # dlib's network in onnxruntime: the recognize stage's encodings, ~15x faster here
        self._net = onnx_network()

    def _chip(self, im: np.ndarray) -> np.ndarray:
        import dlib

        x, y, w, h = face_crop_box(*im.shape[:2]).box
        shape = self._shape(im, dlib.rectangle(int(x), int(y), int(x + w), int(y + h)))
        return dlib.get_face_chip(im, shape, size=self._size, padding=self._pad)

    def row(self, name: str, im: np.ndarray) -> np.ndarray:
        im = np.ascontiguousarray(im)
        chip = self._chip(im)
        bad = self._chip(degrade(im, _rng(name)))
        if not self.mirror:  # the mirrored view left NaN: a third less work
            plain, worse = self._net(np.stack([chip, bad]))
            nan = np.full(128, np.nan, dtype=np.float32)
            return np.concatenate([plain, nan, worse]).astype(np.float32)
        views = self._net(np.stack([chip, np.ascontiguousarray(chip[:, ::-1]), bad]))
        return views.reshape(-1).astype(np.float32)


TIER_EDGES = (0, 60, 120, 240, 480)
"""Training files are encoded in tiers of their rank inside their race x gender x age-band
group: tier 0 holds up to 60 files of every group, tier 1 the next 60, tier 2 the next
120, ... (the last tier the rest). So whatever is finished when the encoding stops is a
balanced subset: rare groups complete, common ones capped."""
TIER_CHUNK = 550  # about this many images per training chunk


def chunk_key(
    name: str,
    side: str,
    dev_chunks: int = 2,
    val_chunks: int = 7,
    tier: int = 0,
    tier_chunks: int = 28,
) -> str:
    """Chunk of a file: dev first, then training by tier (``2t{tier}c{k}``), then validation."""
    h = int.from_bytes(hashlib.sha1(f"chunk:{name}".encode()).digest()[:4], "big")
    if side == "dev":
        return f"0dev{h % dev_chunks:02d}"
    if side == "val":
        return f"1val{h % val_chunks:02d}"
    return f"2t{tier}c{h % max(1, tier_chunks):02d}"


def training_tiers(samples: list[Sample]) -> list[int]:
    """Tier of each (training) sample: its rank in its group (ordered by a hash of the
    name, so the order is random but fixed), cut at :data:`TIER_EDGES`."""
    from pipeline.agegender.split import group_of

    order = sorted(
        range(len(samples)),
        key=lambda i: hashlib.sha1(f"tier:{samples[i].name}".encode()).hexdigest(),
    )
    seen: dict[str, int] = {}
    tiers = [0] * len(samples)
    for i in order:
        s = samples[i]
        g = group_of(s.age, s.gender, s.race)
        rank = seen.get(g, 0)
        seen[g] = rank + 1
        tiers[i] = sum(rank >= e for e in TIER_EDGES) - 1
    return tiers


def _chunks(folder: Path) -> dict[str, list[Sample]]:
    samples = list_samples(folder)
    sides = sides_of(np.array([s.name for s in samples]))
    train = [s for s, side in zip(samples, sides, strict=True) if side == "train"]
    tier_of = dict(zip((s.name for s in train), training_tiers(train), strict=True))
    sizes: dict[int, int] = {}
    for t in tier_of.values():
        sizes[t] = sizes.get(t, 0) + 1
    out: dict[str, list[Sample]] = {}
    for s, side in zip(samples, sides, strict=True):
        t = tier_of.get(s.name, 0)
        n = -(-sizes.get(t, 1) // TIER_CHUNK)
        out.setdefault(chunk_key(s.name, str(side), tier=t, tier_chunks=n), []).append(s)
    return dict(sorted(out.items()))


def part_dir(cache_dir: Path = CACHE_DIR) -> Path:
    return cache_dir / f"utkface_{KIND}.chunks"


def build(
    worker: int = 0, workers: int = 1, cache_dir: Path = CACHE_DIR, mirror: bool = True
) -> int:
    """Compute missing chunks (dev, then training, then validation); a chunk is claimed
    with a lock file, so several workers share the work. Returns how many it wrote."""
    folder = require("utkface")
    pdir = part_dir(cache_dir)
    pdir.mkdir(parents=True, exist_ok=True)
    extract = VideoDlibFeatures(mirror=mirror)
    wrote = 0
    chunks = _chunks(folder)
    order = sorted(chunks, key=lambda k: ({"0": 0, "2": 1, "1": 2}[k[0]], k))
    # every worker goes in the same order (balanced tiers first); the locks keep them apart
    for key in order:
        members = chunks[key]
        part = pdir / f"{key}.npy"
        lock = pdir / f"{key}.lock"
        if part.exists():
            continue
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
        except FileExistsError:
            continue
        t0 = time.time()
        rows = np.stack([extract.row(s.name, read_rgb(folder / s.name)) for s in members])
        tmp = part.with_suffix(".tmp.npy")
        np.save(tmp, rows.astype(np.float32))
        tmp.replace(part)
        lock.unlink(missing_ok=True)
        wrote += 1
        log.info("%s: %d images, %.0f s", key, len(members), time.time() - t0)
    return wrote


def load(cache_dir: Path = CACHE_DIR, partial: bool = True) -> dict[str, np.ndarray]:
    """Labels + ``features`` (N, 384) + ``sides`` of the chunks finished so far."""
    folder = require("utkface")
    pdir = part_dir(cache_dir)
    names: list[str] = []
    rows = []
    chunks = _chunks(folder)
    for key, members in chunks.items():
        part = pdir / f"{key}.npy"
        if not part.exists():
            if not partial:
                raise FileNotFoundError(f"chunk {part} not built yet")
            continue
        rows.append(load_npz_array(part))
        names.extend(s.name for s in members)
    if not rows:
        raise FileNotFoundError(f"no finished chunks in {pdir}")
    by_name = {s.name: s for ms in chunks.values() for s in ms}
    data = _labels([by_name[n] for n in names])
    data["features"] = np.concatenate(rows)
    data["sides"] = sides_of(np.array(names))
    return data


def load_npz_array(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def plain_features(names: list[str], cache_dir: Path = CACHE_DIR) -> np.ndarray:
    """The plain 128-d encodings (what the recognize stage computes) of ``names`` from the
    chunks built so far; KeyError names a file not computed yet."""
    d = load(cache_dir, partial=True)
    index = {str(n): i for i, n in enumerate(d["names"])}
    missing = [n for n in names if n not in index]
    if missing:
        raise KeyError(f"{len(missing)} files not in the {KIND} cache yet, e.g. {missing[0]}")
    return d["features"][[index[n] for n in names], :128]


__all__ = ["VideoDlibFeatures", "build", "degrade", "load", "load_npz"]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="build the video-like dlib feature cache")
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--no-mirror",
        action="store_true",
        help="leave the mirrored-chip columns NaN (a third less work)",
    )
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    n = build(a.worker, a.workers, mirror=not a.no_mirror)
    log.info("worker %d wrote %d chunks", a.worker, n)
