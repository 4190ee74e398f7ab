"""A detector's boxes against dlib HOG's: pairs of the same face, the box map's fit and
its check (``scripts/fit_detector_boxes.py``).

The recognition encoder places dlib's 5-point shape predictor inside the detector's box,
and enrolment finds faces with dlib's HOG detector, so a video detector whose boxes are
framed differently encodes the same face differently. This module

1. collects **pairs**: every face both the detector (its own boxes, ``box=model``,
   before clipping to the image, which is where the map is applied) and
   dlib HOG (upsampled once, as enrolment and ``facepipe verify`` run it) find in an
   image, matched by IoU, with the detector's score and 5 landmarks;
2. fits :class:`pipeline.detectors._boxmap.BoxMap` on some sources and measures, on
   held-out ones, how close the mapped boxes come to HOG's (IoU) and how close the
   encodings made in them come to the encodings made in HOG's box (Euclidean distance
   of dlib's 128-d encodings: the recognition threshold is ~0.6).

Sources (``SOURCES``): WIDER FACE validation subset images (1024 px), an even sample of
UTKFace, frames of the unlabelled crowd video, LFW (the verification images). Each
source's pairs are cached under ``runs/detector_boxes/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.boxes import iou_matrix_xywh
from pipeline.evaluation.common import log, spread
from pipeline.images import read_image

MATCH_IOU = 0.3  # a detector box and a HOG box are the same face above this IoU
HOG_UPSAMPLE = 1  # as enrolment's first try and facepipe verify


def hog_boxes(detector: Any, image: np.ndarray, upsample: int = HOG_UPSAMPLE) -> list[list[int]]:
    """dlib HOG's boxes ``(x, y, w, h)`` (unclipped, as the encoder would get them)."""
    return [
        [r.left(), r.top(), r.width(), r.height()]
        for r in detector(np.ascontiguousarray(image), upsample)
    ]


def match_pairs(det_faces: list[dict[str, Any]], hog: list[list[int]]) -> list[dict[str, Any]]:
    """Each HOG box with the detector face that overlaps it most (IoU > MATCH_IOU; one
    detector face per HOG box, greedily by IoU)."""
    if not det_faces or not hog:
        return []
    ious = iou_matrix_xywh([f["box"] for f in det_faces], hog)
    out, used_d, used_h = [], set(), set()
    for flat in np.argsort(-ious, axis=None):
        i, j = np.unravel_index(flat, ious.shape)
        if ious[i, j] <= MATCH_IOU:
            break
        if i in used_d or j in used_h:
            continue
        used_d.add(i)
        used_h.add(j)
        out.append({**det_faces[i], "dlib": hog[j], "iou": round(float(ious[i, j]), 4)})
    return out


def iter_source(name: str, datasets: Path, limit: int | None = None) -> Iterator[tuple[str, Any]]:
    """``(key, RGB image)`` of one source. ``limit``: an even sample."""
    import cv2

    if name == "wider":
        root = datasets / "wider-face-val-subset"
        recs = [json.loads(ln) for ln in (root / "annotations.jsonl").read_text().splitlines()]
        for r in spread(recs, limit):
            yield r["image"], (lambda p=root / "images" / r["image"]: read_image(p))
    elif name == "utkface":
        root = datasets / "utkface"
        for p in spread(sorted(root.glob("*.jpg")), limit or 1500):
            yield p.name, (lambda p=p: read_image(p))
    elif name == "lfw":
        root = datasets / "lfw-pairs-subset"
        for p in spread(sorted((root / "images").rglob("*.jpg")), limit):
            key = p.relative_to(root / "images").as_posix()
            yield key, (lambda p=p: read_image(p))
    elif name == "crowd":
        cap = cv2.VideoCapture(str(datasets / "video" / "crowd_1080p.mp4"))
        i = 0
        step = 3
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % step == 0 and (limit is None or i // step < limit):
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                rgb = cv2.resize(rgb, (960, 540), interpolation=cv2.INTER_AREA)
                yield f"frame{i:04d}", (lambda rgb=rgb: rgb)
            i += 1
        cap.release()
    else:
        raise ValueError(f"unknown source {name!r}")


SOURCES = ("wider", "utkface", "crowd", "lfw")


def collect(
    name: str,
    datasets: Path,
    cache_dir: Path,
    make_detector: Callable[[], Any],
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Every image of one source: ``{"key", "size", "faces", "hog"}`` (the detector's faces
    with score and landmarks, HOG's boxes), cached as JSON lines (resumable)."""
    import dlib

    path = cache_dir / f"faces-{name}.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption
                continue
            done[rec["key"]] = rec
    items = list(iter_source(name, datasets, limit))
    todo = [(k, load) for k, load in items if k not in done]
    if todo:
        det = make_detector()
        hog = dlib.get_frontal_face_detector()
        cache_dir.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            for n, (key, load) in enumerate(todo, 1):
                image = load()
                # the model's own boxes before clipping: the map is applied before it
                faces = [
                    {"box": list(f.box), "score": f.score, "landmarks": f.landmarks}
                    for f in det.unclipped(image)
                    if f.landmarks and f.box[2] > 0 and f.box[3] > 0
                ]
                h, w = image.shape[:2]
                rec = {"key": key, "size": [w, h], "faces": faces, "hog": hog_boxes(hog, image)}
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                done[key] = rec
                if n % 100 == 0 or n == len(todo):
                    log(f"{name}: {n}/{len(todo)} images")
    return [{**done[k], "source": name} for k, _ in items]


def pairs_of(images: list[dict[str, Any]], min_score: float = 0.5) -> list[dict[str, Any]]:
    """The matched (detector face, HOG box) pairs of collected images."""
    out = []
    for rec in images:
        faces = [f for f in rec["faces"] if f["score"] >= min_score]
        for p in match_pairs(faces, rec["hog"]):
            out.append({**p, "source": rec["source"], "key": rec["key"], "size": rec["size"]})
    return out


def mean_iou(boxes: list[Any], ref: list[Any]) -> dict[str, float]:
    ious = np.array([iou_matrix_xywh([a], [b])[0, 0] for a, b in zip(boxes, ref, strict=True)])
    return {
        "mean": round(float(ious.mean()), 4),
        "median": round(float(np.median(ious)), 4),
        "p10": round(float(np.percentile(ious, 10)), 4),
        "n": len(ious),
    }
