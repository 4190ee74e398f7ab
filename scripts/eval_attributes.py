"""Evaluate every age/gender backend on the fixed UTKFace validation split.

Age MAE (years) and gender accuracy, overall and by age group, plus milliseconds per
face (median wall time of ``estimate`` on one face, single thread). Writes a markdown
table and the raw numbers to ``docs/attributes_eval.md`` / ``.json``.

No model facepipe ships was trained on these files (pipeline/agegender/split.py).

Each image is handled like ``facepipe analyze --face-crop``: the face box is where dlib's
HOG detector puts it on UTKFace crops (``--boxes utkface``, the default), or the box HOG
actually returns on the image placed in a neutral canvas (``--boxes hog``; images HOG
misses fall back to the default box and are counted). ``--framing`` re-measures the
HOG framing that sets the backends' ``crop_margin``.

For ``transfer`` and ``ensemble`` the 128-d encodings of the validation images can come
from the training cache (``runs/agegender/cache``, computed by the same code path): past
the ``--time-n`` timed images (which compute their encoding, and check that it agrees with
the cached one) the face carries its cached encoding, as in the pipeline where the
recognition stage computed it; that path is timed too ("encoding reused").

Usage::

    nice -n 10 python scripts/eval_attributes.py                 # all backends
    nice -n 10 python scripts/eval_attributes.py --backends scratch --limit 500
    nice -n 10 python scripts/eval_attributes.py --framing
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.agegender.framing import UTKFACE_BOX_FRACTION, face_crop_box  # noqa: E402
from pipeline.agegender.images import read_rgb  # noqa: E402
from pipeline.agegender.split import list_samples, split_samples  # noqa: E402
from pipeline.attributes import registry  # noqa: E402
from pipeline.datasets import require  # noqa: E402
from pipeline.record import Face  # noqa: E402
from training.agegender.data import mirrored_features  # noqa: E402
from training.agegender.training import machine, metrics  # noqa: E402

CANVAS = 200  # grey border around an image when HOG looks for its face


def hog_box(detector: Any, image: np.ndarray) -> Face | None:
    """HOG's box of the central face of a face crop placed in a grey canvas."""
    import cv2

    h, w = image.shape[:2]
    canvas = cv2.copyMakeBorder(
        image, CANVAS, CANVAS, CANVAS, CANVAS, cv2.BORDER_CONSTANT, value=(120, 120, 120)
    )
    faces = detector.detect(canvas)
    if not faces:
        return None
    cx, cy = CANVAS + w / 2, CANVAS + h / 2
    best = min(
        faces, key=lambda f: abs(f.box[0] + f.box[2] / 2 - cx) + abs(f.box[1] + f.box[3] / 2 - cy)
    )
    x, y, bw, bh = best.box
    return Face(box=(x - CANVAS, y - CANVAS, bw, bh))


def measure_framing(folder: Path, samples: list, n: int) -> dict[str, Any]:
    """HOG box side / image side on UTKFace images shown at random sizes (110-320 px)."""
    import cv2

    from pipeline.detectors import registry as det

    hog = det.create("hog")
    rng = np.random.default_rng(0)
    rel, centres, missed = [], [], 0
    for s in samples[:: max(1, len(samples) // n)][:n]:
        im = read_rgb(folder / s.name)
        side = int(rng.integers(110, 321))
        im = cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA)
        f = hog_box(hog, im)
        if f is None:
            missed += 1
            continue
        x, y, w, h = f.box
        rel.append(w / side)
        centres.append(((x + w / 2) / side, (y + h / 2) / side))
    rel_a = np.array(rel)
    c = np.array(centres)
    margins = (1.0 / rel_a - 1.0) / 2.0
    return {
        "images": len(rel) + missed,
        "missed": missed,
        "box_side_median": round(float(np.median(rel_a)), 3),
        "box_side_p10_p90": [round(float(v), 3) for v in np.percentile(rel_a, [10, 90])],
        "margin_median": round(float(np.median(margins)), 3),
        "centre_median": [round(float(v), 3) for v in np.median(c, axis=0)],
    }


def evaluate_backend(
    name: str,
    folder: Path,
    samples: list,
    boxes: str,
    time_n: int,
    use_cache: bool,
) -> dict[str, Any]:
    from pipeline.detectors import registry as det

    est = registry.create(name)
    est.warmup()
    hog = det.create("hog") if boxes == "hog" else None
    cached = None
    if name in ("transfer", "ensemble") and use_cache and boxes == "utkface":
        try:  # finished chunks are enough: validation chunks are computed first
            rows = mirrored_features([s.name for s in samples])[:, :128].astype(np.float64)
            cached = ({s.name: i for i, s in enumerate(samples)}, rows)
        except KeyError:
            cached = None
    reuse_ms = []
    pred_age, p_female, ms = [], [], []
    hog_missed = 0
    agree = []
    for k, s in enumerate(samples):
        image = read_rgb(folder / s.name)
        h, w = image.shape[:2]
        box = None
        if hog is not None:
            box = hog_box(hog, image)
            hog_missed += box is None
        box = box or face_crop_box(h, w)
        if cached is not None and k >= time_n:
            # the encoding from the cache, handed over like the recognition stage does
            enc = cached[1][cached[0][s.name]].tolist()
            t0 = time.perf_counter()
            res = est.estimate(image, [Face(box=box.box, encoding=enc)])
            if len(reuse_ms) < time_n:
                reuse_ms.append((time.perf_counter() - t0) * 1000.0)
        else:
            t0 = time.perf_counter()
            res = est.estimate(image, [box])
            ms.append((time.perf_counter() - t0) * 1000.0)
            tr = est if name == "transfer" else _transfer_member(est)
            if cached is not None and tr is not None:
                fresh = tr._encoder.encode(image, [box])[0]
                agree.append(float(np.abs(fresh - cached[1][cached[0][s.name]]).max()))
        r = res[0]
        pred_age.append(r.age)
        p_female.append(r.p_female)
        if (k + 1) % 500 == 0:
            print(f"  {name}: {k + 1}/{len(samples)}", file=sys.stderr, flush=True)
    ages = np.array([s.age for s in samples], dtype=float)
    genders = np.array([s.gender for s in samples])
    m = metrics(np.array(pred_age), np.array(p_female), ages, genders)
    m["_pred"] = (np.array(pred_age), np.array(p_female))
    m["ms_per_face_median"] = round(statistics.median(ms), 2) if ms else None
    m["ms_timed_faces"] = len(ms)
    if reuse_ms:  # in the pipeline: the face carries the recognition stage's encoding
        m["ms_per_face_reusing_encoding"] = round(statistics.median(reuse_ms), 2)
    m["crop_margin"] = est.crop_margin
    if hog is not None:
        m["hog_missed"] = int(hog_missed)
    if agree:
        m["cache_max_abs_diff"] = round(max(agree), 6)
    return m


def _transfer_member(est: Any) -> Any:
    """The ensemble's ``transfer`` member, or None."""
    return next((m for m in getattr(est, "members", []) if m.name == "transfer"), None)


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Age/gender backends on the UTKFace validation split",
        "",
        f"- machine: {meta['machine']}",
        f"- command: `{meta['command']}`",
        f"- images: {meta['images']} (validation split, never trained on); boxes: {meta['boxes']}",
        f"- date: {meta['date']}",
        "",
        "| backend | age MAE (years) | gender accuracy | gender, age >= 13 | ms / face (median) "
        "| ms / face, encoding reused | crop_margin |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in results.items():
        if "error" in m:
            lines.append(f"| {name} | error: {m['error']} | | | | | |")
            continue
        ms = f"{m['ms_per_face_median']:.1f}" if m.get("ms_per_face_median") else "n/a"
        reuse = m.get("ms_per_face_reusing_encoding")
        lines.append(
            f"| {name} | {m['age_mae']:.2f} | {m['gender_accuracy']:.1%} | "
            f"{m['gender_accuracy_13plus']:.1%} | {ms} | {reuse if reuse is not None else '-'} | "
            f"{m['crop_margin']} |"
        )
    groups = [g for m in results.values() if "by_age_group" in m for g in m["by_age_group"]]
    groups = list(dict.fromkeys(groups))
    if groups:
        ok = [n for n, m in results.items() if "by_age_group" in m]
        lines += ["", "Age MAE (years) / gender accuracy by true age group:", ""]
        lines.append("| age | n | " + " | ".join(ok) + " |")
        lines.append("|---|---|" + "---|" * len(ok))
        for g in groups:
            n = next(
                results[b]["by_age_group"][g]["n"] for b in ok if g in results[b]["by_age_group"]
            )
            cells = []
            for b in ok:
                v = results[b]["by_age_group"].get(g)
                cells.append(f"{v['age_mae']:.1f} / {v['gender_accuracy']:.0%}" if v else "")
            lines.append(f"| {g} | {n} | " + " | ".join(cells) + " |")
    if meta.get("framing"):
        f = meta["framing"]
        lines += [
            "",
            f"HOG framing on {f['images']} validation images shown at 110-320 px "
            f"({f['missed']} missed): box side = {f['box_side_median']} of the image side "
            f"(p10-p90 {f['box_side_p10_p90']}), centre {f['centre_median']}, so a margin of "
            f"{f['margin_median']} per side turns a HOG box into a UTKFace-like crop "
            f"(pipeline uses {UTKFACE_BOX_FRACTION}).",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default=None, help="comma-separated (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="N images spread over the split")
    ap.add_argument("--boxes", choices=["utkface", "hog"], default="utkface")
    ap.add_argument("--time-n", type=int, default=200, help="faces timed per backend")
    ap.add_argument("--no-cache", action="store_true", help="transfer: recompute encodings")
    ap.add_argument("--framing", action="store_true", help="also measure the HOG framing")
    ap.add_argument("--out", default=str(REPO / "docs" / "attributes_eval"))
    args = ap.parse_args()
    try:
        folder = require("utkface")
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _, val = split_samples(list_samples(folder))
    if args.limit:
        # evenly spread over the (name-sorted) split, so every age range is represented
        idx = np.unique(np.linspace(0, len(val) - 1, min(args.limit, len(val))).astype(int))
        val = [val[i] for i in idx]
    names = args.backends.split(",") if args.backends else registry.names()
    meta: dict[str, Any] = {
        "machine": machine(),
        "command": "python scripts/eval_attributes.py " + " ".join(sys.argv[1:]),
        "images": len(val),
        "boxes": args.boxes,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    if args.framing:
        meta["framing"] = measure_framing(folder, val, min(400, len(val)))
        print(json.dumps(meta["framing"]), file=sys.stderr)
    results: dict[str, Any] = {}
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = evaluate_backend(
                name, folder, val, args.boxes, args.time_n, not args.no_cache
            )
        except Exception as exc:  # one backend failing must not hide the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        shown = {k: v for k, v in results[name].items() if k != "_pred"}
        print(json.dumps({name: shown}), file=sys.stderr, flush=True)
    # averages of backends (mean age, mean p(female)), from the predictions above: no
    # weights are fitted, so nothing is tuned to this split
    ok = [n for n in names if "_pred" in results.get(n, {}) and n != "ensemble"]
    ages = np.array([s.age for s in val], dtype=float)
    genders = np.array([s.gender for s in val])
    combos = [ok] if len(ok) > 2 else []
    combos += [[a, b] for i, a in enumerate(ok) for b in ok[i + 1 :]]
    for combo in combos:
        age = np.mean([results[n]["_pred"][0] for n in combo], axis=0)
        pf = np.mean([results[n]["_pred"][1] for n in combo], axis=0)
        m = metrics(age, pf, ages, genders)
        m["ms_per_face_median"] = sum(results[n]["ms_per_face_median"] or 0 for n in combo)
        m["crop_margin"] = "-"
        results["mean(" + " + ".join(combo) + ")"] = m
    for m in results.values():
        m.pop("_pred", None)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    out.with_suffix(".md").write_text(markdown(results, meta))
    print(markdown(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
