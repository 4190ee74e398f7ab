#!/usr/bin/env python
"""Fit and check the map from YuNet's boxes to dlib HOG's framing (the recognition encoder's).

    python scripts/fit_detector_boxes.py collect            # pairs of every source (cached)
    python scripts/fit_detector_boxes.py fit [--write]      # fit, IoU on held-out sources
    python scripts/fit_detector_boxes.py encodings          # LFW: encodings and verification

``collect`` runs YuNet (its own boxes) and dlib HOG on the sources of
:mod:`pipeline.evaluation.detector_boxes` (WIDER, UTKFace sample, crowd-video frames,
LFW); ``fit`` fits the map on WIDER + UTKFace + crowd frames, reports how close raw,
ratio-mapped and linearly mapped boxes come to HOG's on each source (LFW held out;
the fitting sources leave-one-source-out), and with ``--write`` stores it as
``pipeline/models/yunet/box_map.json``; ``encodings`` measures on LFW what matters:
the distance of an encoding made in the detector's box to the one made in HOG's box,
and verification accuracy (LFW folds protocol) with each kind of box.
Results are printed as JSON and written to ``runs/detector_boxes/``.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from pipeline import machine
from pipeline.datasets import REPO_ROOT, require
from pipeline.detectors import registry
from pipeline.detectors._boxmap import BoxMap, from_targets, ratio_map
from pipeline.evaluation import detector_boxes as db
from pipeline.evaluation.common import log

CACHE = REPO_ROOT / "runs" / "detector_boxes"
FIT_SOURCES = ("wider", "utkface", "crowd")
HELD_OUT = ("lfw",)


def make_raw():  # noqa: ANN201
    return registry.create("yunet", {"box": "model", "min_score": 0.2})


def datasets_root():  # noqa: ANN201
    return require("wider-face-val-subset").parent


def cmd_collect(args: argparse.Namespace) -> dict:
    root = datasets_root()
    out = {}
    for name in args.sources.split(","):
        imgs = db.collect(name, root, CACHE, make_raw)
        out[name] = {"images": len(imgs), "pairs": len(db.pairs_of(imgs))}
        log(f"{name}: {out[name]}")
    return out


def load_all(sources: tuple[str, ...]) -> dict[str, list[dict]]:
    root = datasets_root()
    return {n: db.collect(n, root, CACHE, make_raw) for n in sources}


def fit_on(pairs: list[dict], sources: list[str]) -> BoxMap:
    sel = [p for p in pairs if p["source"] in sources]
    return BoxMap.fit(
        [p["box"] for p in sel],
        [p["landmarks"] for p in sel],
        [p["dlib"] for p in sel],
        source={"sources": sources, "faces": len(sel)},
    )


def compare(pairs: list[dict], box_map: BoxMap, ratio: np.ndarray) -> dict:
    raw = [p["box"] for p in pairs]
    ref = [p["dlib"] for p in pairs]
    return {
        "raw": db.mean_iou(raw, ref),
        "ratio": db.mean_iou([from_targets(b, ratio) for b in raw], ref),
        "linear": db.mean_iou([box_map.apply(p["box"], p["landmarks"]) for p in pairs], ref),
        "linear_no_landmarks": db.mean_iou([box_map.apply(b, None) for b in raw], ref),
    }


def cmd_fit(args: argparse.Namespace) -> dict:
    images = load_all(db.SOURCES)
    pairs = [p for imgs in images.values() for p in db.pairs_of(imgs)]
    fit_sources = list(FIT_SOURCES)
    full = fit_on(pairs, fit_sources)
    sel = [p for p in pairs if p["source"] in fit_sources]
    ratio = ratio_map([p["box"] for p in sel], [p["dlib"] for p in sel])
    out: dict = {"pairs": {n: sum(p["source"] == n for p in pairs) for n in db.SOURCES}}
    out["held_out"] = {
        n: compare([p for p in pairs if p["source"] == n], full, ratio) for n in HELD_OUT
    }
    # each fitting source against a map fitted on the other fitting sources only
    out["leave_one_source_out"] = {}
    for n in fit_sources:
        rest = [s for s in fit_sources if s != n]
        sel_r = [p for p in pairs if p["source"] in rest]
        out["leave_one_source_out"][n] = compare(
            [p for p in pairs if p["source"] == n],
            fit_on(pairs, rest),
            ratio_map([p["box"] for p in sel_r], [p["dlib"] for p in sel_r]),
        )
    out["ratio_map"] = np.round(ratio, 4).tolist()
    out["coef"] = full.to_dict()["coef"]
    if args.write:
        from pipeline.detectors.yunet import BOX_MAP_PATH

        src = dict(full.source)
        src.update(
            {
                "pairs_per_source": {n: out["pairs"][n] for n in fit_sources},
                "held_out_iou_with_dlib": out["held_out"],
                "matched_at_iou": db.MATCH_IOU,
                "detector": "yunet min_score 0.5, its own boxes before clipping",
                "dlib": f"dlib.get_frontal_face_detector(), upsample {db.HOG_UPSAMPLE}",
                "command": "python scripts/fit_detector_boxes.py fit --write",
            }
        )
        BOX_MAP_PATH.parent.mkdir(parents=True, exist_ok=True)
        BoxMap(full.coef, full.mean_features, src).save(BOX_MAP_PATH)
        log(f"wrote {BOX_MAP_PATH.relative_to(REPO_ROOT)}")
    return out


def cmd_encodings(args: argparse.Namespace) -> dict:
    from pipeline.detectors.yunet import box_map
    from pipeline.recognition import verify as V
    from pipeline.recognition.encoder import DlibEncoder
    from pipeline.record import Face

    started = machine.info()
    data = require("lfw-pairs-subset")
    pairs = V.load_pairs(data / "pairs.tsv")
    images = {r["key"]: r for r in load_all(("lfw",))["lfw"]}
    keys = sorted({p.a for p in pairs} | {p.b for p in pairs})
    bm = box_map()
    boxes: dict[str, dict[str, tuple]] = {"hog": {}, "raw": {}, "mapped": {}}
    hog_found: set[str] = set()
    yun_found: set[str] = set()
    for k in keys:
        rec = images[k]
        w, h = rec["size"]
        hog = V.central_face([Face(box=b) for b in rec["hog"]], w, h)
        faces = [f for f in rec["faces"] if f["score"] >= args.min_score]
        yun = V.central_face(
            [Face(box=f["box"], landmarks=[tuple(p) for p in f["landmarks"]]) for f in faces], w, h
        )
        fb = V.fallback_box(w, h)
        boxes["hog"][k] = hog.clipped(w, h).box if hog else fb
        if hog is not None:
            hog_found.add(k)
        if yun is None:
            boxes["raw"][k] = boxes["mapped"][k] = fb
            continue
        yun_found.add(k)
        raw_full = next(f for f in faces if tuple(Face(box=f["box"]).box) == yun.box)
        boxes["raw"][k] = yun.clipped(w, h).box
        boxes["mapped"][k] = (
            Face(box=bm.apply(raw_full["box"], raw_full["landmarks"])).clipped(w, h).box
        )
    cache = V.EncodingCache(CACHE / "enc-5pt-jitter1")
    enc = DlibEncoder(num_jitters=1)
    vec: dict[str, dict[str, np.ndarray]] = {m: {} for m in boxes}
    for i, k in enumerate(keys, 1):
        img = None
        for m in boxes:
            b = boxes[m][k]
            e = cache.get(k, b)
            if e is None:
                img = V.load_rgb(data / "images" / k) if img is None else img
                e = enc.encode(img, [Face(box=b)])[0]
                cache.put(k, b, e)
            vec[m][k] = np.asarray(e, dtype=np.float64)
        if i % 200 == 0:
            cache.flush()
            log(f"encoded {i}/{len(keys)}")
    cache.flush()
    both = sorted(hog_found & yun_found)
    drift = {}
    for m in ("raw", "mapped"):
        d = np.array([V.pair_distance(vec["hog"][k], vec[m][k]) for k in both])
        drift[m] = {
            "mean": round(float(d.mean()), 4),
            "median": round(float(np.median(d)), 4),
            "p90": round(float(np.percentile(d, 90)), 4),
            "max": round(float(d.max()), 4),
        }
    same = np.array([bool(p.same) for p in pairs])
    folds = np.array([p.fold for p in pairs])
    thr = V.calibrated_threshold(1, False)
    verif = {}
    modes = {
        "hog-hog": ("hog", "hog"),
        "raw-raw": ("raw", "raw"),
        "mapped-mapped": ("mapped", "mapped"),
        "hog-raw": ("hog", "raw"),
        "hog-mapped": ("hog", "mapped"),
    }
    for name, (ma, mb) in modes.items():
        d = np.array([V.pair_distance(vec[ma][p.a], vec[mb][p.b]) for p in pairs])
        rows = V.kfold_accuracy(d, same, folds)
        far = V.kfold_tar_at_far(d, same, folds, 0.01)
        verif[name] = {
            "mean_accuracy": round(float(np.mean([r.accuracy for r in rows])), 4),
            "errors": int(sum(round((1 - r.accuracy) * r.pairs) for r in rows)),
            "tar_at_far_1pct": round(float(np.mean([r.tar for r in far])), 4),
            "accuracy_at_shipped_threshold": round(V.accuracy(d, same, thr), 4),
            "genuine_mean": round(float(d[same].mean()), 4),
            "impostor_mean": round(float(d[~same].mean()), 4),
        }
    return {
        "machine": {**started, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "images": len(keys),
        "found": {"hog": len(hog_found), "yunet": len(yun_found)},
        "both_found": len(both),
        "min_score": args.min_score,
        "shipped_threshold": thr,
        "drift_from_hog_encoding": drift,
        "verification": verif,
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--sources", default=",".join(db.SOURCES))
    f = sub.add_parser("fit")
    f.add_argument("--write", action="store_true", help="store the map in pipeline/models/")
    e = sub.add_parser("encodings")
    e.add_argument("--min-score", type=float, default=0.5)
    args = ap.parse_args()
    result = {"collect": cmd_collect, "fit": cmd_fit, "encodings": cmd_encodings}[args.cmd](args)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / f"{args.cmd}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
