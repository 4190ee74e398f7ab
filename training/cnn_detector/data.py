"""Training data for the CNN face detector: face images with boxes, non-face scenes, crops.

Positives come from aligned face photos (UTKFace, colour; LFW, gray) whose face box is
found once by dlib's HOG detector and then widened into the WIDER FACE box convention
(hairline to chin, see :func:`wider_style`). Negatives come from photos without faces
(scikit-image's sample photos), frames of one YouTube Faces clip away from its labelled
face, procedurally generated textures, windows of the face photos that miss the face
(wrong position or scale: IoU < 0.3), and hard negatives mined from the current model's
false detections. The WIDER FACE subset is the evaluation set and is never read here.

Every epoch draws new crops (new jitter, new augmentation) from these sources.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.cnn_detector.boxes import encode, iou_matrix, square_around, window_boxes
from pipeline.cnn_detector.crops import crop_window

# Labels of a crop: face, not a face, or "part" (box regression only, no class loss).
POS, NEG, PART = 1, 0, -1
POS_IOU, PART_IOU, NEG_IOU = 0.6, 0.4, 0.3
FACE_HEIGHT = 96.0  # face photos are stored shrunk to about this face height

# skimage.data photos without faces (astronaut and camera show people: excluded; the
# astronaut photo is the tests' face image).
SKIMAGE_SCENES = (
    "brick",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
    "checkerboard",
)


@dataclass
class FaceImage:
    """One RGB image and the WIDER-style face boxes (x1, y1, x2, y2) in it."""

    image: np.ndarray
    boxes: np.ndarray
    source: str = ""


@dataclass
class Scene:
    """One RGB image with no face except inside ``forbidden`` boxes (never sampled)."""

    image: np.ndarray
    forbidden: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    source: str = ""


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) from a gray, RGB or RGBA array."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        elif image.max() <= 1.0:
            image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
        else:
            image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, :3])
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def wider_style(dlib_boxes: np.ndarray) -> np.ndarray:
    """Widen dlib HOG boxes (brows to chin) into WIDER FACE-style boxes (hairline to chin).

    The top is raised by 20 % of the height and each side moved out by 2.5 % of the
    width, giving a w/h ratio near WIDER's typical 0.85.
    """
    b = np.asarray(dlib_boxes, dtype=np.float64).reshape(-1, 4)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    return np.stack([b[:, 0] - 0.025 * w, b[:, 1] - 0.2 * h, b[:, 2] + 0.025 * w, b[:, 3]], 1)


def _read_rgb(path: Path) -> np.ndarray | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else np.ascontiguousarray(bgr[:, :, ::-1])


def face_image_paths(root: Path, every: int = 2) -> dict[str, list[Path]]:
    """The UTKFace (every ``every``-th name, sorted, malformed names skipped) and LFW images."""
    utk_dir = root / "utkface"
    lfw_dir = root / "lfw-pairs-subset" / "images"
    utk = []
    if utk_dir.is_dir():
        names = sorted(p for p in utk_dir.glob("*.jpg") if len(p.name.split("_")) >= 4)
        utk = names[::every]
    lfw = sorted(lfw_dir.glob("*/*.jpg")) if lfw_dir.is_dir() else []
    return {"utkface": utk, "lfw": lfw}


def calibrate_boxes(
    paths: Iterable[Path],
    cache: Path,
    root: Path,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[float] | None]:
    """dlib HOG face box (x1, y1, x2, y2) of each image, or None; cached as JSON.

    Aligned face photos hold one big face, so the largest detection is taken.
    """
    import dlib

    done: dict[str, list[float] | None] = {}
    if cache.exists():
        done = json.loads(cache.read_text())
    paths = list(paths)
    todo = [p for p in paths if str(p.relative_to(root)) not in done]
    if todo:
        det = dlib.get_frontal_face_detector()
        for k, p in enumerate(todo):
            rgb = _read_rgb(p)
            box = None
            if rgb is not None:
                rects = det(rgb, 0)
                if len(rects):
                    r = max(rects, key=lambda r: r.width() * r.height())
                    box = [r.left(), r.top(), r.right() + 1, r.bottom() + 1]
            done[str(p.relative_to(root))] = box
            if progress and (k % 500 == 0 or k == len(todo) - 1):
                progress(k + 1, len(todo))
                cache.write_text(json.dumps(done))
        cache.write_text(json.dumps(done))
    return done


def load_face_images(
    root: Path,
    cache: Path,
    every: int = 2,
    progress: Callable[[int, int], None] | None = None,
    calibrate_every: int = 3,
) -> list[FaceImage]:
    """Face images with WIDER-style boxes.

    Both sets are aligned (the face sits at nearly the same place in every photo), so
    HOG runs on every ``calibrate_every``-th image only (CPU is scarce); the others, and
    the ones HOG missed (often turned faces), get their set's median box.
    """
    sets = face_image_paths(root, every)
    all_paths = [p for ps in sets.values() for p in ps[::calibrate_every]]
    if not all_paths:
        raise FileNotFoundError(f"no UTKFace or LFW images under {root}")
    boxes = calibrate_boxes(all_paths, cache, root, progress)
    faces: list[FaceImage] = []
    for name, paths in sets.items():
        found = [boxes.get(str(p.relative_to(root))) for p in paths]
        known = np.array([b for b in found if b is not None], dtype=np.float64)
        median = np.median(known, axis=0) if len(known) else None
        for p, b in zip(paths, found, strict=True):
            box = b if b is not None else median
            if box is None:
                continue
            rgb = _read_rgb(p)
            if rgb is None:
                continue
            wide = wider_style(np.array([box]))
            # shrink so the face is about FACE_HEIGHT pixels: crops are at most 48 px, and
            # resizing smaller sources makes every epoch's crops several times cheaper
            k = FACE_HEIGHT / float(wide[0, 3] - wide[0, 1])
            if k < 1:
                h0, w0 = rgb.shape[:2]
                size = (max(1, round(w0 * k)), max(1, round(h0 * k)))
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                wide = wide * np.array([size[0] / w0, size[1] / h0] * 2)
            faces.append(FaceImage(rgb, wide, f"{name}:{p.name}"))
    return faces


def split_holdout(items: list, fraction: float = 0.05) -> tuple[list, list]:
    """Deterministic train / held-out split by a hash of each item's ``source``."""
    train, held = [], []
    for it in items:
        h = int(hashlib.sha1(it.source.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if h < fraction else train).append(it)
    return train, held


def _fit(image: np.ndarray, max_side: int = 640) -> np.ndarray:
    """Shrink an image so its longer side is at most ``max_side`` (cheaper to mine)."""
    h, w = image.shape[:2]
    k = max_side / max(h, w)
    if k >= 1:
        return image
    return cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)


def skimage_scenes() -> list[Scene]:
    """scikit-image's bundled sample photos without faces."""
    import skimage.data

    scenes = []
    for name in SKIMAGE_SCENES:
        fn = getattr(skimage.data, name, None)
        if fn is None:
            continue
        try:
            img = fn()
        except Exception:  # noqa: BLE001 - a missing/undownloadable sample is skipped
            continue
        if img.ndim == 3 and img.shape[2] not in (3, 4):
            continue
        scenes.append(Scene(_fit(to_rgb(img)), source=f"skimage:{name}"))
    return scenes


def youtube_scenes(root: Path, every: int = 6) -> list[Scene]:
    """Frames of the YouTube Faces clip; its labelled face (widened) is forbidden."""
    clip = root / "youtube-faces-clips" / "Aaron_Guiel"
    labels = clip / "Aaron_Guiel5.labeled_faces.txt"
    if not labels.exists():
        return []
    scenes = []
    for k, line in enumerate(labels.read_text().splitlines()):
        if k % every or not line.strip():
            continue
        name, _, cx, cy, w, h = line.split(",")[:6]
        path = clip / Path(*name.split("\\")[1:])
        rgb = _read_rgb(path)
        if rgb is None:
            continue
        cx, cy, w, h = float(cx), float(cy), float(w) * 1.6, float(h) * 1.8
        box = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]])
        scenes.append(Scene(rgb, box, f"ytf:{path.name}"))
    return scenes


def synthetic_scene(rng: np.random.Generator, height: int = 360, width: int = 480) -> Scene:
    """A procedurally generated non-face image: smooth colour noise, shapes, stripes, text."""
    img = np.zeros((height, width, 3), np.float32)
    for octave in range(int(rng.integers(1, 4))):
        cell = int(rng.integers(4, 64)) * (octave + 1)
        small = rng.uniform(0, 255, size=(height // cell + 2, width // cell + 2, 3))
        layer = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
        img += layer * rng.uniform(0.3, 1.0)
    img = img / max(img.max(), 1.0) * 255.0
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(5, 40))):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        kind = rng.integers(0, 5)
        p = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if kind == 0:
            axes = (int(rng.integers(3, 80)), int(rng.integers(3, 80)))
            cv2.ellipse(canvas, p, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
        elif kind == 1:
            q = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.rectangle(canvas, p, q, colour, int(rng.choice([-1, 1, 2, 4])))
        elif kind == 2:
            q = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(canvas, p, q, colour, int(rng.integers(1, 6)))
        elif kind == 3:
            text = "".join(chr(int(c)) for c in rng.integers(65, 91, size=int(rng.integers(2, 9))))
            cv2.putText(
                canvas,
                text,
                p,
                cv2.FONT_HERSHEY_SIMPLEX,
                float(rng.uniform(0.5, 3)),
                colour,
                int(rng.integers(1, 4)),
            )
        else:
            cv2.circle(canvas, p, int(rng.integers(2, 40)), colour, int(rng.choice([-1, 2])))
    if rng.random() < 0.5:
        canvas = cv2.GaussianBlur(canvas, (0, 0), float(rng.uniform(0.5, 2.5)))
    return Scene(canvas, source="synthetic")


@dataclass
class CropSet:
    """Crops, their labels (POS / NEG / PART) and box offsets (zeros for negatives)."""

    x: np.ndarray  # (N, S, S, 3) uint8
    y: np.ndarray  # (N,) int8
    t: np.ndarray  # (N, 4) float32

    @staticmethod
    def empty(size: int) -> CropSet:
        return CropSet(
            np.zeros((0, size, size, 3), np.uint8),
            np.zeros((0,), np.int8),
            np.zeros((0, 4), np.float32),
        )

    def __len__(self) -> int:
        return len(self.y)

    @staticmethod
    def concat(sets: list[CropSet]) -> CropSet:
        return CropSet(
            np.concatenate([s.x for s in sets]),
            np.concatenate([s.y for s in sets]),
            np.concatenate([s.t for s in sets]),
        )

    def shuffled(self, rng: np.random.Generator) -> CropSet:
        order = rng.permutation(len(self))
        return CropSet(self.x[order], self.y[order], self.t[order])


def _jitter_windows(
    box: np.ndarray, n: int, scale: float, shift: float, rng: np.random.Generator
) -> np.ndarray:
    """``n`` square windows around ``box`` with log-uniform size and uniform shift jitter."""
    x, y, s = square_around(box)[0]
    sides = s * np.exp(rng.uniform(-scale, scale, n))
    cx = x + s / 2 + rng.uniform(-shift, shift, n) * s
    cy = y + s / 2 + rng.uniform(-shift, shift, n) * s
    return np.stack([cx - sides / 2, cy - sides / 2, sides], axis=1)


def face_crops(
    faces: list[FaceImage],
    n_pos: int,
    n_part: int,
    n_neg: int,
    size: int,
    rng: np.random.Generator,
    max_angle: float = 15.0,
) -> CropSet:
    """Face (IoU >= 0.6), part-face (0.4-0.6) and missed-face (< 0.3) crops of face images."""
    xs: list[np.ndarray] = []
    ys: list[int] = []
    ts: list[np.ndarray] = []
    plan = [(POS, n_pos, 0.15, 0.10), (PART, n_part, 0.35, 0.30), (NEG, n_neg, 1.2, 0.9)]
    for label, count, scale, shift in plan:
        made = 0
        while made < count:
            fi = faces[int(rng.integers(len(faces)))]
            gt = fi.boxes[int(rng.integers(len(fi.boxes)))]
            wins = _jitter_windows(gt, 8, scale, shift, rng)
            ious = iou_matrix(window_boxes(wins), fi.boxes).max(axis=1)
            if label == POS:
                ok = ious >= POS_IOU
            elif label == PART:
                ok = (ious >= PART_IOU) & (ious < POS_IOU)
            else:
                ok = (ious < NEG_IOU) & (wins[:, 2] >= 12)
            for w in wins[ok][: count - made]:
                angle = float(rng.uniform(-max_angle, max_angle)) if label != NEG else 0.0
                xs.append(crop_window(fi.image, w[0], w[1], w[2], size, angle))
                ys.append(label)
                ts.append(encode(w[None], gt[None])[0] if label != NEG else np.zeros(4, np.float32))
                made += 1
    if not xs:
        return CropSet.empty(size)
    return CropSet(np.stack(xs), np.array(ys, np.int8), np.stack(ts).astype(np.float32))


def scene_windows(
    scene: Scene, n: int, rng: np.random.Generator, min_side: float = 16.0
) -> np.ndarray:
    """``n`` random square windows of a scene that do not overlap its forbidden boxes."""
    h, w = scene.image.shape[:2]
    max_side = max(min_side + 1, min(h, w))
    sides = np.exp(rng.uniform(np.log(min_side), np.log(max_side), 4 * n))
    xs = rng.uniform(0, 1, 4 * n) * np.maximum(w - sides, 1)
    ys = rng.uniform(0, 1, 4 * n) * np.maximum(h - sides, 1)
    wins = np.stack([xs, ys, sides], axis=1)
    if len(scene.forbidden):
        ok = iou_matrix(window_boxes(wins), scene.forbidden).max(axis=1) < 0.1
        wins = wins[ok]
    return wins[:n]


def scene_crops(scenes: list[Scene], n: int, size: int, rng: np.random.Generator) -> CropSet:
    """``n`` random non-face crops spread over ``scenes``."""
    xs = []
    while len(xs) < n:
        sc = scenes[int(rng.integers(len(scenes)))]
        for w in scene_windows(sc, min(32, n - len(xs)), rng):
            xs.append(crop_window(sc.image, w[0], w[1], w[2], size))
    if not xs:
        return CropSet.empty(size)
    return CropSet(np.stack(xs), np.full(len(xs), NEG, np.int8), np.zeros((len(xs), 4), np.float32))
