"""Open-set identification (1:N) of facepipe's default naming rule on LFW folds 1-3.

The protocol, the gallery construction and the page live in
:mod:`pipeline.evaluation.openset` (its docstring describes them); this is the command
line. Probes are encoded as the recognize stage encodes faces (the config's
``recognition`` section), gallery photos as ``facepipe enroll`` does
(``recognition.enroll_jitters``); the decision is the product's ``fuse_identity`` at
``recognition.threshold``. Encodings are cached under ``runs/verification/`` (shared with
``scripts/eval_verification.py``); writes ``docs/openset/lfw-gallery-jitterN.json`` and
regenerates ``docs/openset.md``. With the default ``--gallery-jitters`` (enrolment's 10)
the first run encodes ~1,250 gallery photos at ~0.8 s each; run it in the background on a
shared machine:

    nice -n 10 python scripts/eval_openset.py > runs/openset.log 2>&1 &

``--calibrate``: the calibration of the open-set rule, printed as JSON: the margin's weight
per gallery size (the sweep, ``weights_tried``, and the weights it chooses), the threshold
table measured with them, the impostor distance quantiles and the per-person ratios
(what ``CALIBRATED`` in ``pipeline/recognition/openset.py`` holds); the margin is chosen
from the side-by-side tables of a normal run (default sizes 2, 5, 10, 100, 1,000).

``--small-faces PX``: the small-face study (``pipeline/evaluation/openset_small.py``):
LFW rendered with PX-tall faces, sharp and small probes against galleries of the sharp
photo and of it plus its small rendering, and the Hamilton clip's encoding variants;
``docs/openset/small-faces-PXpx.json``.

``--utkface``: false-match rates by race and gender at the default rule on UTKFace's
validation split (encodings cached under ``runs/attributes/`` as
``scripts/eval_attributes.py`` caches them), ``docs/openset/utkface*.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.datasets import REPO_ROOT, require
from pipeline.evaluation import openset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 5, 10, 100, 1000])
    ap.add_argument("--draws", type=int, default=10, help="random galleries per size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--gallery-jitters",
        type=int,
        default=None,
        help="jitters of the gallery encodings (default: recognition.enroll_jitters)",
    )
    ap.add_argument(
        "--people",
        type=int,
        default=0,
        help="only the first N people with 2+ images and N with one (a quick check)",
    )
    ap.add_argument("--limit", type=int, default=None, help="with --utkface: N images (check)")
    ap.add_argument(
        "--utkface",
        action="store_true",
        help="instead: false-match rates by race and gender on UTKFace at the default rule",
    )
    ap.add_argument("--min-age", type=int, default=0, help="with --utkface: faces this old+")
    ap.add_argument(
        "--calibrate",
        action="store_true",
        help="instead: print the impostor quantiles and per-person ratios of the LFW "
        "encodings (the CALIBRATED entry of pipeline/recognition/openset.py)",
    )
    ap.add_argument(
        "--small-faces",
        type=int,
        metavar="PX",
        default=None,
        help="instead: the small-face study (pipeline/evaluation/openset_small.py): LFW "
        "rendered with PX-tall faces, sharp/small probes against single and "
        "multi-resolution galleries, and the Hamilton clip's encoding variants",
    )
    ap.add_argument("--runs", type=Path, default=REPO_ROOT / "runs")
    ap.add_argument("--docs", type=Path, default=REPO_ROOT / "docs")
    args = ap.parse_args(argv)
    try:
        data = require("utkface" if args.utkface else "lfw-pairs-subset")
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    command = " ".join(
        ["python scripts/eval_openset.py", *(sys.argv[1:] if argv is None else argv)]
    )
    recognition = load_config().recognition
    if args.small_faces:
        from pipeline.evaluation import openset_small

        hamilton = data.parent / "video"
        record = openset_small.evaluate(
            data, data.parent, args.runs / "verification", recognition, args.small_faces,
            args.sizes, args.draws, args.seed, command, hamilton.is_dir(),
        )  # fmt: skip
        out = args.docs / "openset" / f"{record['name']}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1) + "\n")
        openset.write_markdown(args.docs)
        return 0
    if args.calibrate and not args.utkface:
        print(
            json.dumps(openset.calibrate(data, args.runs / "verification", recognition), indent=1)
        )
        return 0
    try:
        if args.utkface:
            record = openset.evaluate_utkface(
                data, args.runs / "attributes", recognition, command, args.min_age, args.limit
            )
        else:
            record = openset.evaluate_lfw(
                data, args.runs / "verification", recognition, args.sizes, args.draws,
                args.seed, args.gallery_jitters, command, args.people,
            )  # fmt: skip
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    openset.save(record, args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
