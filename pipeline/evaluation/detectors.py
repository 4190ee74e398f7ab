"""Running the face detector backends on the WIDER FACE subset: cached detections, AP at
two resolutions, interleaved timing and the report (``scripts/eval_detectors.py``).

Each backend is built by the registry and called as the detect stage calls it
(``registry.create(name, options)``, ``detector.detect(image, min_size)``, so its own
post-processing runs); the AP protocol is :mod:`pipeline.evaluation.detection`.

* **at 1024 px** (the subset's own size): AP at IoU 0.5 over all valid faces and over
  faces >= 32 px tall (smaller ones become ignore regions), median ms per image;
* **at 640 px wide** (a video frame): the same images downscaled, AP over faces >= 32 px
  tall *in the 640-px frame*, median ms per frame and frames per second.

Detections are cached per backend, option set, resolution and image (a cache is dropped
when the backend's source file or shipped weights change).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.datasets import REPO_ROOT
from pipeline.evaluation.common import log
from pipeline.evaluation.detection import evaluate_detections
from pipeline.images import read_image

DATASET = "wider-face-val-subset"
SLOW = frozenset({"dlib-cnn"})  # backends run on a subset (seconds per image)
VIDEO_WIDTH = 640
MIN_HEIGHT = 32


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``name`` or ``name:key=value:key=value`` -> (name, options)."""
    import yaml

    name, *pairs = spec.split(":")
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"bad detector spec {spec!r}: expected name:key=value")
        options[key] = yaml.safe_load(value)
    return name, options


def source_hash(name: str) -> str:
    """Hash of the backend's module source and of its shipped weights (the folders of
    ``pipeline/models/`` named after the module): a changed backend or retrained model
    invalidates its cache."""
    from pipeline.detectors import registry

    module = sys.modules[registry.get(name).__module__]
    digest = hashlib.sha1(inspect.getsource(module).encode())
    short = module.__name__.rsplit(".", 1)[-1]
    models = REPO_ROOT / "pipeline" / "models"
    for folder in sorted(models.glob(f"{short}*")) if models.is_dir() else []:
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(f.relative_to(models).as_posix().encode())
            digest.update(hashlib.sha1(f.read_bytes()).digest())
    return digest.hexdigest()[:12]


def cache_path(cache_dir: Path, name: str, options: dict[str, Any], res: str) -> Path:
    opt = "-".join(f"{k}={options[k]}" for k in sorted(options))
    slug = re.sub(r"[^A-Za-z0-9=._-]+", "_", f"{name}{'-' + opt if opt else ''}")
    return cache_dir / slug / f"{res}.jsonl"


def load_cache(path: Path, version: str) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    if not lines or json.loads(lines[0]).get("version") != version:
        path.unlink()
        return {}
    out = {}
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by an interruption
            continue
        if isinstance(rec, dict) and "image" in rec and "faces" in rec:  # not a 2nd header
            out[rec["image"]] = rec
    return out


def resize_to_width(image: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """Downscale to ``width`` (area interpolation, as the capture's ``resize_width``)."""
    import cv2

    h, w = image.shape[:2]
    scale = width / w
    small = cv2.resize(image, (width, max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return small, scale


def run_backend(
    name: str,
    options: dict[str, Any],
    records: list[dict[str, Any]],
    images_dir: Path,
    cache_dir: Path,
    min_size: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Detections of one backend at both resolutions, from the cache or computed now, by
    the detect stage's call: ``detector.detect(image, min_size)``."""
    from pipeline.detectors import registry

    detector = None
    version = source_hash(name) + (f"-min{min_size}" if min_size else "")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for res in ("1024", str(VIDEO_WIDTH)):
        path = cache_path(cache_dir, name, options, res)
        cached = load_cache(path, version)
        todo = [r for r in records if r["image"] not in cached]
        if todo:
            if detector is None:
                detector = registry.create(name, options)
                detector.warmup()
            path.parent.mkdir(parents=True, exist_ok=True)
            new_file = not path.exists()
            with path.open("a") as fh:
                if new_file:
                    fh.write(json.dumps({"version": version, "options": options}) + "\n")
                t_start = time.time()
                for i, rec in enumerate(todo, 1):
                    image = read_image(images_dir / rec["image"])
                    scale = 1.0
                    if res != "1024":
                        image, scale = resize_to_width(image, VIDEO_WIDTH)
                    t0, c0 = time.perf_counter(), time.process_time()
                    try:
                        # the faces as the detect stage puts them on the wire
                        faces = [f.to_dict() for f in detector.detect(image, min_size)]
                        error = None
                    except Exception as exc:  # a backend crash counts as "found nothing"
                        faces, error = [], f"{type(exc).__name__}: {exc}"
                    ms = (time.perf_counter() - t0) * 1000.0
                    cpu_ms = (time.process_time() - c0) * 1000.0
                    entry = {"image": rec["image"], "faces": faces, "ms": round(ms, 2)}
                    entry.update(cpu_ms=round(cpu_ms, 2), scale=scale)
                    if error:
                        entry["error"] = error
                    fh.write(json.dumps(entry) + "\n")
                    fh.flush()
                    cached[rec["image"]] = entry
                    if i % 20 == 0 or i == len(todo):
                        el = time.time() - t_start
                        log(
                            f"{name} {options or ''} @{res}: {i}/{len(todo)} images, "
                            f"{el:.0f} s, ~{el / i * (len(todo) - i):.0f} s left"
                        )
        out[res] = {r["image"]: cached[r["image"]] for r in records}
    return out


def scaled_annotations(records: list[dict[str, Any]], scales: dict[str, float]) -> list[dict]:
    """Ground truth mapped into the downscaled frames."""
    out = []
    for rec in records:
        s = scales[rec["image"]]
        faces = [{**f, "box": [v * s for v in f["box"]]} for f in rec["faces"]]
        out.append({"image": rec["image"], "faces": faces})
    return out


def score_backend(
    records: list[dict[str, Any]], dets: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    full = {k: v["faces"] for k, v in dets["1024"].items()}
    video = {k: v["faces"] for k, v in dets[str(VIDEO_WIDTH)].items()}
    scales = {k: v.get("scale", VIDEO_WIDTH / 1024) for k, v in dets[str(VIDEO_WIDTH)].items()}
    ap_all = evaluate_detections(records, full)
    ap_32 = evaluate_detections(records, full, min_height=MIN_HEIGHT)
    ap_v32 = evaluate_detections(scaled_annotations(records, scales), video, MIN_HEIGHT)
    ms_full = statistics.median(v["ms"] for v in dets["1024"].values())
    ms_video = statistics.median(v["ms"] for v in dets[str(VIDEO_WIDTH)].values())
    cpu_video = statistics.median(v.get("cpu_ms", 0.0) for v in dets[str(VIDEO_WIDTH)].values())
    errors = sum("error" in v for d in dets.values() for v in d.values())
    return {
        "images": len(records),
        "ap_all": ap_all.ap,
        "ap_32": ap_32.ap,
        "ap_32_at_640": ap_v32.ap,
        "recall_all": ap_all.recall,
        "recall_32": ap_32.recall,
        "ms_1024": ms_full,
        "ms_640": ms_video,
        "fps_640": 1000.0 / ms_video if ms_video > 0 else float("inf"),
        "cpu_ms_640": cpu_video,
        "errors": errors,
        "details": {"all": ap_all.to_dict(), "32": ap_32.to_dict(), "32@640": ap_v32.to_dict()},
    }


def threshold_sweep(
    records: list[dict[str, Any]],
    dets: dict[str, dict[str, dict[str, Any]]],
    thresholds: list[float],
) -> list[dict[str, Any]]:
    """AP, precision and recall (faces >= 32 px, at 1024 px and at 640 px) of one backend's
    detections kept from each score threshold up: the same as running the backend with
    that threshold when its own threshold is at or below the lowest one (scores are only
    cut, never re-ranked). Precision counts every kept detection that is not ignored."""
    scales = {k: v.get("scale", VIDEO_WIDTH / 1024) for k, v in dets[str(VIDEO_WIDTH)].items()}
    gt640 = scaled_annotations(records, scales)
    rows = []
    for t in thresholds:
        row: dict[str, Any] = {"min_score": t}
        for res, gt in (("1024", records), (str(VIDEO_WIDTH), gt640)):
            kept = {
                k: [f for f in v["faces"] if f["score"] >= t - 1e-9] for k, v in dets[res].items()
            }
            r = evaluate_detections(gt, kept, min_height=MIN_HEIGHT)
            found = r.true_positives + r.false_positives
            row[res] = {
                "ap_32": r.ap,
                "precision": r.true_positives / found if found else 0.0,
                "recall": r.recall,
                "false_positives": r.false_positives,
            }
        rows.append(row)
    return rows


def render_sweep(label_: str, rows: list[dict[str, Any]]) -> str:
    lines = [
        f"Score thresholds of {label_} (faces >= 32 px):",
        "",
        "| min_score | AP >= 32 px | P / R (1024) | AP >= 32 px @ 640 | P / R @ 640 | FP @ 640 |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        a, b = r["1024"], r[str(VIDEO_WIDTH)]
        lines.append(
            f"| {r['min_score']:.2f} | {a['ap_32']:.3f} | {a['precision']:.2f} / "
            f"{a['recall']:.2f} | {b['ap_32']:.3f} | {b['precision']:.2f} / {b['recall']:.2f} "
            f"| {b['false_positives']} |"
        )
    return "\n".join(lines)


def time_backends(
    specs: list[tuple[str, dict[str, Any]]],
    records: list[dict[str, Any]],
    images_dir: Path,
    slow: set[str] | frozenset[str] = frozenset(),
    slow_images: int = 5,
    min_size: int = 0,
) -> list[dict[str, float]]:
    """Median wall and CPU ms per image of each backend, at 1024 px and 640 px wide.

    All backends are loaded at once and run image by image in turn (the order rotating
    from image to image), so that load from other jobs on a shared machine falls on every
    backend alike instead of on whichever happened to run at a busy moment. Backends
    named in ``slow`` are timed on only about ``slow_images`` of the images (every k-th).
    """
    from pipeline.detectors import registry

    slow_step = max(1, -(-len(records) // max(1, slow_images)))
    detectors = []
    for name, options in specs:
        det = registry.create(name, options)
        det.warmup()
        detectors.append(det)
    samples: list[dict[str, list[float]]] = [
        {"ms_1024": [], "cpu_ms_1024": [], "ms_640": [], "cpu_ms_640": []} for _ in specs
    ]
    for i, rec in enumerate(records):
        full = read_image(images_dir / rec["image"])
        frames = {"1024": full, "640": resize_to_width(full, VIDEO_WIDTH)[0]}
        order = list(range(len(specs)))
        order = order[i % len(order) :] + order[: i % len(order)]
        for res, frame in frames.items():
            for k in order:
                if specs[k][0] in slow and i % slow_step:
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                detectors[k].detect(frame, min_size)
                samples[k][f"ms_{res}"].append((time.perf_counter() - t0) * 1000.0)
                samples[k][f"cpu_ms_{res}"].append((time.process_time() - c0) * 1000.0)
        log(f"timing: {i + 1}/{len(records)} images")
    return [{key: statistics.median(v) for key, v in s.items()} for s in samples]


def label(name: str, options: dict[str, Any]) -> str:
    opts = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"`{name}`" + (f" ({opts})" if opts else "")


def operating_point(scores: dict[str, Any]) -> str:
    """Precision / recall of all reported detections (faces >= 32 px at 640 px): where the
    backend's own score threshold puts it."""
    d = scores["details"]["32@640"]
    found = d["true_positives"] + d["false_positives"]
    precision = d["true_positives"] / found if found else 0.0
    return f"{precision:.2f} / {d['recall']:.2f}"


def timing_note(report: dict[str, Any]) -> str:
    t = report.get("timing") or {}
    if t.get("interleaved"):
        return (
            f"Times: median over {t['images']} images spread over the events "
            f"({t.get('slow_images', t['images'])} for {', '.join(t.get('slow', []))}), all "
            "backends loaded together and run in turn on each image (so shared-core load hits "
            "them alike); detector call only (no decoding), after a warm-up call."
        )
    return "Times: median over the accuracy pass; detector call only, after a warm-up call."


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"Measured {report['date']} on {m['cpu']}, {m['cores']} cores, GPU: {m['gpu']} "
        f"(load average {m['loadavg_start']} at start, {m.get('loadavg_end')} at end: "
        "the cores were shared with other jobs, so times are upper bounds).",
        "",
        f"Command: `{report['command']}`",
        "",
        timing_note(report),
        *(
            ["", f"Partial run: {report['n_images']} of the {report['dataset_images']} images."]
            if report.get("dataset_images", report["n_images"]) > report["n_images"]
            else []
        ),
        "",
        "| detector | images | AP all | AP >= 32 px | ms / image (1024 px) "
        "| AP >= 32 px @ 640 | P / R @ 640 | ms / frame @ 640 | fps @ 640 "
        "| CPU ms / frame @ 640 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["results"]:
        if "error" in row:
            lines.append(
                f"| {label(row['name'], row['options'])} | - | unavailable: "
                f"{row['error'][:160].replace('|', '/')} | | | | | | | |"
            )
            continue
        r = row["scores"]
        note = " (subset)" if r["images"] < report["n_images"] else ""
        lines.append(
            f"| {label(row['name'], row['options'])} | {r['images']}{note} | {r['ap_all']:.3f} "
            f"| {r['ap_32']:.3f} | {r['ms_1024']:.0f} | {r['ap_32_at_640']:.3f} "
            f"| {operating_point(r)} "
            f"| {r['ms_640']:.1f} | {r['fps_640']:.1f} | {r['cpu_ms_640']:.1f} |"
        )
    for subset in report.get("subsets", []):
        lines += [
            "",
            f"The same backends on the {subset['images']}-image subset used for "
            f"{', '.join(subset['for'])}:",
            "",
            "| detector | AP all | AP >= 32 px | AP >= 32 px @ 640 |",
            "|---|---:|---:|---:|",
        ]
        for row in subset["results"]:
            r = row["scores"]
            lines.append(
                f"| {label(row['name'], row['options'])} | {r['ap_all']:.3f} | {r['ap_32']:.3f} "
                f"| {r['ap_32_at_640']:.3f} |"
            )
    return "\n".join(lines)


def evaluate(
    specs: list[str],
    records: list[dict[str, Any]],
    images_dir: Path,
    cache_dir: Path,
    report: dict[str, Any],
    slow: set[str] | frozenset[str] = SLOW,
    slow_limit: int = 40,
    timing_images: int = 30,
    min_size: int = 0,
    sweep: list[float] | None = None,
) -> dict[str, Any]:
    """Every backend spec (``name[:key=value...]``) on ``records``: scores, the subsets the
    slow backends used, interleaved timing; filled into ``report`` and returned.
    ``sweep``: score thresholds at which to report AP, precision and recall as well
    (:func:`threshold_sweep`, in each row's ``sweep``)."""
    from pipeline.evaluation.common import spread

    report["n_images"] = len(records)
    report["min_size"] = min_size
    report["results"] = []
    all_dets: dict[str, Any] = {}
    for spec in specs:
        name, options = parse_spec(spec.strip())
        subset = spread(records, slow_limit) if name in slow else records
        log(f"{spec}: {len(subset)} images")
        row: dict[str, Any] = {"name": name, "options": options}
        try:
            dets = run_backend(name, options, subset, images_dir, cache_dir, min_size)
        except Exception as exc:  # unknown/broken backend: report it, go on with the rest
            row["error"] = f"{type(exc).__name__}: {exc}"
            log(f"{spec} failed: {row['error']}")
            report["results"].append(row)
            continue
        row["scores"] = score_backend(subset, dets)
        if sweep:
            row["sweep"] = threshold_sweep(subset, dets, sweep)
        all_dets[spec] = (row, dets)
        report["results"].append(row)
        sc = row["scores"]
        log(
            f"{spec}: AP all {sc['ap_all']:.3f}  AP>=32 {sc['ap_32']:.3f}  AP>=32@640 "
            f"{sc['ap_32_at_640']:.3f}  {sc['ms_1024']:.0f} ms @1024  {sc['ms_640']:.1f} ms @640"
        )

    # every backend on each smaller subset a slow backend used, for a like-for-like view
    report["subsets"] = []
    sizes = {r["scores"]["images"] for r in report["results"] if "scores" in r}
    for size in sorted(sizes - {len(records)}):
        keys = [r["image"] for r in spread(records, size)]
        sub_records = [r for r in records if r["image"] in set(keys)]
        rows = []
        for _spec, (row, dets) in all_dets.items():
            sub = {res: {k: d[k] for k in keys} for res, d in dets.items()}
            rows.append({**row, "scores": score_backend(sub_records, sub)})
        users = [r["name"] for r in report["results"] if r.get("scores", {}).get("images") == size]
        report["subsets"].append({"images": size, "for": users, "results": rows})

    ok = [row for row, _dets in all_dets.values()]
    if timing_images > 0 and ok:
        timing_set = spread(records, timing_images)
        log(f"timing {len(ok)} backends, interleaved, on {len(timing_set)} images")
        slow_n = max(3, timing_images // 6)
        report["timing"] = {
            "images": len(timing_set),
            "interleaved": True,
            "slow_images": slow_n,
            "slow": sorted(slow),
        }
        specs_ok = [(row["name"], row["options"]) for row in ok]
        timings = time_backends(specs_ok, timing_set, images_dir, slow, slow_n, min_size)
        for row, t in zip(ok, timings, strict=True):
            row["scores"]["accuracy_pass_ms"] = {
                "ms_1024": row["scores"]["ms_1024"],
                "ms_640": row["scores"]["ms_640"],
            }
            row["scores"].update(t)
            row["scores"]["fps_640"] = 1000.0 / t["ms_640"] if t["ms_640"] > 0 else 0.0
    else:
        report["timing"] = {"images": None, "interleaved": False}
    return report
