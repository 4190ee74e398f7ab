"""Open-set identification on video: the Hamilton clip and a not-enrolled person's clip
through ``facepipe run``, against a gallery of several hundred enrolled LFW people.

The protocol is :mod:`pipeline.evaluation.openset_video` (its docstring describes it);
this is the command line. Each rule (the default open-set rule, and the fixed pair
threshold it replaced) gets a fresh ``FACEPIPE_HOME`` with the gallery, then the clips
through the whole pipeline. Writes ``docs/openset/video.json`` and regenerates
``docs/openset.md``; the clips' logs go to ``runs/openset_video/``. Takes a few minutes
per rule; on a shared machine:

    nice -n 10 python scripts/eval_openset_video.py > runs/openset-video.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.datasets import REPO_ROOT, require
from pipeline.evaluation import openset, openset_video


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--distractors", type=int, default=500, help="LFW people enrolled besides the two"
    )
    ap.add_argument(
        "--rule",
        choices=list(openset_video.RULES),
        action="append",
        help="only this rule (repeatable; default: every rule)",
    )
    ap.add_argument("--runs", type=Path, default=REPO_ROOT / "runs")
    ap.add_argument("--docs", type=Path, default=REPO_ROOT / "docs")
    args = ap.parse_args(argv)
    try:
        lfw = require("lfw-pairs-subset")
        require("video")
        require("youtube-faces-clips")
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    command = " ".join(
        ["python scripts/eval_openset_video.py", *(sys.argv[1:] if argv is None else argv)]
    )
    try:
        record = openset_video.evaluate(lfw.parent, args.runs, args.distractors, command, args.rule)
    except (ValueError, RuntimeError) as exc:
        print(exc, file=sys.stderr)
        return 2
    out = args.docs / "openset" / "video.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    openset.write_markdown(args.docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
