#!/usr/bin/env python
"""Accuracy and speed of every face detector backend on the WIDER FACE validation subset.

For each backend (or ``--detectors a,b,name:key=value:key=value``):

* **at 1024 px** (the subset's own size): detections on every image (or ``--limit N``
  images spread evenly over the events), average precision at IoU 0.5 over all valid
  faces and over faces >= 32 px tall (smaller ones become ignore regions), and the
  median detector time per image;
* **at 640 px wide** (a video frame): the same images downscaled, AP over faces >= 32 px
  tall *in the 640-px frame*, median ms per frame and frames per second.

Each backend is called as the detect stage calls it (``registry.create(name, options)``,
``detect(image, detector.min_size)``); ``--detectors config`` names the configured
backend with its configured options. The evaluation is
:mod:`pipeline.evaluation.detectors` (running, caching, timing, report) and
:mod:`pipeline.evaluation.detection` (AP); this is its command line.

Detections are cached per backend, option set, resolution and image under
``runs/eval_detectors/`` (a cache is dropped when the backend's source file changes), so
a rerun only computes what is missing and an interrupted run resumes. Slow backends
(``dlib-cnn``) run on an evenly spread subset of ``--slow-limit`` images; the report also
compares every backend on that subset.

Results go to ``docs/detectors-results.json`` and into the block between
``<!-- results:start -->`` and ``<!-- results:end -->`` of ``docs/detectors.md``.

Run it niced, in the background, on a shared machine::

    nice -n 10 python scripts/eval_detectors.py > runs/eval_detectors.log 2>&1 &
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline import machine  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.datasets import REPO_ROOT, require  # noqa: E402
from pipeline.detectors import registry  # noqa: E402
from pipeline.evaluation import detectors as ev  # noqa: E402
from pipeline.evaluation.common import log, spread  # noqa: E402
from pipeline.evaluation.reports import write_results  # noqa: E402

CACHE_DIR = REPO_ROOT / "runs" / "eval_detectors"
DOCS_MD = REPO_ROOT / "docs" / "detectors.md"
DOCS_JSON = REPO_ROOT / "docs" / "detectors-results.json"


def config_spec() -> str:
    """``backend:key=value...`` of the configured detector."""
    cfg = load_config().detector
    opts = "".join(f":{k}={json.dumps(v)}" for k, v in dict(cfg.options).items())
    return f"{cfg.backend}{opts}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--detectors",
        help="comma-separated backends (default: all registered; `config`: the configured one)",
    )
    ap.add_argument("--limit", type=int, help="evaluate on N images spread over the events")
    ap.add_argument(
        "--slow-limit",
        type=int,
        default=40,
        help=f"images for the slow backends {sorted(ev.SLOW)} (default 40)",
    )
    ap.add_argument(
        "--slow",
        default="",
        help="more backends to treat as slow (comma-separated names), e.g. a new one",
    )
    ap.add_argument(
        "--timing-images",
        type=int,
        default=30,
        help="images for the interleaved speed measurement (default 30; 0: use the "
        "times of the accuracy pass instead)",
    )
    ap.add_argument(
        "--sweep",
        help="comma-separated score thresholds: also print AP, precision and recall of each "
        "backend at each (run the backend with a threshold at or below the lowest)",
    )
    ap.add_argument("--no-docs", action="store_true", help="print, do not write docs/")
    args = ap.parse_args(argv)

    try:
        root = require(ev.DATASET)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    records = [json.loads(ln) for ln in (root / "annotations.jsonl").read_text().splitlines()]
    n_all = len(records)
    records = spread(records, args.limit)
    specs = args.detectors.split(",") if args.detectors else registry.names()
    specs = [config_spec() if s.strip() == "config" else s for s in specs]
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python scripts/eval_detectors.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine.info(numpy=np.__version__, opencv=cv2.__version__),
        "dataset": ev.DATASET,
        "dataset_images": n_all,
    }
    ev.evaluate(
        specs,
        records,
        root / "images",
        CACHE_DIR,
        report,
        slow=ev.SLOW | {n for n in args.slow.split(",") if n},
        slow_limit=args.slow_limit,
        timing_images=args.timing_images,
        min_size=load_config().detector.min_size,
        sweep=[float(t) for t in args.sweep.split(",")] if args.sweep else None,
    )
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(ev.render(report))
    for row in report["results"]:
        if row.get("sweep"):
            print("\n" + ev.render_sweep(ev.label(row["name"], row["options"]), row["sweep"]))
    if not args.no_docs:
        write_results(DOCS_JSON, DOCS_MD, report, ev.render(report), "Face detectors")
        log(f"wrote {DOCS_JSON.relative_to(REPO_ROOT)} and {DOCS_MD.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
