"""Evaluate every age/gender backend on the fixed UTKFace validation split.

Age MAE (years) and gender accuracy, overall and by age group, plus milliseconds per
face (median wall time of ``estimate`` on one face, single thread). Writes a markdown
table and the raw numbers to ``docs/attributes_eval.md`` / ``.json``. The evaluation
itself (the product's estimators, the recognize stage's encodings, the metrics) is
:mod:`pipeline.evaluation.attributes`; this is its command line.

No model facepipe ships was trained on these files (pipeline/agegender/split.py).

Each image is handled like the attributes stage handles a sampled face: the face box is
where ``facepipe analyze --face-crop`` puts it on a UTKFace crop (``--boxes utkface``,
the default) or the box HOG returns on the image placed in a neutral canvas (``--boxes
hog``; misses fall back to the default box and are counted). The configured backend gets
the config's options. For backends that reuse the recognize stage's encoding
(``transfer``, ``ensemble``) each face carries the encoding the recognize stage's encoder
(``recognition`` section of the config) makes, cached under ``runs/attributes/``;
``--no-encodings`` makes the backend encode the face itself (the ``facepipe analyze``
path). ``--framing`` re-measures the HOG framing that sets the backends' ``crop_margin``.

Usage::

    nice -n 10 python scripts/eval_attributes.py                 # all backends
    nice -n 10 python scripts/eval_attributes.py --backends scratch --limit 500
    nice -n 10 python scripts/eval_attributes.py --boxes hog --out docs/attributes_eval_hog
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from pipeline import machine  # noqa: E402
from pipeline.agegender.split import list_samples, split_samples  # noqa: E402
from pipeline.attributes import registry  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.datasets import REPO_ROOT, require  # noqa: E402
from pipeline.evaluation import attributes as ev  # noqa: E402
from pipeline.evaluation.common import log, spread  # noqa: E402
from pipeline.images import read_image  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default=None, help="comma-separated (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="N images spread over the split")
    ap.add_argument("--boxes", choices=["utkface", "hog"], default="utkface")
    ap.add_argument("--time-n", type=int, default=200, help="faces timed per backend")
    ap.add_argument("--no-encodings", action="store_true", help="backends encode faces themselves")
    ap.add_argument("--framing", action="store_true", help="also measure the HOG framing")
    ap.add_argument("--out", default=str(REPO_ROOT / "docs" / "attributes_eval"))
    ap.add_argument("--runs", type=Path, default=REPO_ROOT / "runs" / "attributes")
    ap.add_argument(
        "--cards",
        action="store_true",
        help="write each evaluated backend's per-group figures into its model card "
        "(pipeline/models/age_gender/NAME.md; full validation split only)",
    )
    ap.add_argument(
        "--detail",
        default=None,
        help="backends whose per-group table and abstention curve are printed "
        "(default: the configured backend)",
    )
    args = ap.parse_args(argv)
    try:
        folder = require("utkface")
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = load_config()
    _, val = split_samples(list_samples(folder))
    val = spread(val, args.limit)
    names = args.backends.split(",") if args.backends else registry.names()
    meta: dict[str, Any] = {
        "machine": machine.describe(),
        "loadavg_start": machine.info()["loadavg_start"],
        "command": " ".join(
            ["python scripts/eval_attributes.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "images": len(val),
        "boxes": args.boxes,
        "encodings": "computed by each backend"
        if args.no_encodings
        else f"the recognize stage's ({ev.encoding_cache_name(cfg.recognition)}), "
        "reused by backends that take them",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "detail": args.detail.split(",") if args.detail else [cfg.attributes.backend],
    }
    from pipeline.agegender.framing import UTKFACE_BOX_FRACTION
    from pipeline.detectors import registry as detectors

    hog = detectors.create("hog") if args.boxes == "hog" or args.framing else None
    if args.framing:
        images = (read_image(folder / s.name) for s in spread(val, 400))
        meta["framing"] = ev.measure_framing(hog, images)
        meta["utkface_box_fraction"] = UTKFACE_BOX_FRACTION
        log(json.dumps(meta["framing"]))
    encodings = None
    if not args.no_encodings:
        encoder = ev.recognition_encoder(cfg.recognition)
        encodings = ev.StageEncodings(
            encoder, args.runs / ev.encoding_cache_name(cfg.recognition) / args.boxes
        )
    results: dict[str, Any] = {}
    preds = {}
    for name in names:
        log(f"{name} ...")
        try:
            options = cfg.attributes.options if name == cfg.attributes.backend else None
            est = registry.create(name, options)
            est.warmup()
            results[name], preds[name] = ev.evaluate_estimator(
                est,
                val,
                lambda n: read_image(folder / n),
                detector=hog if args.boxes == "hog" else None,
                encodings=encodings if ev.uses_encodings(est) else None,
                time_n=args.time_n,
                label=name,
            )
        except Exception as exc:  # one backend failing must not hide the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        if name in preds:  # per-image predictions, for further analysis (runs/, not docs)
            args.runs.mkdir(parents=True, exist_ok=True)
            np.savez(
                args.runs / f"predictions_{name}_{args.boxes}.npz",
                names=np.array([s.name for s in val]),
                age=preds[name][0],
                p_female=preds[name][1],
            )
        log(json.dumps({name: {k: v for k, v in results[name].items() if k != "by_group"}}))
    # averages of backends, from the predictions above (no weights fitted)
    singles = {n: p for n, p in preds.items() if n != "ensemble"}
    ages = [s.age for s in val]
    genders = [s.gender for s in val]
    for combo, (age, pf) in ev.combine(singles).items():
        m = ev.age_gender_metrics(age, pf, ages, genders)
        m.update(ev.detail_metrics((age, pf), val))
        members = combo[len("mean(") : -1].split(" + ")
        m["ms_per_face_median"] = sum(results[n]["ms_per_face_median"] or 0 for n in members)
        m["crop_margin"] = "-"
        results[combo] = m
    if args.cards and args.limit is None:
        from pipeline.agegender.runtime import MODELS_DIR

        for name in names:
            if "by_group" in results.get(name, {}):
                ev.write_card_section(
                    MODELS_DIR / f"{name}.md", ev.card_section(name, results[name], meta)
                )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    out.with_suffix(".md").write_text(ev.markdown(results, meta))
    print(ev.markdown(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
