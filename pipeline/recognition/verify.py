"""Face verification: are two face images the same person? Pairs, encodings, thresholds.

facepipe's decision rule is the one the recognize stage uses against the gallery: two faces
are the **same person iff the Euclidean distance between their 128-d dlib encodings is
<= threshold**. This module holds

* the pairs-file reader (``FOLD<TAB>IMAGE_A<TAB>IMAGE_B<TAB>SAME``, the format of
  ``../shared/datasets/lfw-pairs-subset/pairs.tsv``; paths relative to a root folder);
* :class:`PairEncoder`, which turns one image file into an encoding the way the
  verification protocol needs it (grayscale -> 3-channel RGB, tinted with a mean face
  colour before encoding by default (:data:`DEFAULT_GRAY`), dlib HOG with upsample 1,
  a fixed central box when HOG finds nothing, flip-averaged encodings by default
  (:data:`DEFAULT_FLIP`), an on-disk cache in ``.npy`` + ``.json``);
* the evaluation maths: the accuracy-maximising threshold, k-fold threshold selection
  (choose on the other folds, score on the held-out one), the threshold for a target
  false-accept rate and the true-accept rate it gives, and ROC points;
* :data:`DEFAULT_THRESHOLD` and :func:`calibrated_threshold`, the accuracy-optimal
  points of :mod:`pipeline.recognition.thresholds` (the table of calibrated thresholds).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.images import DEFAULT_MAX_PIXELS, ImageError, read_image
from pipeline.recognition.thresholds import operating_points
from pipeline.record import Face

# Whether PairEncoder (and so `facepipe verify`) flip-averages encodings by default: the
# aligned face chip and its mirror are both encoded and averaged (DlibEncoder(flip=True),
# twice the cost of one encoding). On ../shared/datasets/lfw-pairs-subset this scored
# 98.67 % mean held-out accuracy against 98.39 % without (better or equal on every fold,
# 24 instead of 29 errors on 1,800 pairs: about one standard error, docs/recognition.md).
DEFAULT_FLIP = True

# What PairEncoder (and so `facepipe verify`) does with a grayscale image (R = G = B)
# before landmarks and encoding: "tint" colours it with the mean face colour of UTKFace
# (GRAY_TINT, fixed before measuring; the encoder was trained on colour faces);
# "replicate" leaves the gray value in R, G and B (the behaviour before 2026-11-30).
# Colour images are never changed. On ../shared/datasets/lfw-pairs-subset (gray LFW-a),
# with flip averaging: 99.00 % mean held-out accuracy (18 errors of 1,800; folds
# 98.83 / 99.00 / 99.17 %) against 98.67 % (24) replicated; without flip 98.39 % either way.
# No extra cost; the calibrated threshold is unchanged (all-pairs optimum 0.604 -> 0.60).
# docs/recognition.md, "Colour tint for gray images".
DEFAULT_GRAY = "tint"
GRAY_MODES = ("tint", "replicate")

# The mean RGB of the central 80x80 px of 400 random UTKFace face crops (seed 0),
# 174.4 / 127.8 / 108.0, divided by its BT.601 gray value: R, G, B gains for a gray image.
GRAY_TINT: tuple[float, float, float] = (1.25032371, 0.91630629, 0.77439841)


def is_gray(image: np.ndarray) -> bool:
    """True when an RGB image has R = G = B everywhere (a grayscale photo)."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return bool(np.array_equal(r, g) and np.array_equal(r, b))


def tint_gray(image: np.ndarray) -> np.ndarray:
    """A grayscale RGB image coloured with :data:`GRAY_TINT` (rounded, clipped to 0-255);
    a colour image is returned unchanged."""
    if not is_gray(image):
        return image
    tinted = np.rint(image.astype(np.float64) * np.asarray(GRAY_TINT))
    return np.ascontiguousarray(np.clip(tinted, 0, 255).astype(np.uint8))


# The default threshold of `facepipe verify`: the accuracy-optimal point calibrated for
# its default encoder (1 jitter, flip-averaged when DEFAULT_FLIP), from the one table of
# calibrated thresholds (pipeline/recognition/thresholds.py).
DEFAULT_THRESHOLD = operating_points(1, DEFAULT_FLIP).accuracy


def calibrated_threshold(num_jitters: int = 1, flip: bool = DEFAULT_FLIP) -> float:
    """The accuracy-optimal threshold calibrated for ``num_jitters`` (and ``flip``); see
    :func:`pipeline.recognition.thresholds.operating_points` for uncalibrated settings."""
    return operating_points(num_jitters, flip).accuracy


# Where the face is when HOG does not find it, as fractions (x, y, w, h) of the image width
# and height. Calibrated on the LFW-a images in which HOG (upsample 1) finds a face: the
# median of the box nearest the image centre (scripts/eval_verification.py prints it).
FALLBACK_BOX_FRACTIONS: tuple[float, float, float, float] = (0.268, 0.32, 0.436, 0.432)


class PairsFormatError(ValueError):
    """A pairs file line that does not follow ``FOLD<TAB>A<TAB>B<TAB>SAME``."""


@dataclass(frozen=True)
class Pair:
    """One line of a pairs file; ``same`` is None when the file carries no label."""

    a: str
    b: str
    same: bool | None = None
    fold: int | None = None


def parse_pairs(lines: Iterable[str], source: str = "<pairs>") -> list[Pair]:
    """Parse pairs lines. Blank lines and ``#`` comments are skipped.

    Accepted rows (tab-separated): ``FOLD A B SAME`` (the dataset format, SAME is 1 or 0),
    ``FOLD A B`` (unlabelled) and ``A B`` (unlabelled, no fold). Anything else raises
    :class:`PairsFormatError` naming the file and line.
    """
    pairs: list[Pair] = []
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split("\t")
        where = f"{source}:{lineno}"
        if len(cols) == 2:
            fold, a, b, label = None, cols[0], cols[1], None
        elif len(cols) in (3, 4):
            try:
                fold = int(cols[0])
            except ValueError:
                raise PairsFormatError(
                    f"{where}: FOLD must be an integer, got {cols[0]!r}"
                ) from None
            a, b = cols[1], cols[2]
            label = cols[3].strip() if len(cols) == 4 else None
        else:
            raise PairsFormatError(
                f"{where}: expected FOLD<TAB>IMAGE_A<TAB>IMAGE_B<TAB>SAME, got {len(cols)} "
                f"tab-separated column(s)"
            )
        a, b = a.strip(), b.strip()
        if not a or not b:
            raise PairsFormatError(f"{where}: empty image path")
        same: bool | None = None
        if label is not None:
            if label not in ("0", "1"):
                raise PairsFormatError(f"{where}: SAME must be 1 or 0, got {label!r}")
            same = label == "1"
        pairs.append(Pair(a=a, b=b, same=same, fold=fold))
    return pairs


def load_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    """Read a pairs file (see :func:`parse_pairs`); a missing file is a clear error."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pairs file not found: {p}")
    with p.open(encoding="utf-8") as fh:
        pairs = parse_pairs(fh, source=str(p))
    if not pairs:
        raise PairsFormatError(f"{p}: no pairs in file")
    return pairs


# ----- images and encodings -----------------------------------------------------------


def load_rgb(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An image file as RGB ``uint8`` ``(H, W, 3)`` (:func:`pipeline.images.read_image`),
    at least 8 x 8; grayscale is replicated to 3 channels.

    The dlib encoder was trained on colour faces and expects 3 channels; LFW-a is
    grayscale, so the gray value goes into R, G and B alike.
    """
    arr = read_image(path, max_pixels)
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise ImageError(f"image {path} has unusable shape {arr.shape}")
    return arr


def fallback_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The fixed central box ``(x, y, w, h)`` used when HOG finds no face."""
    fx, fy, fw, fh = FALLBACK_BOX_FRACTIONS
    return (
        int(round(fx * width)),
        int(round(fy * height)),
        max(1, int(round(fw * width))),
        max(1, int(round(fh * height))),
    )


def central_face(faces: Sequence[Face], width: int, height: int) -> Face | None:
    """The face whose centre is nearest the image centre (aligned crops centre the subject).

    LFW images often show other people at the edges; the labelled person is the one the
    crop is centred on.
    """
    if not faces:
        return None
    cx, cy = width / 2.0, height / 2.0

    def dist(f: Face) -> float:
        x, y, w, h = f.box
        return math.hypot(x + w / 2.0 - cx, y + h / 2.0 - cy)

    return min(faces, key=dist)


@dataclass(frozen=True)
class Encoded:
    """One image's encoding and how its face box was found."""

    encoding: np.ndarray
    box: tuple[int, int, int, int]
    fallback: bool  # True: HOG found no face, the fixed central box was used


class EncodingCache:
    """Encodings on disk, keyed by image path and face box: ``encodings.npy`` + ``index.json``.

    ``index.json`` maps ``"PATH|x,y,w,h"`` to a row of ``encodings.npy`` and keeps each
    image's size and HOG boxes (``detections``), so a re-run skips detection and a change
    of the fallback box re-encodes only the images that use it. Writes are atomic
    (temporary file + rename) so an interrupted run resumes. No pickle anywhere:
    ``np.load(..., allow_pickle=False)``. Settings that change encodings (jitters,
    landmark model, upsample) belong in the directory name; flip-averaged encodings are
    stored under their own keys (``variant="flip"``), so one directory can hold both.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._npy = self.dir / "encodings.npy"
        self._json = self.dir / "index.json"
        self.rows: dict[str, int] = {}
        self.detections: dict[str, dict[str, list]] = {}
        self._vectors: list[np.ndarray] = []
        self._dirty = 0
        if self._json.is_file() and self._npy.is_file():
            meta = json.loads(self._json.read_text())
            arr = np.load(self._npy, allow_pickle=False)
            self.rows = {k: int(v) for k, v in meta.get("rows", {}).items()}
            self.detections = meta.get("detections", {})
            self._vectors = list(arr)
            if any(r >= len(self._vectors) for r in self.rows.values()):
                raise ValueError(f"encoding cache {self.dir} is inconsistent: delete it")

    @staticmethod
    def key(path: str, box: tuple[int, int, int, int], variant: str = "") -> str:
        """``PATH|x,y,w,h``, plus ``|VARIANT`` for encodings made another way (``flip``)."""
        k = f"{path}|{','.join(str(v) for v in box)}"
        return f"{k}|{variant}" if variant else k

    def get_detection(self, path: str) -> tuple[tuple[int, int], list[tuple[int, ...]]] | None:
        """``((width, height), HOG boxes)`` stored for ``path``, or None."""
        entry = self.detections.get(path)
        if entry is None:
            return None
        w, h = entry["size"]
        return (int(w), int(h)), [tuple(int(v) for v in b) for b in entry["faces"]]

    def put_detection(self, path: str, size: tuple[int, int], boxes: list[tuple[int, ...]]) -> None:
        self.detections[path] = {"size": list(size), "faces": [list(b) for b in boxes]}
        self._dirty += 1

    def get(
        self, path: str, box: tuple[int, int, int, int], variant: str = ""
    ) -> np.ndarray | None:
        row = self.rows.get(self.key(path, box, variant))
        return None if row is None else self._vectors[row]

    def put(
        self,
        path: str,
        box: tuple[int, int, int, int],
        encoding: np.ndarray,
        variant: str = "",
    ) -> None:
        k = self.key(path, box, variant)
        vec = np.asarray(encoding, dtype=np.float64)
        if k in self.rows:
            self._vectors[self.rows[k]] = vec
        else:
            self.rows[k] = len(self._vectors)
            self._vectors.append(vec)
        self._dirty += 1

    def flush(self) -> None:
        """Write to disk if anything changed."""
        if not self._dirty:
            return
        arr = np.stack(self._vectors) if self._vectors else np.zeros((0, 128), dtype=np.float64)
        tmp_npy = self.dir / "encodings.tmp.npy"
        np.save(tmp_npy, arr, allow_pickle=False)
        tmp_json = self.dir / "index.tmp.json"
        tmp_json.write_text(json.dumps({"rows": self.rows, "detections": self.detections}))
        os.replace(tmp_npy, self._npy)
        os.replace(tmp_json, self._json)
        self._dirty = 0


class PairEncoder:
    """Image file -> 128-d encoding, with HOG detection and the central-box fallback.

    ``encode_file`` reads the image (gray -> RGB), runs dlib HOG with ``upsample``
    (default 1: finds more of the hard faces than 0 at ~20 ms on 250x250), keeps the face
    nearest the centre and, when HOG finds none, uses :func:`fallback_box`. ``fallbacks``
    holds the images that needed it. With ``cache`` the HOG result and the encoding are
    stored and reused. ``flip``: flip-averaged encodings (``DlibEncoder(flip=True)``, about
    twice the cost; see :data:`DEFAULT_FLIP`). ``encoder`` is anything with the
    :class:`DlibEncoder` ``encode`` signature and replaces the one ``num_jitters`` and
    ``flip`` would build (its ``flip`` attribute, if any, then names the cache entries).
    ``gray``: ``"tint"`` (default, :data:`DEFAULT_GRAY`) encodes a grayscale image as
    :func:`tint_gray` colours it, ``"replicate"`` as it is; HOG runs on the image as read
    either way.
    """

    def __init__(
        self,
        num_jitters: int = 1,
        upsample: int = 1,
        cache: EncodingCache | None = None,
        encoder: object | None = None,
        flip: bool = DEFAULT_FLIP,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        gray: str = DEFAULT_GRAY,
    ) -> None:
        import dlib

        from pipeline.recognition.encoder import DlibEncoder

        if encoder is None:
            encoder = DlibEncoder(num_jitters=num_jitters, flip=flip)
        self.encoder = encoder
        self.flip = bool(getattr(encoder, "flip", False))
        if gray not in GRAY_MODES:
            raise ValueError(f"gray must be one of {GRAY_MODES}, got {gray!r}")
        self.gray = gray
        self.upsample = upsample
        self.max_pixels = max_pixels  # larger images are refused (ImageError)
        self.cache = cache
        self._hog = dlib.get_frontal_face_detector()
        self.fallbacks: set[str] = set()
        self.encoded = 0  # encodings computed here (not read from the cache)
        self.detect_s = 0.0  # seconds spent in HOG
        self.encode_s = 0.0  # seconds spent in the encoder
        self._memo: dict[str, Encoded] = {}

    @property
    def images(self) -> int:
        """Distinct images encoded so far (from the cache or computed)."""
        return len(self._memo)

    def detect(self, image: np.ndarray) -> list[Face]:
        """All HOG faces in ``image`` (boxes clipped to it)."""
        rects, scores, _ = self._hog.run(image, self.upsample, 0.0)
        h, w = image.shape[:2]
        faces = [
            Face(box=(r.left(), r.top(), r.width(), r.height()), score=float(s)).clipped(w, h)
            for r, s in zip(rects, scores, strict=True)
        ]
        return [f for f in faces if f.box[2] > 0 and f.box[3] > 0]

    def encode_file(self, path: str | os.PathLike[str], key: str | None = None) -> Encoded:
        """Encode the central face of one image file; raises :class:`ImageError`.

        ``key`` names the image in the cache (default: the path as given).
        """
        key = str(path) if key is None else key
        if key in self._memo:
            return self._memo[key]
        image: np.ndarray | None = None
        found = self.cache.get_detection(key) if self.cache is not None else None
        if found is None:
            image = load_rgb(path, self.max_pixels)
            t0 = time.perf_counter()
            faces = self.detect(image)
            self.detect_s += time.perf_counter() - t0
            size = (image.shape[1], image.shape[0])
            boxes = [f.box for f in faces]
            if self.cache is not None:
                self.cache.put_detection(key, size, boxes)
        else:
            size, boxes = found
        width, height = size
        face = central_face([Face(box=b) for b in boxes], width, height)
        fallback = face is None
        box = fallback_box(width, height) if face is None else face.box
        if fallback:
            self.fallbacks.add(key)
        # cache entries: "" plain, "flip", "tint", "flip-tint" ("tint": made with
        # gray="tint", which changes only gray images)
        variant = "-".join(
            v for v in ("flip" if self.flip else "", "tint" if self.gray == "tint" else "") if v
        )
        enc = self.cache.get(key, box, variant) if self.cache is not None else None
        if enc is None:
            if image is None:
                image = load_rgb(path, self.max_pixels)
            if self.gray == "tint":
                image = tint_gray(image)
            t0 = time.perf_counter()
            enc = self.encoder.encode(image, [Face(box=box)])[0]  # type: ignore[attr-defined]
            self.encode_s += time.perf_counter() - t0
            self.encoded += 1
            if self.cache is not None:
                self.cache.put(key, box, enc, variant)
        result = Encoded(encoding=np.asarray(enc, dtype=np.float64), box=box, fallback=fallback)
        self._memo[key] = result
        return result


def pair_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two encodings (the project's verification metric)."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


def is_same(distance: float, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """The decision rule: same person iff ``distance <= threshold``."""
    return bool(distance <= threshold)


# ----- evaluation maths ---------------------------------------------------------------


def _check(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(distances, dtype=np.float64).ravel()
    s = np.asarray(same, dtype=bool).ravel()
    if d.shape != s.shape:
        raise ValueError(f"{d.size} distances but {s.size} labels")
    if d.size == 0:
        raise ValueError("no pairs")
    if not np.all(np.isfinite(d)):
        raise ValueError("distances must be finite")
    return d, s


def accuracy(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """Share of pairs the rule ``distance <= threshold`` classifies correctly."""
    d, s = _check(distances, same)
    return float(np.mean((d <= threshold) == s))


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The threshold that maximises accuracy of ``distance <= threshold`` on these pairs.

    Candidates are the midpoints between consecutive distinct distances (plus one below
    the smallest and one above the largest), so the answer sits in the middle of a gap,
    not on a sample. When several candidates tie, the median one is returned.
    """
    d, s = _check(distances, same)
    u = np.unique(d)
    gaps = (u[:-1] + u[1:]) / 2.0
    span = max(float(u[-1] - u[0]), 1e-6)
    cands = np.concatenate([[u[0] - 0.01 * span], gaps, [u[-1] + 0.01 * span]])
    # accuracy for every candidate at once: pairs accepted are those with d <= t
    pos = np.sort(d[s])
    neg = np.sort(d[~s])
    tp = np.searchsorted(pos, cands, side="right")
    fp = np.searchsorted(neg, cands, side="right")
    correct = tp + (neg.size - fp)
    best = np.flatnonzero(correct == correct.max())
    return float(cands[best[len(best) // 2]])


@dataclass(frozen=True)
class FoldResult:
    """One held-out fold: the threshold chosen on the others and its score here."""

    fold: int
    threshold: float
    accuracy: float
    pairs: int


def kfold_accuracy(distances: np.ndarray, same: np.ndarray, folds: np.ndarray) -> list[FoldResult]:
    """k-fold protocol: for each fold, choose the threshold on the *other* folds, score it."""
    d, s = _check(distances, same)
    f = np.asarray(folds).ravel()
    if f.shape != d.shape:
        raise ValueError("folds must have one entry per pair")
    out = []
    for fold in sorted(set(f.tolist())):
        test = f == fold
        if test.all():
            raise ValueError("k-fold needs at least two folds")
        t = best_threshold(d[~test], s[~test])
        out.append(
            FoldResult(
                fold=int(fold),
                threshold=t,
                accuracy=accuracy(d[test], s[test], t),
                pairs=int(test.sum()),
            )
        )
    return out


def threshold_at_far(impostor_distances: np.ndarray, far: float) -> float:
    """The largest threshold that accepts at most ``floor(far * n)`` of these impostors.

    With the rule ``distance <= t`` the answer lies just below the (k+1)-th smallest
    impostor distance, k = floor(far * n). With few impostors a small FAR allows none
    (600 impostor pairs: FAR 0.1 % -> k = 0); the held-out FAR is reported alongside.
    """
    imp = np.sort(np.asarray(impostor_distances, dtype=np.float64).ravel())
    if imp.size == 0:
        raise ValueError("no impostor distances")
    if not 0.0 <= far < 1.0:
        raise ValueError(f"far must be in [0, 1), got {far}")
    k = int(math.floor(far * imp.size + 1e-9))
    return float(np.nextafter(imp[k], -np.inf))


def tar_far(distances: np.ndarray, same: np.ndarray, threshold: float) -> tuple[float, float]:
    """(true-accept rate, false-accept rate) of ``distance <= threshold``."""
    d, s = _check(distances, same)
    if not s.any() or s.all():
        raise ValueError("need both genuine and impostor pairs")
    acc = d <= threshold
    return float(acc[s].mean()), float(acc[~s].mean())


@dataclass(frozen=True)
class FarFoldResult:
    fold: int
    threshold: float
    tar: float
    far: float


def kfold_tar_at_far(
    distances: np.ndarray, same: np.ndarray, folds: np.ndarray, far: float
) -> list[FarFoldResult]:
    """TAR at a target FAR, threshold set on the other folds' impostor distances."""
    d, s = _check(distances, same)
    f = np.asarray(folds).ravel()
    out = []
    for fold in sorted(set(f.tolist())):
        test = f == fold
        t = threshold_at_far(d[~test & ~s], far)
        tar, held_far = tar_far(d[test], s[test], t)
        out.append(FarFoldResult(fold=int(fold), threshold=t, tar=tar, far=held_far))
    return out


def roc_points(distances: np.ndarray, same: np.ndarray) -> list[tuple[float, float, float]]:
    """``(threshold, FAR, TAR)`` at every distinct distance, threshold ascending."""
    d, s = _check(distances, same)
    if not s.any() or s.all():
        raise ValueError("need both genuine and impostor pairs")
    u = np.unique(d)
    pos = np.sort(d[s])
    neg = np.sort(d[~s])
    tar = np.searchsorted(pos, u, side="right") / pos.size
    far = np.searchsorted(neg, u, side="right") / neg.size
    return [(float(t), float(a), float(b)) for t, a, b in zip(u, far, tar, strict=True)]
