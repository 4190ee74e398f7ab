"""Calibrate and evaluate facepipe's verification rule on the LFW pairs subset.

The protocol, the variants and the generated page live in
:mod:`pipeline.evaluation.verification` (its docstring describes them); this is the
command line. One run evaluates one variant and writes
``docs/recognition-lfw/<variant>.json``; ``docs/recognition-lfw.md`` is regenerated from
all variant files present. A variant is:

* ``--landmarks 5|68|5+68``, ``--num-jitters N``, ``--upsample U``: the encoder settings;
* ``--flip``: test-time flip augmentation, the pipeline's ``DlibEncoder(flip=True)``;
* ``--preprocess clahe|equalize``: contrast normalisation before landmarks and encoding;
  ``--preprocess tint``: a gray image coloured with UTKFace's mean face colour;
* ``--fallback mtcnn|blazeface``: where HOG finds no face, that detector's central face
  (its box mapped to HOG's framing) instead of the fixed central box;
* ``--metric pca-whiten|wccn``: a linear map of the encodings learned on the training
  folds only (re-fitted for every held-out fold).

``--scores`` instead evaluates score-level variants on the cached plain and mirrored
encodings (run ``--flip`` first): flip fusions, AS-norm against a UTKFace or
training-fold cohort, KISSME / LDA / diagonal metrics fitted on the training folds
(:mod:`pipeline.evaluation.verification_scores`); it writes
``docs/recognition-lfw/scores/score-level.json`` and ``docs/recognition-lfw-scores.md``.

``--hamilton N`` instead compares plain and flip-averaged distances on every N-th frame of
the Hamilton clip. Encodings are cached under ``runs/verification/``; run it in the
background on a shared machine:

    nice -n 10 python scripts/eval_verification.py --flip > runs/verification/flip.log 2>&1 &
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from pipeline.datasets import REPO_ROOT, require
from pipeline.evaluation.verification import Variant, hamilton_check, run_variant


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-jitters", type=int, default=1)
    ap.add_argument(
        "--landmarks",
        choices=("5", "68", "5+68"),
        default="5",
        help="landmark model; 5+68: the mean of the encodings aligned with each",
    )
    ap.add_argument("--upsample", type=int, default=1)
    ap.add_argument("--flip", action="store_true", help="flip-averaged encodings")
    ap.add_argument("--preprocess", choices=("none", "clahe", "equalize", "tint"), default="none")
    ap.add_argument("--fallback", choices=("box", "mtcnn", "blazeface"), default="box")
    ap.add_argument("--metric", choices=("euclidean", "pca-whiten", "wccn"), default="euclidean")
    ap.add_argument("--runs", type=Path, default=REPO_ROOT / "runs" / "verification")
    ap.add_argument("--docs", type=Path, default=REPO_ROOT / "docs")
    ap.add_argument("--bench", type=int, default=40, help="images for the timing benchmark")
    ap.add_argument(
        "--hamilton",
        type=int,
        metavar="N",
        default=0,
        help="instead: plain vs flip-averaged distances on every N-th frame of the Hamilton "
        "clip (colour video), written to docs/recognition-lfw/hamilton/flip-check.json",
    )
    ap.add_argument(
        "--scores",
        action="store_true",
        help="instead: score-level variants (fusion, AS-norm, learned metrics) on the cached "
        "plain + mirrored encodings of a previous --flip run",
    )
    args = ap.parse_args(argv)
    command = " ".join(
        ["python scripts/eval_verification.py", *(sys.argv[1:] if argv is None else argv)]
    )
    if args.scores:
        from pipeline.evaluation.verification_scores import run_scores

        try:
            lfw = require("lfw-pairs-subset")
        except FileNotFoundError as exc:
            print(exc, file=sys.stderr)
            return 2
        try:
            utk = require("utkface")
        except FileNotFoundError:
            utk = None
        run_scores(lfw, utk, args.runs, args.docs, command)
        return 0
    try:
        data = require("video" if args.hamilton else "lfw-pairs-subset")
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.hamilton:
        out = args.docs / "recognition-lfw" / "hamilton" / "flip-check.json"
        hamilton_check(data, args.hamilton, out)
        return 0
    variant = Variant(**{f.name: getattr(args, f.name) for f in fields(Variant)})
    run_variant(variant, data, args.runs, args.docs, args.bench, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
