"""Calibrate and evaluate facepipe's verification rule on the LFW pairs subset.

Protocol (LFW "10-fold style" on the 3 folds the dataset holds, 1,800 pairs): for each
fold, the accuracy-maximising threshold is chosen on the other two folds and the held-out
fold is scored with it; the true-accept rate at a fixed false-accept rate (0.1 % and 1 %)
uses a threshold set on the other folds' impostor distances. Decision rule: same person
iff the Euclidean distance of the 128-d dlib encodings is <= threshold.

Images are 250x250 grayscale LFW-a faces: gray is replicated to RGB, dlib HOG (upsample
1) finds the face; where it finds none, a fixed central box is used, calibrated here as the
median HOG box of the images where HOG does find a face (the value printed should match
``FALLBACK_BOX_FRACTIONS`` in pipeline/recognition/verify.py).

One run evaluates one variant (jitters, landmark model) and writes
``docs/recognition-lfw/<variant>.json``; ``docs/recognition-lfw.md`` is regenerated from
all variant files present. Encodings are cached under ``runs/verification/`` (``.npy`` +
``.json``), so a rerun or an interrupted run costs only what is missing. Run it in the
background on a shared machine:

    nice -n 10 python scripts/eval_verification.py --num-jitters 1 > runs/verification/j1.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline.datasets import REPO_ROOT, require
from pipeline.recognition import verify as V
from pipeline.recognition.encoder import DlibEncoder
from pipeline.record import Face

FARS = (0.001, 0.01)


class Dlib68Encoder(DlibEncoder):
    """The same ResNet encoder aligned with the 68-point landmark model (iBUG 300-W, non-
    commercial licence; compared here only, the pipeline uses the 5-point model)."""

    def __init__(self, num_jitters: int = 1) -> None:
        super().__init__(num_jitters=num_jitters)
        import dlib
        import face_recognition_models as frm

        self._shape = dlib.shape_predictor(frm.pose_predictor_model_location())


def log(msg: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {msg}", flush=True)


def machine() -> dict[str, object]:
    import dlib

    from pipeline.machine import cpu_model

    cpu = cpu_model()

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "dlib": dlib.__version__,
        "numpy": np.__version__,
        "load_avg_at_end": os.getloadavg()[0],
    }


def calibrate_fallback(
    cache: V.EncodingCache, keys: list[str]
) -> tuple[tuple[float, ...], int, int]:
    """Median central HOG box as fractions of the image size, over images with a face."""
    fracs = []
    for k in keys:
        found = cache.get_detection(k)
        assert found is not None
        (w, h), boxes = found
        face = V.central_face([Face(box=b) for b in boxes], w, h)
        if face is not None:
            x, y, bw, bh = face.box
            fracs.append((x / w, y / h, bw / w, bh / h))
    med = tuple(round(float(v), 3) for v in np.median(np.array(fracs), axis=0))
    return med, len(fracs), len(keys) - len(fracs)


def bench_encoding(paths: list[Path], encoder: DlibEncoder, n: int) -> dict[str, float]:
    """Median ms of HOG (upsample 1) and of one encoding over ``n`` images, uncached."""
    import dlib

    hog = dlib.get_frontal_face_detector()
    det_ms, enc_ms = [], []
    for p in paths[:n]:
        img = V.load_rgb(p)
        t0 = time.perf_counter()
        rects = hog(img, 1)
        det_ms.append((time.perf_counter() - t0) * 1000)
        box = (
            (rects[0].left(), rects[0].top(), rects[0].width(), rects[0].height())
            if len(rects)
            else V.fallback_box(img.shape[1], img.shape[0])
        )
        t0 = time.perf_counter()
        encoder.encode(img, [Face(box=box)])
        enc_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "n": len(enc_ms),
        "hog_upsample1_ms_median": round(statistics.median(det_ms), 1),
        "encode_ms_median": round(statistics.median(enc_ms), 1),
    }


def evaluate(d: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict[str, object]:
    """Every number of the protocol for one set of pair distances."""
    per_fold = V.kfold_accuracy(d, same, folds)
    accs = [r.accuracy for r in per_fold]
    far_results = {}
    for far in FARS:
        rows = V.kfold_tar_at_far(d, same, folds, far)
        far_results[f"{far:g}"] = {
            "per_fold": [
                {"fold": r.fold, "threshold": round(r.threshold, 4), "tar": r.tar, "far": r.far}
                for r in rows
            ],
            "mean_tar": float(np.mean([r.tar for r in rows])),
            "mean_far_held_out": float(np.mean([r.far for r in rows])),
        }
    t_all = V.best_threshold(d, same)
    t_round = round(t_all, 2)
    grid = np.round(np.arange(0.30, 0.801, 0.01), 2)
    roc = []
    for t in grid:
        tar, far = V.tar_far(d, same, float(t))
        roc.append(
            {"threshold": float(t), "tar": tar, "far": far, "accuracy": V.accuracy(d, same, t)}
        )
    # ROC envelope: for each FAR level reached, the highest TAR (last point of the level)
    roc_env: dict[float, list[float]] = {}
    for thr, far, tar in V.roc_points(d, same):
        roc_env[far] = [round(thr, 4), round(far, 5), round(tar, 5)]
    return {
        "roc": list(roc_env.values()),
        "per_fold": [
            {
                "fold": r.fold,
                "threshold": round(r.threshold, 4),
                "accuracy": r.accuracy,
                "pairs": r.pairs,
            }
            for r in per_fold
        ],
        "mean_accuracy": float(np.mean(accs)),
        "std_accuracy": float(np.std(accs)),
        "tar_at_far": far_results,
        "threshold_all_folds": round(t_all, 4),
        "threshold_all_folds_rounded": t_round,
        "accuracy_all_folds_at_rounded": V.accuracy(d, same, t_round),
        "accuracy_at_default": V.accuracy(d, same, V.DEFAULT_THRESHOLD),
        "tar_far_at_default": V.tar_far(d, same, V.DEFAULT_THRESHOLD),
        "accuracy_at_0.6": V.accuracy(d, same, 0.6),
        "tar_far_at_0.6": V.tar_far(d, same, 0.6),
        "genuine_distance": {
            "mean": float(d[same].mean()),
            "p95": float(np.percentile(d[same], 95)),
            "max": float(d[same].max()),
        },
        "impostor_distance": {
            "mean": float(d[~same].mean()),
            "p5": float(np.percentile(d[~same], 5)),
            "min": float(d[~same].min()),
        },
        "roc_grid": roc,
    }


def write_markdown(out_dir: Path, md_path: Path) -> None:
    """docs/recognition-lfw.md: one table over all variant JSON files present."""
    results = []
    for p in sorted(out_dir.glob("*.json")):
        results.append(json.loads(p.read_text()))
    results.sort(key=lambda r: (r["settings"]["landmarks"], r["settings"]["num_jitters"]))
    lines = [
        "# LFW pairs subset: verification results",
        "",
        "Generated by `scripts/eval_verification.py` (do not edit; see docs/recognition.md "
        "for the protocol and the chosen threshold).",
        "",
        "Data: `../shared/datasets/lfw-pairs-subset`, LFW folds 1-3 (1,800 pairs, 900 "
        "genuine / 900 impostor, identity-disjoint folds), 250x250 grayscale LFW-a. Rule: "
        "same iff distance <= threshold. Accuracy: threshold chosen on the other two "
        "folds. TAR@FAR: threshold set on the other folds' 600 impostor pairs (at 0.1 % "
        "that allows 0 of them), TAR and FAR measured on the held-out fold (300 + 300).",
        "",
        "| variant | fold 1 | fold 2 | fold 3 | mean acc. | thresholds chosen | "
        "TAR@FAR=0.1 % (held-out FAR) | TAR@FAR=1 % (held-out FAR) | HOG fallbacks | "
        "ms/encoding |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        e = r["results"]
        folds = {f["fold"]: f for f in e["per_fold"]}
        cells = [f"{100 * folds[k]['accuracy']:.2f} %" if k in folds else "-" for k in (1, 2, 3)]
        ths = ", ".join(f"{f['threshold']:.3f}" for f in e["per_fold"])
        far = e["tar_at_far"]
        lines.append(
            f"| {r['variant']} | {' | '.join(cells)} | **{100 * e['mean_accuracy']:.2f} %** "
            f"| {ths} | {100 * far['0.001']['mean_tar']:.1f} % "
            f"({100 * far['0.001']['mean_far_held_out']:.2f} %) "
            f"| {100 * far['0.01']['mean_tar']:.1f} % "
            f"({100 * far['0.01']['mean_far_held_out']:.2f} %) "
            f"| {r['fallbacks']} / {r['images']} | {r['timing']['encode_ms_median']} |"
        )
    lines += ["", "## Per variant", ""]
    for r in results:
        e = r["results"]
        lines += [
            f"### {r['variant']}",
            "",
            f"- settings: `{json.dumps(r['settings'])}`",
            f"- threshold maximising accuracy on all 1,800 pairs: {e['threshold_all_folds']} "
            f"(rounded {e['threshold_all_folds_rounded']}: accuracy "
            f"{100 * e['accuracy_all_folds_at_rounded']:.2f} %)",
            f"- at 0.6 (dlib's published operating point): accuracy "
            f"{100 * e['accuracy_at_0.6']:.2f} %, TAR {100 * e['tar_far_at_0.6'][0]:.1f} %, "
            f"FAR {100 * e['tar_far_at_0.6'][1]:.2f} %",
            f"- genuine distances: mean {e['genuine_distance']['mean']:.3f}, 95th pct "
            f"{e['genuine_distance']['p95']:.3f}, max {e['genuine_distance']['max']:.3f}; "
            f"impostor: mean {e['impostor_distance']['mean']:.3f}, 5th pct "
            f"{e['impostor_distance']['p5']:.3f}, min {e['impostor_distance']['min']:.3f}",
            f"- pairs involving a fallback image: {r['fallback_pairs']['pairs']}, accuracy at "
            f"the all-folds threshold {100 * r['fallback_pairs']['accuracy']:.1f} %"
            if r["fallback_pairs"]["pairs"]
            else "- no pair involves a fallback image",
            f"- fallback box (fractions x, y, w, h): calibrated "
            f"{r['fallback_box_calibrated']}, used {r['fallback_box_used']}",
            f"- timing (median over {r['timing']['n']} images, uncached): HOG upsample 1 "
            f"{r['timing']['hog_upsample1_ms_median']} ms, encoding "
            f"{r['timing']['encode_ms_median']} ms; machine: {r['machine']['cpu']}, "
            f"{r['machine']['cores']} cores, load {r['machine']['load_avg_at_end']:.1f}",
            f"- command: `{r['command']}` ({r['date']})",
            "",
        ]
    md_path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-jitters", type=int, default=1)
    ap.add_argument("--landmarks", type=int, choices=(5, 68), default=5)
    ap.add_argument("--upsample", type=int, default=1)
    ap.add_argument("--runs", type=Path, default=REPO_ROOT / "runs" / "verification")
    ap.add_argument("--docs", type=Path, default=REPO_ROOT / "docs")
    ap.add_argument("--bench", type=int, default=40, help="images for the timing benchmark")
    args = ap.parse_args(argv)

    try:
        data = require("lfw-pairs-subset")
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    root = data / "images"
    pairs = V.load_pairs(data / "pairs.tsv")
    variant = f"{args.landmarks}pt-jitter{args.num_jitters}"
    if args.upsample != 1:
        variant += f"-up{args.upsample}"
    cache = V.EncodingCache(args.runs / f"cache-{variant}")
    enc_cls = Dlib68Encoder if args.landmarks == 68 else DlibEncoder
    encoder = enc_cls(num_jitters=args.num_jitters)
    pe = V.PairEncoder(upsample=args.upsample, cache=cache, encoder=encoder)

    keys = sorted({p.a for p in pairs} | {p.b for p in pairs})
    log(f"{variant}: {len(pairs)} pairs, {len(keys)} images")

    # 1. HOG on every image, then the fallback box from the images where HOG found a face.
    # Detections do not depend on the encoder settings: reuse any sibling cache's.
    up_suffix = f"-up{args.upsample}" if args.upsample != 1 else ""
    for sib in sorted(args.runs.glob("cache-*")):
        if sib != cache.dir and sib.name.endswith(up_suffix) and (sib / "index.json").is_file():
            if up_suffix or "-up" not in sib.name:
                other = V.EncodingCache(sib)
                for k in keys:
                    found = other.get_detection(k)
                    if found is not None and cache.get_detection(k) is None:
                        cache.put_detection(k, *found)
    t0 = time.perf_counter()
    for i, k in enumerate(keys, 1):
        if cache.get_detection(k) is None:
            img = V.load_rgb(root / k)
            cache.put_detection(k, (img.shape[1], img.shape[0]), [f.box for f in pe.detect(img)])
        if i % 500 == 0:
            cache.flush()
            log(f"detected {i}/{len(keys)}")
    cache.flush()
    calibrated, n_found, n_missing = calibrate_fallback(cache, keys)
    log(
        f"HOG found a face in {n_found}/{len(keys)} images ({time.perf_counter() - t0:.0f} s); "
        f"calibrated fallback box {calibrated}, in use {V.FALLBACK_BOX_FRACTIONS}"
    )

    # 2. encodings (cached, flushed every 50)
    t0 = time.perf_counter()
    for i, k in enumerate(keys, 1):
        pe.encode_file(root / k, key=k)
        if pe.encoded and pe.encoded % 50 == 0:
            cache.flush()
        if i % 200 == 0:
            rate = pe.encode_s / max(pe.encoded, 1) * 1000
            log(f"encoded {i}/{len(keys)} ({pe.encoded} new, {rate:.0f} ms each)")
    cache.flush()
    log(f"encodings done in {time.perf_counter() - t0:.0f} s ({pe.encoded} computed)")

    # 3. distances and the protocol
    d = np.array(
        [
            V.pair_distance(
                pe.encode_file(root / p.a, key=p.a).encoding,
                pe.encode_file(root / p.b, key=p.b).encoding,
            )
            for p in pairs
        ]
    )
    same = np.array([bool(p.same) for p in pairs])
    folds = np.array([p.fold for p in pairs])
    results = evaluate(d, same, folds)
    fb_mask = np.array([p.a in pe.fallbacks or p.b in pe.fallbacks for p in pairs])
    t_all = results["threshold_all_folds"]
    fb = {
        "pairs": int(fb_mask.sum()),
        "accuracy": V.accuracy(d[fb_mask], same[fb_mask], t_all) if fb_mask.any() else None,
    }
    log("timing benchmark")
    timing = bench_encoding(
        [root / k for k in keys[:: max(1, len(keys) // args.bench)]], encoder, args.bench
    )

    record = {
        "variant": variant,
        "settings": {
            "num_jitters": args.num_jitters,
            "landmarks": args.landmarks,
            "hog_upsample": args.upsample,
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python scripts/eval_verification.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "pairs": len(pairs),
        "images": len(keys),
        "fallbacks": len(pe.fallbacks),
        "fallback_images": sorted(pe.fallbacks),
        "fallback_box_calibrated": list(calibrated),
        "fallback_box_used": list(V.FALLBACK_BOX_FRACTIONS),
        "fallback_pairs": fb,
        "default_threshold": V.DEFAULT_THRESHOLD,
        "timing": timing,
        "results": results,
    }
    out_dir = args.docs / "recognition-lfw"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{variant}.json").write_text(json.dumps(record, indent=1) + "\n")
    # per-pair distances (for re-analysis) stay in runs/, not docs/
    (args.runs / f"distances-{variant}.json").write_text(
        json.dumps(
            [
                {"fold": p.fold, "a": p.a, "b": p.b, "same": p.same, "distance": float(x)}
                for p, x in zip(pairs, d, strict=True)
            ]
        )
    )
    write_markdown(out_dir, args.docs / "recognition-lfw.md")
    log(
        f"mean accuracy {100 * results['mean_accuracy']:.2f} % "
        f"(folds {[round(100 * f['accuracy'], 2) for f in results['per_fold']]}, "
        f"thresholds {[f['threshold'] for f in results['per_fold']]}); "
        f"TAR@FAR=0.1 % {100 * results['tar_at_far']['0.001']['mean_tar']:.1f} %, "
        f"TAR@FAR=1 % {100 * results['tar_at_far']['0.01']['mean_tar']:.1f} %; "
        f"fallbacks {len(pe.fallbacks)}; all-folds threshold {t_all}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
