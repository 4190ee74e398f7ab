"""Training data for the Viola-Jones cascade: face crops and face-free images.

Positives: UTKFace (200 x 200, aligned, colour) and LFW (250 x 250, aligned, grey)
images. Each face's window is the box dlib's HOG detector finds in it (so the training
window is what a sliding window sees around a detector-style box, not a fixed crop that
would differ between the two datasets); images where HOG finds no single face are
skipped. A crop is cut with a small random rotation (+-8 deg), scale (+-7 %) and shift
(+-5 % of the side), at full resolution with edge replication, then shrunk to the window
size with area averaging, exactly as the detector's image pyramid shrinks a frame. Every
face gives two crops: one as is, one mirrored (each with its own jitter).

Negatives are cut from images, never stored as crops: scikit-image's face-free sample
photos (each also mirrored, rotated and upsampled), generated textures, and the LFW and
(1,000 of the) UTKFace images themselves with every face dlib finds (and the aligned face
position) masked out. WIDER FACE is *not* used: it is the evaluation set.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.vj.scan import to_gray

# scikit-image sample images without faces (astronaut and camera show people)
SKIMAGE_NEGATIVES: tuple[str, ...] = (
    "binary_blobs", "brick", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee",
    "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
    "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
    "shepp_logan_phantom", "text",
)  # fmt: skip
UTK_NAME = re.compile(r"^(\d+)_([01])_([0-4])_(\d+)\.jpg\.chip\.jpg$")


def crop_window(
    gray: np.ndarray,
    box: tuple[float, float, float, float],
    size: int,
    angle: float = 0.0,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
    flip: bool = False,
) -> np.ndarray:
    """Cut the square around ``box`` (x, y, w, h), jittered, and shrink it to ``size``.

    ``scale`` > 1 takes a larger square; ``shift`` moves the centre by that fraction of
    the side; ``angle`` rotates (degrees). Pixels outside the image repeat the edge.
    """
    x, y, w, h = (float(v) for v in box)
    side = float(np.sqrt(w * h)) * scale
    if side < 2:
        raise ValueError(f"box {box} is too small to crop")
    cx = x + w / 2 + shift[0] * side
    cy = y + h / 2 + shift[1] * side
    n = max(size, int(round(side)))
    # map the (rotated) square of side `side` around (cx, cy) onto an n x n image
    m = cv2.getRotationMatrix2D((cx, cy), angle, n / side)
    m[0, 2] += n / 2 - cx
    m[1, 2] += n / 2 - cy
    sq = cv2.warpAffine(gray, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if flip:
        sq = sq[:, ::-1]
    if n != size:
        sq = cv2.resize(sq, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(sq)


def augmented_crops(
    gray: np.ndarray, box: tuple[float, float, float, float], size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Two jittered crops of one face: one as is, one mirrored."""
    out = []
    for flip in (False, True):
        out.append(
            crop_window(
                gray,
                box,
                size,
                angle=float(rng.uniform(-8, 8)),
                scale=float(np.exp(rng.uniform(-0.07, 0.07))),
                shift=(float(rng.uniform(-0.05, 0.05)), float(rng.uniform(-0.05, 0.05))),
                flip=flip,
            )
        )
    return out


def utkface_files(root: Path) -> list[Path]:
    """UTKFace images with well-formed names, sorted."""
    return sorted(p for p in root.glob("*.jpg") if UTK_NAME.match(p.name))


def lfw_files(root: Path) -> list[Path]:
    """LFW images (``images/PERSON/*.jpg``), sorted."""
    return sorted((root / "images").glob("*/*.jpg"))


def hog_boxes(
    files: list[Path],
    upsample: int,
    cache: Path | None = None,
    progress: Callable[[Iterable[Path]], Iterable[Path]] = lambda it: it,
) -> dict[str, list[list[int]]]:
    """dlib HOG face boxes ``[x, y, w, h]`` per file, cached as JSON between runs."""
    import dlib

    known: dict[str, list[list[int]]] = {}
    if cache is not None and cache.exists():
        known = json.loads(cache.read_text())
    todo = [f for f in files if str(f) not in known]
    if todo:
        det = dlib.get_frontal_face_detector()
        for f in progress(todo):
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if img is None:
                known[str(f)] = []
                continue
            known[str(f)] = [[r.left(), r.top(), r.width(), r.height()] for r in det(img, upsample)]
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(known))
    return {str(f): known[str(f)] for f in files}


@dataclass
class NegativeImage:
    """A grey image to cut non-face windows from, and face boxes windows must avoid."""

    name: str
    image: np.ndarray
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))


def allowed_windows(windows: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """True for windows (x, y, w, h) that neither overlap a face (IoU > 0.15) nor contain
    most (> 50 %) of one: they are safe non-face examples."""
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    faces = np.asarray(faces, dtype=np.float64).reshape(-1, 4)
    if len(faces) == 0 or len(windows) == 0:
        return np.ones(len(windows), dtype=bool)
    ix = np.clip(
        np.minimum(windows[:, None, 0] + windows[:, None, 2], faces[None, :, 0] + faces[None, :, 2])
        - np.maximum(windows[:, None, 0], faces[None, :, 0]),
        0,
        None,
    )
    iy = np.clip(
        np.minimum(windows[:, None, 1] + windows[:, None, 3], faces[None, :, 1] + faces[None, :, 3])
        - np.maximum(windows[:, None, 1], faces[None, :, 1]),
        0,
        None,
    )
    inter = ix * iy
    wa = (windows[:, 2] * windows[:, 3])[:, None]
    fa = (faces[:, 2] * faces[:, 3])[None, :]
    bad = (inter / (wa + fa - inter) > 0.15) | (inter / fa > 0.5)
    return ~bad.any(axis=1)


def skimage_negatives() -> list[NegativeImage]:
    """scikit-image's face-free photos, each as is, mirrored, rotated and upsampled 2x."""
    from skimage import data

    out = []
    for name in SKIMAGE_NEGATIVES:
        g = to_gray(getattr(data, name)())
        variants = {
            "": g,
            "-flip": g[:, ::-1],
            "-rot90": np.rot90(g),
            "-x2": cv2.resize(g, (g.shape[1] * 2, g.shape[0] * 2), interpolation=cv2.INTER_LINEAR),
            "-flip-x2": cv2.resize(
                g[:, ::-1], (g.shape[1] * 2, g.shape[0] * 2), interpolation=cv2.INTER_LINEAR
            ),
        }
        out += [
            NegativeImage(f"skimage:{name}{k}", np.ascontiguousarray(v))
            for k, v in variants.items()
        ]
    return out


def texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A random synthetic texture: smoothed noise, gratings, blobs or rectangles."""
    kind = int(rng.integers(4))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == 0:  # multi-scale smoothed noise
        img = np.zeros((size, size))
        for s in (2, 4, 8, 16, 32):
            n = rng.normal(size=(size // s + 2, size // s + 2))
            img += cv2.resize(n, (size, size), interpolation=cv2.INTER_CUBIC) * rng.uniform(0, 1)
    elif kind == 1:  # sum of gratings
        img = np.zeros((size, size))
        for _ in range(int(rng.integers(1, 4))):
            th, f = rng.uniform(0, np.pi), rng.uniform(0.02, 0.3)
            img += np.sin(f * (xx * np.cos(th) + yy * np.sin(th)) + rng.uniform(0, 6.3))
    elif kind == 2:  # dark and bright blobs
        img = np.zeros((size, size))
        for _ in range(int(rng.integers(5, 40))):
            cx, cy, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(3, 40)
            img += rng.choice([-1, 1]) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    else:  # overlapping rectangles
        img = np.full((size, size), rng.uniform(0, 1))
        for _ in range(int(rng.integers(5, 30))):
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(4, size // 2, 2)
            img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 1)
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 2))
    img = img - img.min()
    img = img / max(img.max(), 1e-9) * rng.uniform(60, 255) + rng.uniform(0, 60)
    img += rng.normal(0, rng.uniform(0, 6), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def texture_negatives(n: int, seed: int = 0) -> list[NegativeImage]:
    rng = np.random.default_rng(seed)
    return [NegativeImage(f"texture:{i}", texture(rng)) for i in range(n)]


@dataclass
class TrainingSet:
    """Face crops for training and held out, the negative image pool, and provenance."""

    faces: np.ndarray
    holdout: np.ndarray
    pool: list[NegativeImage]
    info: dict


def _central_box(boxes: list[list[int]], shape: tuple[int, int], tol: float) -> list[int] | None:
    """The single box whose centre is within ``tol`` (fraction of the side) of the middle."""
    h, w = shape
    near = [
        b
        for b in boxes
        if abs(b[0] + b[2] / 2 - w / 2) < tol * w and abs(b[1] + b[3] / 2 - h / 2) < tol * h
    ]
    return near[0] if len(near) == 1 else None


def build_training_set(
    root: Path,
    cache: Path,
    window: int = 24,
    n_utk: int = 3500,
    n_lfw: int = 1500,
    n_textures: int = 200,
    n_utk_background: int = 1000,
    holdout_fraction: float = 0.1,
    seed: int = 0,
    log: Callable[[str], None] = print,
    progress: Callable[[Iterable[Path]], Iterable[Path]] = lambda it: it,
) -> TrainingSet:
    """Face crops from UTKFace and LFW plus the negative pool (see the module docstring).

    ``root`` is the datasets folder; ``cache`` a scratch folder (dlib boxes are cached
    there, never in the repository).
    """
    rng = np.random.default_rng(seed)
    utk_all = utkface_files(root / "utkface")
    lfw_all = lfw_files(root / "lfw-pairs-subset")
    if not utk_all or not lfw_all:
        raise FileNotFoundError(f"UTKFace or LFW images not found under {root}")
    utk = [utk_all[i] for i in np.sort(rng.choice(len(utk_all), min(n_utk, len(utk_all)), False))]
    log(f"dlib HOG boxes: {len(utk)} UTKFace images (cached in {cache})")
    utk_boxes = hog_boxes(utk, 0, cache / "hog_utkface.json", progress)
    log(f"dlib HOG boxes: {len(lfw_all)} LFW images, upsampled once")
    lfw_boxes = hog_boxes(lfw_all, 1, cache / "hog_lfw.json", progress)

    lfw_pos = set(np.sort(rng.choice(len(lfw_all), min(n_lfw, len(lfw_all)), False)).tolist())
    crops: list[list[np.ndarray]] = []  # per source image: its two crops
    pool: list[NegativeImage] = []
    counts = {"utkface": 0, "lfw": 0}
    for source, files, boxes, tol in (
        ("utkface", utk, utk_boxes, 0.2),
        ("lfw", lfw_all, lfw_boxes, 0.12),
    ):
        for i, f in enumerate(files):
            gray = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            if gray is None:
                continue
            found = boxes[str(f)]
            face = _central_box(found, gray.shape, tol)
            mask = [list(b) for b in found]
            # the aligned face is always in the middle, even when HOG missed it
            h, w = gray.shape
            mask.append([w * 0.2, h * 0.2, w * 0.6, h * 0.6])
            if source == "lfw" or i < n_utk_background:
                pool.append(
                    NegativeImage(f"{source}:{f.name}", gray, np.array(mask, dtype=np.float64))
                )
            if face is None or (source == "lfw" and i not in lfw_pos):
                continue
            crops.append(augmented_crops(gray, tuple(face), window, rng))
            counts[source] += 1
    order = rng.permutation(len(crops))
    n_hold = int(round(holdout_fraction * len(crops)))
    hold = np.array([c for i in order[:n_hold] for c in crops[i]], dtype=np.uint8)
    train = np.array([c for i in order[n_hold:] for c in crops[i]], dtype=np.uint8)
    sk = skimage_negatives()
    tex = texture_negatives(n_textures, seed)
    pool += sk + tex
    info = {
        "faces_utkface": counts["utkface"],
        "faces_lfw": counts["lfw"],
        "train_crops": int(len(train)),
        "holdout_crops": int(len(hold)),
        "negative_images": {
            "utkface": min(len(utk), n_utk_background),
            "lfw": len(lfw_all),
            "skimage": len(sk),
            "textures": len(tex),
        },
    }
    log(f"training set: {info}")
    return TrainingSet(train, hold, pool, info)
