"""Face verification on LFW pairs: the protocol, the encoder variants and the report.

The evaluation runs the product's code: faces found by dlib HOG as
:class:`pipeline.recognition.verify.PairEncoder` finds them, encoded by the pipeline's
:class:`pipeline.recognition.encoder.DlibEncoder` (``flip=True`` is the product's flip
averaging), the threshold protocol of :mod:`pipeline.recognition.verify`
(``kfold_accuracy``, ``kfold_tar_at_far``, ``best_threshold``). What lives here is the
evaluation's own part: the variants' knobs (landmark model, contrast normalisation,
fallback detector, learned metrics), the fold protocol around them (:func:`evaluate`,
:func:`choose_shrink`), the run (:func:`run_variant`) and the generated page
(:func:`write_markdown`). ``scripts/eval_verification.py`` is its command line.

Protocol (LFW "10-fold style" on the 3 folds the dataset holds, 1,800 pairs): for each
fold, the accuracy-maximising threshold is chosen on the other two folds and the held-out
fold is scored with it; the true-accept rate at a fixed false-accept rate (0.1 % and 1 %)
uses a threshold set on the other folds' impostor distances. Decision rule: same person
iff the Euclidean distance of the 128-d dlib encodings is <= threshold.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from pipeline import machine
from pipeline.boxes import iou_xywh
from pipeline.evaluation.common import log
from pipeline.recognition import verify as V
from pipeline.recognition.encoder import CHIP_PADDING, CHIP_SIZE, DlibEncoder, flip_average
from pipeline.record import Face

FARS = (0.001, 0.01)
# contrast normalisation, fixed before any measurement (OpenCV's usual values)
CLAHE_CLIP = 2.0
CLAHE_TILES = 8
# shrinkage candidates of the learned metrics (1.0: the plain Euclidean distance)
SHRINKS = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
# images (of those HOG finds) used to map a fallback detector's boxes to HOG's framing
MAP_SAMPLE = 200


# ----- encoders ---------------------------------------------------------------------------


# ``tint``: a gray image (R = G = B) coloured with the mean face colour of UTKFace, the
# product's `facepipe verify` default for gray images (V.tint_gray, V.GRAY_TINT); colour
# images are left as they are.
TINT_GAIN = V.GRAY_TINT


def preprocess_image(image: np.ndarray, kind: str) -> np.ndarray:
    """Contrast normalisation of an RGB image on its lightness (CIE Lab L) channel, or
    (``tint``) a gray image coloured with the mean face colour :data:`TINT_GAIN`."""
    if kind == "none":
        return image
    if kind == "tint":
        return V.tint_gray(image)
    import cv2

    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)
    light = np.ascontiguousarray(lab[..., 0])
    if kind == "clahe":
        clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(CLAHE_TILES, CLAHE_TILES))
        lab[..., 0] = clahe.apply(light)
    elif kind == "equalize":
        lab[..., 0] = cv2.equalizeHist(light)
    else:
        raise ValueError(f"unknown preprocessing {kind!r}")
    return np.ascontiguousarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


class VariantEncoder(DlibEncoder):
    """The pipeline's encoder with the evaluation's knobs.

    ``landmarks=68`` swaps in the 68-point model (iBUG 300-W, non-commercial: compared
    here only). ``view``: ``plain`` (one encoding), ``flip`` (the pipeline's
    ``DlibEncoder(flip=True)``) or ``mirror`` (only the mirrored chip's encoding, cached
    separately so that flip variants reuse the plain encodings).
    """

    def __init__(
        self,
        num_jitters: int = 1,
        landmarks: int = 5,
        preprocess: str = "none",
        view: str = "plain",
    ) -> None:
        if view not in ("plain", "flip", "mirror"):
            raise ValueError(f"unknown view {view!r}")
        super().__init__(num_jitters=num_jitters, flip=view == "flip")
        if landmarks == 68:
            import dlib
            import face_recognition_models as frm

            self._shape = dlib.shape_predictor(frm.pose_predictor_model_location())
        self.preprocess = preprocess
        self.view = view

    def encode_with_landmarks(
        self, image: np.ndarray, faces: list[Face]
    ) -> tuple[np.ndarray, list[list[tuple[float, float]]]]:
        return super().encode_with_landmarks(preprocess_image(image, self.preprocess), faces)

    def _descriptor(self, image: np.ndarray, shape: object) -> np.ndarray:
        if self.view != "mirror":
            return super()._descriptor(image, shape)
        import dlib

        chip = dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        mirror = np.ascontiguousarray(chip[:, ::-1])
        return np.asarray(self._net.compute_face_descriptor(mirror, self.num_jitters))


class MeanEncoder(DlibEncoder):
    """The mean of several encoders' encodings (for the timing of ``--landmarks 5+68``)."""

    def __init__(self, encoders: list[DlibEncoder]) -> None:
        self.encoders = encoders

    def encode(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        return np.mean([e.encode(image, faces) for e in self.encoders], axis=0)


def encode_all(
    keys: list[str],
    root: Path,
    boxes: dict[str, tuple[int, int, int, int]],
    encoder: DlibEncoder,
    cache: V.EncodingCache,
    label: str,
) -> dict[str, np.ndarray]:
    """Every image's encoding for its box, from the cache or computed (flushed every 50)."""
    out: dict[str, np.ndarray] = {}
    computed, spent = 0, 0.0
    for i, k in enumerate(keys, 1):
        enc = cache.get(k, boxes[k])
        if enc is None:
            img = V.load_rgb(root / k)
            t0 = time.perf_counter()
            enc = encoder.encode(img, [Face(box=boxes[k])])[0]
            spent += time.perf_counter() - t0
            cache.put(k, boxes[k], enc)
            computed += 1
            if computed % 50 == 0:
                cache.flush()
        out[k] = np.asarray(enc, dtype=np.float64)
        if i % 200 == 0 and computed:
            log(f"{label}: {i}/{len(keys)} ({computed} new, {spent / computed * 1000:.0f} ms each)")
    cache.flush()
    log(f"{label}: done ({computed} computed)")
    return out


# ----- face boxes -------------------------------------------------------------------------


def _upsample_of(name: str) -> int:
    m = re.search(r"-up(\d+)", name)
    return int(m.group(1)) if m else 1


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


def detector_boxes(name: str, root: Path, keys: list[str], path: Path) -> dict[str, list]:
    """All faces ``name`` (a facepipe detector backend) finds in these images, cached."""
    found: dict[str, list] = json.loads(path.read_text()) if path.is_file() else {}
    todo = [k for k in keys if k not in found]
    if todo:
        from pipeline.detectors import registry

        det = registry.create(name)
        for k in todo:
            found[k] = [list(f.box) for f in det.detect(V.load_rgb(root / k))]
        path.write_text(json.dumps(found))
    return found


def _centre_size(box: tuple[int, ...] | list[int]) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return x + w / 2.0, y + h / 2.0, float(w), float(h)


def fit_box_map(pairs_of_boxes: list[tuple[list[int], tuple[int, ...]]]) -> list[float]:
    """Median (centre offset x, y in detector-box units, width and height ratio) that maps a
    detector's box onto HOG's box of the same face (pairs: detector box, HOG box)."""
    rows = []
    for det, hog in pairs_of_boxes:
        dx, dy, dw, dh = _centre_size(det)
        hx, hy, hw, hh = _centre_size(hog)
        rows.append(((hx - dx) / dw, (hy - dy) / dh, hw / dw, hh / dh))
    return [round(float(v), 4) for v in np.median(np.array(rows), axis=0)]


def apply_box_map(box: list[int], m: list[float], width: int, height: int) -> tuple[int, ...]:
    cx, cy, w, h = _centre_size(box)
    w2, h2 = m[2] * w, m[3] * h
    x = cx + m[0] * w - w2 / 2.0
    y = cy + m[1] * h - h2 / 2.0
    face = Face(box=(int(round(x)), int(round(y)), int(round(w2)), int(round(h2))))
    return face.clipped(width, height).box


# ----- learned metrics (fitted on training folds only) -----------------------------------


def identity(key: str) -> str:
    """LFW image path -> person (``Name/Name_0001.jpg`` -> ``Name``)."""
    return key.split("/")[0]


def fit_metric(x: np.ndarray, labels: list[str], kind: str, shrink: float) -> np.ndarray:
    """``W``: encodings are compared by ``|(a - b) @ W|`` (a Mahalanobis distance).

    ``W = C^(-1/2) sqrt(tr(C)/d)`` with ``C`` the covariance of the training encodings
    (``pca-whiten``) or of their deviations from their identity's mean (``wccn``,
    identities with >= 2 images), shrunk towards a multiple of the identity,
    ``(1 - s) C + s tr(C)/d I``; the scaling keeps distances on the Euclidean scale, and
    ``s = 1`` gives ``W = I``, the plain Euclidean distance.
    """
    mean = x.mean(axis=0)
    if kind == "pca-whiten":
        dev = x - mean
    elif kind == "wccn":
        groups: dict[str, list[int]] = defaultdict(list)
        for i, lab in enumerate(labels):
            groups[lab].append(i)
        parts = [x[ix] - x[ix].mean(axis=0) for ix in groups.values() if len(ix) >= 2]
        if not parts:
            raise ValueError("wccn needs identities with at least two images")
        dev = np.concatenate(parts)
    else:
        raise ValueError(f"unknown metric {kind!r}")
    cov = dev.T @ dev / len(dev)
    d = cov.shape[0]
    scale = np.trace(cov) / d
    cov = (1.0 - shrink) * cov + shrink * scale * np.eye(d)
    evals, evecs = np.linalg.eigh(cov)
    return evecs @ np.diag(np.sqrt(scale / np.maximum(evals, 1e-12))) @ evecs.T


def metric_distances(
    kind: str,
    enc: dict[str, np.ndarray],
    pairs: list[V.Pair],
    fit_folds: set[int],
    shrink: float,
) -> np.ndarray:
    """Distances of all pairs with the metric fitted on the images of ``fit_folds``' pairs."""
    train = sorted({k for p in pairs if p.fold in fit_folds for k in (p.a, p.b)})
    w = fit_metric(np.stack([enc[k] for k in train]), [identity(k) for k in train], kind, shrink)
    a = np.stack([enc[p.a] for p in pairs])
    b = np.stack([enc[p.b] for p in pairs])
    return np.linalg.norm((a - b) @ w, axis=1)


def choose_shrink(
    kind: str, enc: dict[str, np.ndarray], pairs: list[V.Pair], train_folds: list[int]
) -> tuple[float, dict[str, float]]:
    """Shrinkage by inner cross-validation on the training folds only: fit the metric and
    its threshold on one training fold, score the other, both ways; ties -> more shrinkage."""
    same = np.array([bool(p.same) for p in pairs])
    folds = np.array([p.fold for p in pairs])
    scores: dict[str, float] = {}
    for s in SHRINKS:
        accs = []
        for inner_test in train_folds:
            fit = [f for f in train_folds if f != inner_test]
            d = metric_distances(kind, enc, pairs, set(fit), s)
            on_fit = np.isin(folds, fit)
            t = V.best_threshold(d[on_fit], same[on_fit])
            test = folds == inner_test
            accs.append(V.accuracy(d[test], same[test], t))
        scores[f"{s:g}"] = float(np.mean(accs))
    best = max(SHRINKS, key=lambda s: (round(scores[f"{s:g}"], 9), s))
    return best, scores


# ----- evaluation -------------------------------------------------------------------------


def bench_encoding(
    paths: list[Path],
    boxes: list[tuple[int, int, int, int]],
    encoder: DlibEncoder,
    plain: DlibEncoder,
) -> dict[str, float]:
    """Median ms of HOG (upsample 1), of one plain encoding and of the variant's encoding,
    interleaved on the same images (so both see the same machine load), uncached, and the
    median per-image ratio variant / plain."""
    import dlib

    hog = dlib.get_frontal_face_detector()
    det_ms, plain_ms, enc_ms = [], [], []
    for p, box in zip(paths, boxes, strict=True):
        img = V.load_rgb(p)
        t0 = time.perf_counter()
        hog(img, 1)
        det_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        plain.encode(img, [Face(box=box)])
        plain_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        encoder.encode(img, [Face(box=box)])
        enc_ms.append((time.perf_counter() - t0) * 1000)
    return {
        "n": len(enc_ms),
        "hog_upsample1_ms_median": round(statistics.median(det_ms), 1),
        "plain_encode_ms_median": round(statistics.median(plain_ms), 1),
        "encode_ms_median": round(statistics.median(enc_ms), 1),
        # median of the per-image ratios: robust to the load changing during the benchmark
        "cost_vs_plain": round(
            statistics.median(e / p for e, p in zip(enc_ms, plain_ms, strict=True)), 2
        ),
    }


def evaluate(
    d: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    per_fold: dict[int, np.ndarray] | None = None,
    fixed_points: bool = True,
    default: float = V.DEFAULT_THRESHOLD,
) -> dict[str, object]:
    """Every number of the protocol for one set of pair distances.

    ``per_fold[f]``: the distances to use when fold ``f`` is held out (a metric fitted on the
    other folds); the held-out figures then come from them, the descriptive ones from ``d``.
    """
    fold_ids = sorted(set(folds.tolist()))
    per_fold = per_fold or {f: d for f in fold_ids}

    def held(rows: list, f: int) -> object:
        return next(r for r in rows if r.fold == f)

    accs_rows = [held(V.kfold_accuracy(per_fold[f], same, folds), f) for f in fold_ids]
    accs = [r.accuracy for r in accs_rows]
    far_results = {}
    for far in FARS:
        rows = [held(V.kfold_tar_at_far(per_fold[f], same, folds, far), f) for f in fold_ids]
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
    t_far1 = V.threshold_at_far(d[~same], 0.01)
    t_far1_round = round(t_far1, 2)
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
    out: dict[str, object] = {
        "roc": list(roc_env.values()),
        "per_fold": [
            {
                "fold": r.fold,
                "threshold": round(r.threshold, 4),
                "accuracy": r.accuracy,
                "pairs": r.pairs,
            }
            for r in accs_rows
        ],
        "mean_accuracy": float(np.mean(accs)),
        "std_accuracy": float(np.std(accs)),
        "errors_held_out": int(sum(round((1 - r.accuracy) * r.pairs) for r in accs_rows)),
        "tar_at_far": far_results,
        "threshold_all_folds": round(t_all, 4),
        "threshold_all_folds_rounded": t_round,
        "accuracy_all_folds_at_rounded": V.accuracy(d, same, t_round),
        "threshold_far_0.01_all_folds": round(t_far1, 4),
        "threshold_far_0.01_all_folds_rounded": t_far1_round,
        "tar_far_at_far_0.01_rounded": V.tar_far(d, same, t_far1_round),
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
    if fixed_points:  # the pipeline's thresholds mean something for plain distances only
        out.update(
            {
                "accuracy_at_default": V.accuracy(d, same, default),
                "tar_far_at_default": V.tar_far(d, same, default),
                "accuracy_at_0.6": V.accuracy(d, same, 0.6),
                "tar_far_at_0.6": V.tar_far(d, same, 0.6),
            }
        )
    return out


# ----- the generated page -----------------------------------------------------------------

_PRE = {"none": 0, "clahe": 1, "equalize": 2, "tint": 3}
_FB = {"box": 0, "mtcnn": 1, "blazeface": 2}
_MET = {"euclidean": 0, "pca-whiten": 1, "wccn": 2}


def _settings(r: dict) -> dict:
    s = dict(r["settings"])
    s.setdefault("flip", False)
    s.setdefault("preprocess", "none")
    s.setdefault("fallback", "box")
    s.setdefault("metric", "euclidean")
    return s


def _sort_key(r: dict) -> tuple:
    s = _settings(r)
    return (
        _MET[s["metric"]],
        {5: 0, 68: 1}.get(s["landmarks"], 2),
        s["num_jitters"],
        s.get("hog_upsample", 1),
        _PRE[s["preprocess"]],
        _FB[s["fallback"]],
        s["flip"],
    )


def _load(m: dict) -> float:
    """The 1-minute load of a record's machine at the end of its run."""
    if "load_avg_at_end" in m:  # older records
        return float(m["load_avg_at_end"])
    return float(m.get("loadavg_end", m.get("loadavg_start", [0.0]))[0])


def write_markdown(out_dir: Path, md_path: Path) -> None:
    """docs/recognition-lfw.md: one table over all variant JSON files present."""
    results = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*.json"))]
    results.sort(key=_sort_key)
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
        "Variant names: `5pt`/`68pt` landmark model, `jitterN` dlib re-samplings, `-clahe`/"
        "`-equalize` contrast normalisation before encoding, `-tint` the gray image coloured "
        "with UTKFace's mean face colour, `-mtcnn`/`-blazeface` that "
        "detector's box for the images HOG misses, `-flip` flip-averaged encodings "
        "(chip + mirror), `-pca-whiten`/`-wccn` a metric **re-fitted for every held-out "
        "fold on the other two folds only** (Euclidean distance after a learned linear "
        "map; full shrinkage is the plain distance). Cost: median time of the variant's encoding "
        "divided by one plain 5-point encoding, measured interleaved on the same images.",
        "",
        "| variant | fold 1 | fold 2 | fold 3 | mean acc. | errors / 1,800 | thresholds chosen | "
        "TAR@FAR=0.1 % (held-out FAR) | TAR@FAR=1 % (held-out FAR) | fixed-box fallbacks | "
        "ms/encoding | cost vs 1 encoding |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        e = r["results"]
        folds = {f["fold"]: f for f in e["per_fold"]}
        cells = [f"{100 * folds[k]['accuracy']:.2f} %" if k in folds else "-" for k in (1, 2, 3)]
        ths = ", ".join(f"{f['threshold']:.3f}" for f in e["per_fold"])
        errors = e.get("errors_held_out")
        if errors is None:
            errors = int(sum(round((1 - f["accuracy"]) * f["pairs"]) for f in e["per_fold"]))
        far = e["tar_at_far"]
        cost = r["timing"].get("cost_vs_plain")
        lines.append(
            f"| {r['variant']} | {' | '.join(cells)} | **{100 * e['mean_accuracy']:.2f} %** "
            f"| {errors} | {ths} | {100 * far['0.001']['mean_tar']:.1f} % "
            f"({100 * far['0.001']['mean_far_held_out']:.2f} %) "
            f"| {100 * far['0.01']['mean_tar']:.1f} % "
            f"({100 * far['0.01']['mean_far_held_out']:.2f} %) "
            f"| {r['fallbacks']} / {r['images']} | {r['timing']['encode_ms_median']} "
            f"| {'-' if cost is None else f'{cost:.2f}x'} |"
        )
    lines += ["", "## Per variant", ""]
    for r in results:
        e = r["results"]
        s = _settings(r)
        lines += [
            f"### {r['variant']}",
            "",
            f"- settings: `{json.dumps(r['settings'])}`",
            f"- threshold maximising accuracy on all 1,800 pairs: {e['threshold_all_folds']} "
            f"(rounded {e['threshold_all_folds_rounded']}: accuracy "
            f"{100 * e['accuracy_all_folds_at_rounded']:.2f} %)",
        ]
        if "threshold_far_0.01_all_folds" in e:
            tar1, far1 = e["tar_far_at_far_0.01_rounded"]
            lines.append(
                f"- FAR 1 % operating point on all 1,800 pairs: {e['threshold_far_0.01_all_folds']}"
                f" (rounded {e['threshold_far_0.01_all_folds_rounded']}: TAR {100 * tar1:.1f} %, "
                f"FAR {100 * far1:.2f} %)"
            )
        if "accuracy_at_0.6" in e:
            lines.append(
                f"- at 0.6 (dlib's published operating point): accuracy "
                f"{100 * e['accuracy_at_0.6']:.2f} %, TAR {100 * e['tar_far_at_0.6'][0]:.1f} %, "
                f"FAR {100 * e['tar_far_at_0.6'][1]:.2f} %"
            )
        lines += [
            f"- genuine distances: mean {e['genuine_distance']['mean']:.3f}, 95th pct "
            f"{e['genuine_distance']['p95']:.3f}, max {e['genuine_distance']['max']:.3f}; "
            f"impostor: mean {e['impostor_distance']['mean']:.3f}, 5th pct "
            f"{e['impostor_distance']['p5']:.3f}, min {e['impostor_distance']['min']:.3f}",
            f"- pairs involving a fixed-box fallback image: {r['fallback_pairs']['pairs']}, "
            f"accuracy at the all-folds threshold {100 * r['fallback_pairs']['accuracy']:.1f} %"
            if r["fallback_pairs"]["pairs"]
            else "- no pair involves a fixed-box fallback image",
            f"- fallback box (fractions x, y, w, h): calibrated "
            f"{r['fallback_box_calibrated']}, used {r['fallback_box_used']}",
        ]
        det = r.get("fallback_detector")
        if det:
            lines.append(
                f"- {s['fallback']} for the {det['hog_misses']} images HOG misses: found the "
                f"central face in {det['found']}; box map (centre dx, dy, w, h ratio) "
                f"{det['box_map']} fitted on {det['map_images']} images both detectors find"
            )
        fx = r.get("flip_extras")
        if fx:
            lines.append(
                f"- flip without renormalisation (plain mean of the two encodings): mean "
                f"held-out accuracy {100 * fx['plain_mean_accuracy']:.2f} %; one side flipped, "
                f"the other plain (a flip-encoded probe against a plain gallery): "
                f"{100 * fx['mixed_accuracy']:.2f} % (thresholds "
                f"{', '.join(f'{t:.3f}' for t in fx['mixed_thresholds'])}); encoder check: "
                f"`DlibEncoder(flip=True)` vs the cached chip + mirror encodings, largest "
                f"difference {fx['encoder_check_max_abs_diff']:.1e}"
            )
        mx = r.get("metric_fit")
        if mx:
            lines.append(
                "- metric fitted per held-out fold on the other two folds' images: "
                + "; ".join(
                    f"fold {m['held_out']}: {m['train_images']} images, {m['train_identities']} "
                    f"identities, shrinkage {m['shrink']} (inner CV)"
                    for m in mx
                )
            )
        t = r["timing"]
        plain = (
            f", plain encoding {t['plain_encode_ms_median']} ms (interleaved)"
            if "plain_encode_ms_median" in t
            else ""
        )
        lines += [
            f"- timing (median over {t['n']} images, uncached): HOG upsample 1 "
            f"{t['hog_upsample1_ms_median']} ms, encoding {t['encode_ms_median']} ms{plain}; "
            f"machine: {r['machine']['cpu']}, {r['machine']['cores']} cores, load "
            f"{_load(r['machine']):.1f}",
            f"- command: `{r['command']}` ({r['date']})",
            "",
        ]
    md_path.write_text("\n".join(lines))


# ----- colour video check -----------------------------------------------------------------

# the Hamilton clip's shots (cuts at frames 20, 82, 211) and who is on screen: Lin stands in
# the first and is filmed close in the third, Alex plays the piano in the first (26 px) and
# is in profile in the second; the fourth shows the audience (strangers)
HAMILTON_SHOTS = (
    ("1: Lin standing, Alex at the piano", 0, 19, ("lin-manuel-miranda", "alex-lacamoire")),
    ("2: Alex in profile", 20, 81, ("alex-lacamoire",)),
    ("3: Lin close", 82, 210, ("lin-manuel-miranda",)),
    ("4: audience", 211, 10**9, ()),
)


def hamilton_check(video_dir: Path, every: int, out: Path) -> dict[str, object]:
    """Per-frame distances of every face the pipeline's detector finds in the Hamilton clip
    (colour video) to the two enrolled photos, with plain and flip-averaged encodings.

    The gallery is encoded like the pipeline's enrolment (10 jitters), probes like its
    recognize stage (1 jitter, faces under 80 px upscaled); per shot: the smallest distance
    and how many faces fall within 0.58 and 0.60 of each person. No per-face labels: in
    shots 2-4 one person (or nobody known) is on screen, in shot 1 both are.
    """
    import cv2

    from pipeline.detectors import registry
    from pipeline.recognition.enroll import find_one_face, read_rgb

    people = ("lin-manuel-miranda", "alex-lacamoire")
    det = registry.create("blazeface", {"tile_size": 384})
    modes = {
        "plain": (DlibEncoder(), DlibEncoder(num_jitters=10)),
        "flip": (DlibEncoder(flip=True), DlibEncoder(num_jitters=10, flip=True)),
    }
    gallery = {}
    for mode, (_, enroll) in modes.items():
        for person in people:
            img = read_rgb(video_dir / "known" / f"{person}.png")
            gallery[mode, person] = enroll.encode(img, [find_one_face(img, person)])[0]
    cap = cv2.VideoCapture(str(video_dir / "short_hamilton_clip.mp4"))
    faces = []
    frame_no = -1
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frame_no += 1
        if frame_no % every:
            continue
        rgb = np.ascontiguousarray(frame[:, :, ::-1])
        for face in det.detect(rgb):
            row: dict[str, object] = {"frame": frame_no, "box": list(face.box)}
            for mode, (probe, _) in modes.items():
                e = probe.encode(rgb, [face])[0]
                for person in people:
                    row[f"{mode}:{person}"] = V.pair_distance(e, gallery[mode, person])
                if mode == "flip":  # a flip-averaged probe against the plain gallery
                    for person in people:
                        row[f"mixed:{person}"] = V.pair_distance(e, gallery["plain", person])
            faces.append(row)
    shots = []
    for name, lo, hi, present in HAMILTON_SHOTS:
        rows = [r for r in faces if lo <= r["frame"] <= hi]
        stats = {}
        for mode in ("plain", "flip", "mixed"):
            for person in people:
                d = sorted(float(r[f"{mode}:{person}"]) for r in rows)  # type: ignore[arg-type]
                stats[f"{mode}:{person}"] = {
                    "min": round(d[0], 3) if d else None,
                    "median": round(d[len(d) // 2], 3) if d else None,
                    "within_0.58": sum(x <= 0.58 for x in d),
                    "within_0.60": sum(x <= 0.60 for x in d),
                }
        shots.append({"shot": name, "faces": len(rows), "on_screen": list(present), **stats})
    result = {"every_nth_frame": every, "faces": len(faces), "shots": shots, "per_face": faces}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for sh in shots:
        log(f"shot {sh['shot']} ({sh['faces']} faces)")
        for k, v in sh.items():
            if ":" in k:
                log(f"    {k:28s} {v}")
    return result


@dataclass(frozen=True)
class Variant:
    """One encoder/protocol setting (the command line's options)."""

    num_jitters: int = 1
    landmarks: str = "5"  # "5", "68" or "5+68" (the mean of the two alignments)
    upsample: int = 1
    flip: bool = False
    preprocess: str = "none"  # none | clahe | equalize | tint
    fallback: str = "box"  # box | mtcnn | blazeface
    metric: str = "euclidean"  # euclidean | pca-whiten | wccn


def _dlib_version() -> str:
    import dlib

    return str(dlib.__version__)


def detect_faces(
    keys: list[str], root: Path, cache: V.EncodingCache, runs: Path, upsample: int = 1
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, ...]]]:
    """HOG (as :class:`V.PairEncoder` runs it) on every image, stored in ``cache``.

    Detections do not depend on the encoder settings: any sibling ``runs/cache-*`` with the
    same upsampling lends its detections. Returns each image's ``(width, height)`` and the
    central HOG face's box of the images where HOG found one.
    """
    pe = V.PairEncoder(upsample=upsample, cache=cache, encoder=object())
    for sib in sorted(runs.glob("cache-*")):
        if (
            sib != cache.dir
            and _upsample_of(sib.name) == upsample
            and (sib / "index.json").is_file()
        ):
            other = V.EncodingCache(sib)
            for k in keys:
                found = other.get_detection(k)
                if found is not None and cache.get_detection(k) is None:
                    cache.put_detection(k, *found)
    for i, k in enumerate(keys, 1):
        if cache.get_detection(k) is None:
            img = V.load_rgb(root / k)
            cache.put_detection(k, (img.shape[1], img.shape[0]), [f.box for f in pe.detect(img)])
        if i % 500 == 0:
            cache.flush()
            log(f"detected {i}/{len(keys)}")
    cache.flush()
    sizes: dict[str, tuple[int, int]] = {}
    hog_box: dict[str, tuple[int, ...]] = {}
    for k in keys:
        (w, h), found = cache.get_detection(k)  # type: ignore[misc]
        sizes[k] = (w, h)
        face = V.central_face([Face(box=b) for b in found], w, h)
        if face is not None:
            hog_box[k] = face.box
    return sizes, hog_box


def lfw_encodings(
    data: Path,
    runs: Path,
    num_jitters: int = 1,
    keys: list[str] | None = None,
    cached_only: bool = False,
) -> dict[str, np.ndarray]:
    """The product encoder's encodings (5-point, ``num_jitters``, no flip) of LFW images.

    The faces are the verification protocol's: HOG's central face, else the fixed
    fallback box. Cached under ``runs/cache-5pt-jitter<N>``, the directory
    :func:`run_variant` uses for the same settings (so either run fills it for the other).
    ``keys``: the images (paths under ``data/images``); default every image of the pairs.
    ``cached_only``: return the encodings already cached, compute none.
    """
    root = data / "images"
    if keys is None:
        pairs = V.load_pairs(data / "pairs.tsv")
        keys = sorted({p.a for p in pairs} | {p.b for p in pairs})
    runs.mkdir(parents=True, exist_ok=True)
    cache = V.EncodingCache(runs / f"cache-5pt-jitter{num_jitters}")
    sizes, hog_box = detect_faces(keys, root, cache, runs)
    boxes = {k: hog_box[k] if k in hog_box else V.fallback_box(*sizes[k]) for k in keys}
    if cached_only:
        found = {k: cache.get(k, boxes[k]) for k in keys}  # type: ignore[arg-type]
        return {k: np.asarray(v, dtype=np.float64) for k, v in found.items() if v is not None}
    encoder = DlibEncoder(num_jitters=num_jitters)  # what `facepipe enroll` builds
    return encode_all(keys, root, boxes, encoder, cache, f"jitter{num_jitters} encoded")


def run_variant(
    v: Variant, data: Path, runs: Path, docs: Path, bench: int = 40, command: str = ""
) -> dict[str, object]:
    """Evaluate one variant on the LFW pairs subset at ``data``.

    Encodings are cached under ``runs`` (``cache-<settings>``; the mirrored chips' in
    ``cache-<settings>-mirror``); writes ``docs/recognition-lfw/<variant>.json``,
    regenerates ``docs/recognition-lfw.md`` and returns the record.
    """
    started = machine.info(dlib=_dlib_version(), numpy=np.__version__)  # load at the start
    root = data / "images"
    pairs = V.load_pairs(data / "pairs.tsv")
    lms = [int(n) for n in v.landmarks.split("+")]
    suffix = f"-jitter{v.num_jitters}"
    if v.upsample != 1:
        suffix += f"-up{v.upsample}"
    if v.preprocess != "none":
        suffix += f"-{v.preprocess}"
    enc_name = f"{lms[0]}pt{suffix}"  # the (first) encoder's cache, which also holds HOG's boxes
    variant = f"{v.landmarks}pt{suffix}"
    if v.fallback != "box":
        variant += f"-{v.fallback}"
    if v.flip:
        variant += "-flip"
    if v.metric != "euclidean":
        variant += f"-{v.metric}"
    runs.mkdir(parents=True, exist_ok=True)
    cache = V.EncodingCache(runs / f"cache-{enc_name}")

    keys = sorted({p.a for p in pairs} | {p.b for p in pairs})
    log(f"{variant}: {len(pairs)} pairs, {len(keys)} images")

    # 1. HOG on every image, then the fallback box from the images where HOG found a face.
    t0 = time.perf_counter()
    sizes, hog_box = detect_faces(keys, root, cache, runs, v.upsample)
    calibrated, n_found, n_missing = calibrate_fallback(cache, keys)
    log(
        f"HOG found a face in {n_found}/{len(keys)} images ({time.perf_counter() - t0:.0f} s); "
        f"calibrated fallback box {calibrated}, in use {V.FALLBACK_BOX_FRACTIONS}"
    )
    boxes: dict[str, tuple[int, int, int, int]] = {}
    misses = [k for k in keys if k not in hog_box]

    # 1b. another detector for the images HOG misses (its boxes mapped to HOG's framing)
    det_info = None
    if v.fallback != "box":
        sample = [k for k in keys if k in hog_box][:: max(1, n_found // MAP_SAMPLE)]
        found_det = detector_boxes(
            v.fallback, root, misses + sample, runs / f"boxes-{v.fallback}.json"
        )
        matched = []
        for k in sample:
            w, h = sizes[k]
            f = V.central_face([Face(box=tuple(b)) for b in found_det[k]], w, h)
            if f is not None and iou_xywh(f.box, hog_box[k]) > 0.3:
                matched.append((list(f.box), hog_box[k]))
        box_map = fit_box_map(matched)
        n_det = 0
        for k in misses:
            w, h = sizes[k]
            mapped = [Face(box=apply_box_map(b, box_map, w, h)) for b in found_det[k]]
            f = V.central_face([m for m in mapped if m.box[2] > 0 and m.box[3] > 0], w, h)
            if f is not None:
                hog_box[k] = f.box
                n_det += 1
        det_info = {
            "hog_misses": len(misses),
            "found": n_det,
            "box_map": box_map,
            "map_images": len(matched),
        }
        log(f"{v.fallback}: central face in {n_det}/{len(misses)} HOG misses, map {box_map}")
    fallbacks = sorted(k for k in keys if k not in hog_box)
    for k in keys:
        boxes[k] = hog_box[k] if k in hog_box else V.fallback_box(*sizes[k])  # type: ignore[assignment]

    # 2. encodings: plain (and the mirrored chips' for --flip), cached
    t0 = time.perf_counter()
    per_lm: list[dict[str, np.ndarray]] = []
    for lm in lms:
        kw = {"num_jitters": v.num_jitters, "landmarks": lm, "preprocess": v.preprocess}
        lm_cache = cache if lm == lms[0] else V.EncodingCache(runs / f"cache-{lm}pt{suffix}")
        plain_vectors = encode_all(
            keys, root, boxes, VariantEncoder(**kw, view="plain"), lm_cache, f"{lm}pt encoded"
        )
        if v.flip:
            mirror_cache = V.EncodingCache(runs / f"cache-{lm}pt{suffix}-mirror")
            mirror = VariantEncoder(**kw, view="mirror")
            mir = encode_all(keys, root, boxes, mirror, mirror_cache, f"{lm}pt mirrored")
            per_lm.append({k: flip_average(plain_vectors[k], mir[k]) for k in keys})
        else:
            per_lm.append(plain_vectors)
    # one landmark model: its encodings; 5+68: the plain mean of the two alignments'
    enc = per_lm[0] if len(lms) == 1 else {k: np.mean([e[k] for e in per_lm], axis=0) for k in keys}
    log(f"encodings ready in {time.perf_counter() - t0:.0f} s")

    # 3. distances and the protocol
    same = np.array([bool(p.same) for p in pairs])
    folds = np.array([p.fold for p in pairs])
    fold_ids = sorted(set(folds.tolist()))

    def euclid(vectors: dict[str, np.ndarray]) -> np.ndarray:
        return np.array([V.pair_distance(vectors[p.a], vectors[p.b]) for p in pairs])

    metric_fit = None
    # the threshold facepipe ships for this encoder setting (meaningful for 5-point only)
    shipped = V.calibrated_threshold(v.num_jitters, v.flip)
    if v.metric == "euclidean":
        d = euclid(enc)
        results = evaluate(d, same, folds, default=shipped)
    else:
        per_fold: dict[int, np.ndarray] = {}
        metric_fit = []
        d = np.empty(len(pairs))
        for f in fold_ids:
            train_folds = [g for g in fold_ids if g != f]
            shrink, scores = choose_shrink(v.metric, enc, pairs, train_folds)
            per_fold[f] = metric_distances(v.metric, enc, pairs, set(train_folds), shrink)
            d[folds == f] = per_fold[f][folds == f]
            train_imgs = {k for p in pairs if p.fold != f for k in (p.a, p.b)}
            test_imgs = {k for p in pairs if p.fold == f for k in (p.a, p.b)}
            assert not train_imgs & test_imgs, "an image in both the training and held-out folds"
            metric_fit.append(
                {
                    "held_out": f,
                    "shrink": shrink,
                    "inner_cv_accuracy": scores,
                    "train_images": len(train_imgs),
                    "train_identities": len({identity(k) for k in train_imgs}),
                }
            )
            log(f"{v.metric}: fold {f} held out, shrinkage {shrink} (inner CV {scores})")
        # descriptive figures: each pair's distance under the metric not fitted on its fold
        results = evaluate(d, same, folds, per_fold=per_fold, fixed_points=False)
    fb_mask = np.array([p.a in fallbacks or p.b in fallbacks for p in pairs])
    t_all = results["threshold_all_folds"]
    fb = {
        "pairs": int(fb_mask.sum()),
        "accuracy": V.accuracy(d[fb_mask], same[fb_mask], t_all) if fb_mask.any() else None,
    }

    flip_extras = None
    bench_keys = keys[:: max(1, len(keys) // bench)][:bench]
    if v.flip and len(lms) == 1:
        plain_mean = {k: (plain_vectors[k] + mir[k]) / 2.0 for k in keys}
        mixed = np.array([V.pair_distance(enc[p.a], plain_vectors[p.b]) for p in pairs])
        mixed_rows = V.kfold_accuracy(mixed, same, folds)
        flip_extras = {
            "plain_mean_accuracy": evaluate(euclid(plain_mean), same, folds)["mean_accuracy"],
            "mixed_accuracy": float(np.mean([r.accuracy for r in mixed_rows])),
            "mixed_thresholds": [round(r.threshold, 4) for r in mixed_rows],
        }
    log("timing benchmark")
    view = "flip" if v.flip else "plain"
    bench_enc: DlibEncoder = (
        VariantEncoder(v.num_jitters, lms[0], v.preprocess, view)
        if len(lms) == 1
        else MeanEncoder([VariantEncoder(v.num_jitters, lm, v.preprocess, view) for lm in lms])
    )
    timing = bench_encoding(
        [root / k for k in bench_keys], [boxes[k] for k in bench_keys], bench_enc, DlibEncoder()
    )
    if flip_extras is not None:
        # the product encoder gives what the evaluation computed from the two caches
        diffs = [
            float(
                np.abs(
                    bench_enc.encode(V.load_rgb(root / k), [Face(box=boxes[k])])[0] - enc[k]
                ).max()
            )
            for k in bench_keys[:10]
        ]
        flip_extras["encoder_check_max_abs_diff"] = max(diffs)

    record = {
        "variant": variant,
        "settings": {
            "num_jitters": v.num_jitters,
            "landmarks": lms[0] if len(lms) == 1 else v.landmarks,
            "hog_upsample": v.upsample,
            "flip": v.flip,
            "preprocess": v.preprocess,
            "fallback": v.fallback,
            "metric": v.metric,
        },
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": {**started, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "pairs": len(pairs),
        "images": len(keys),
        "fallbacks": len(fallbacks),
        "fallback_images": fallbacks,
        "fallback_box_calibrated": list(calibrated),
        "fallback_box_used": list(V.FALLBACK_BOX_FRACTIONS),
        "fallback_pairs": fb,
        "fallback_detector": det_info,
        "flip_extras": flip_extras,
        "metric_fit": metric_fit,
        "default_threshold": shipped,
        "timing": timing,
        "results": results,
    }
    out_dir = docs / "recognition-lfw"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{variant}.json").write_text(json.dumps(record, indent=1) + "\n")
    # per-pair distances (for re-analysis) stay in runs/, not docs/
    (runs / f"distances-{variant}.json").write_text(
        json.dumps(
            [
                {"fold": p.fold, "a": p.a, "b": p.b, "same": p.same, "distance": float(x)}
                for p, x in zip(pairs, d, strict=True)
            ]
        )
    )
    write_markdown(out_dir, docs / "recognition-lfw.md")
    log(
        f"mean accuracy {100 * results['mean_accuracy']:.2f} % "
        f"(folds {[round(100 * f['accuracy'], 2) for f in results['per_fold']]}, "
        f"thresholds {[f['threshold'] for f in results['per_fold']]}); "
        f"TAR@FAR=0.1 % {100 * results['tar_at_far']['0.001']['mean_tar']:.1f} %, "
        f"TAR@FAR=1 % {100 * results['tar_at_far']['0.01']['mean_tar']:.1f} %; "
        f"fallbacks {len(fallbacks)}; all-folds threshold {t_all}"
        + (f"; flip extras {flip_extras}" if flip_extras else "")
    )
    return record
