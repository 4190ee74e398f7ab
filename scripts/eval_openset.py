"""Open-set identification (1:N) of facepipe's default naming rule on LFW folds 1-3.

The protocol, the gallery construction and the page live in
:mod:`pipeline.evaluation.openset` (its docstring describes them); this is the command
line. Probes are encoded as the recognize stage encodes faces (the config's
``recognition`` section), gallery photos as ``facepipe enroll`` does
(``recognition.enroll_jitters``); the decision is the product's ``fuse_identity`` at
``recognition.threshold``. Encodings are cached under ``runs/verification/`` (shared with
``scripts/eval_verification.py``); writes ``docs/openset/lfw.json`` (or
``lfw-gallery-jitterN.json`` with ``--gallery-jitters N`` other than the config's) and
regenerates ``docs/openset.md``. The first run encodes ~1,250 gallery photos with 10
jitters (~0.8 s each); run it in the background on a shared machine:

    nice -n 10 python scripts/eval_openset.py > runs/openset.log 2>&1 &
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.config import load_config
from pipeline.datasets import REPO_ROOT, require
from pipeline.evaluation import openset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--draws", type=int, default=10, help="random galleries per size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--gallery-jitters",
        type=int,
        default=None,
        help="jitters of the gallery encodings (default: recognition.enroll_jitters)",
    )
    ap.add_argument("--runs", type=Path, default=REPO_ROOT / "runs" / "verification")
    ap.add_argument("--docs", type=Path, default=REPO_ROOT / "docs")
    args = ap.parse_args(argv)
    try:
        data = require("lfw-pairs-subset")
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    command = " ".join(
        ["python scripts/eval_openset.py", *(sys.argv[1:] if argv is None else argv)]
    )
    try:
        record = openset.evaluate_lfw(
            data, args.runs, load_config().recognition, args.sizes, args.draws, args.seed,
            args.gallery_jitters, command,
        )  # fmt: skip
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    openset.save(record, args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
