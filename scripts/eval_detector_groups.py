#!/usr/bin/env python
"""Which faces each detector finds, by group (WIDER attributes, UTKFace race/gender/age).

    python scripts/eval_detectors.py --detectors yunet:min_score=0.2,mtcnn --no-docs
    python scripts/eval_detector_groups.py --detectors yunet:min_score=0.2,mtcnn \\
        --min-score yunet=0.75

WIDER: recall of valid faces >= 32 px (1024 px) at the threshold, per attribute value,
from ``scripts/eval_detectors.py``'s cached detections (run it first for each spec).
UTKFace: share of an even sample of photos (``--utk-limit``) in which the backend finds a
face at the threshold, per race, gender, age band and race x gender (computed here,
cached under ``runs/detector_groups/``). ``--min-score NAME=S`` sets a backend's
threshold on top of its spec's (a spec run with a low ``min_score`` can be scored at
several). The method: :mod:`pipeline.evaluation.detector_groups`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import machine  # noqa: E402
from pipeline.datasets import REPO_ROOT, require  # noqa: E402
from pipeline.evaluation import detector_groups as dg  # noqa: E402
from pipeline.evaluation import detectors as ev  # noqa: E402
from pipeline.evaluation.common import log, spread  # noqa: E402
from pipeline.images import read_image  # noqa: E402

EVAL_CACHE = REPO_ROOT / "runs" / "eval_detectors"
CACHE = REPO_ROOT / "runs" / "detector_groups"


def utk_found(spec: str, paths: list, min_score: float) -> dict[str, bool]:
    """Photo name -> found at ``min_score`` (every face's score cached per spec)."""
    from pipeline.detectors import registry

    name, options = ev.parse_spec(spec)
    path = ev.cache_path(CACHE, name, options, f"utk{len(paths)}")
    version = ev.source_hash(name)
    scores: dict[str, list[float]] = {}
    if path.is_file():
        data = json.loads(path.read_text())
        if data.get("version") == version:
            scores = data["scores"]
    todo = [p for p in paths if p.name not in scores]
    if todo:
        det = registry.create(name, options)
        for i, p in enumerate(todo, 1):
            scores[p.name] = [f.score for f in det.detect(read_image(p))]
            if i % 250 == 0:
                log(f"{spec} on UTKFace: {i}/{len(todo)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"version": version, "scores": scores}))
    return {p.name: any(s >= min_score - 1e-9 for s in scores[p.name]) for p in paths}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detectors", required=True, help="comma-separated specs")
    ap.add_argument("--min-score", action="append", default=[], help="NAME=S (repeatable)")
    ap.add_argument("--utk-limit", type=int, default=1500)
    args = ap.parse_args()
    thresholds = {k: float(v) for k, v in (s.split("=", 1) for s in args.min_score)}
    wider = require("wider-face-val-subset")
    utk = require("utkface")
    records = [json.loads(ln) for ln in (wider / "annotations.jsonl").read_text().splitlines()]
    photos = spread(sorted(utk.glob("*.jpg")), args.utk_limit)
    out: dict = {"machine": machine.info(), "command": " ".join(sys.argv), "results": []}
    for spec in args.detectors.split(","):
        name, options = ev.parse_spec(spec)
        t = thresholds.get(name, float(options.get("min_score") or 0.0))
        row: dict = {"spec": spec, "min_score": t}
        cached = ev.cache_path(EVAL_CACHE, name, options, "1024")
        if cached.is_file():
            dets = dg.read_detections(cached)
            recs = [r for r in records if r["image"] in dets]
            row["wider_images"] = len(recs)
            row["wider"] = dg.wider_recall_by_group(recs, dets, t)
        else:
            log(f"{spec}: no cached WIDER detections ({cached}); run eval_detectors.py first")
        row["utkface_photos"] = len(photos)
        row["utkface"] = dg.utk_detection_by_group(utk_found(spec, photos, t))
        out["results"].append(row)
        log(f"{spec} @ {t}: done")
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "groups.json").write_text(json.dumps(out, indent=1) + "\n")
    for row in out["results"]:
        print(f"\n{row['spec']} at min_score {row['min_score']}")
        for part, key in (("wider", "recall"), ("utkface", "rate")):
            for attr, groups in row.get(part, {}).items():
                cells = ", ".join(
                    f"{g} {v[key] * 100:.1f} % ({v['faces']})" for g, v in groups.items()
                )
                print(f"  {part} {attr}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
