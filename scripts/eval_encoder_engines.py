#!/usr/bin/env python
"""The two encoder engines on real LFW photos: same encodings, same verdicts, speed.

    python scripts/eval_encoder_engines.py [--pairs 300]

For the first ``--pairs`` pairs of ``../shared/datasets/lfw-pairs-subset`` (LFW folds
1-3): every photo's face (HOG, upsample 1, the largest; else the fixed central box, as in
the verification protocol) encoded by ``DlibEncoder(engine="onnx")`` (the default:
dlib's network in onnxruntime, ``pipeline/recognition/dlib_onnx.py``) and by
``DlibEncoder(engine="dlib")`` (dlib's own code). Prints the largest difference between
the two encodings of a face, how many same/different verdicts at dlib's 0.6 differ, and
the median milliseconds per face of each (landmarks and chip included). Run by hand.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.datasets import datasets_root  # noqa: E402
from pipeline.recognition.encoder import DlibEncoder  # noqa: E402
from pipeline.record import Face  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=300, help="pairs to use (300)")
    args = ap.parse_args(argv)
    root = datasets_root()
    if root is None or not (root / "lfw-pairs-subset" / "pairs.tsv").is_file():
        sys.exit("eval_encoder_engines: ../shared/datasets/lfw-pairs-subset not found")
    import dlib

    lfw = root / "lfw-pairs-subset"
    with open(lfw / "pairs.tsv") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))[: args.pairs]
    hog = dlib.get_frontal_face_detector()
    engines = {"onnx": DlibEncoder(), "dlib": DlibEncoder(engine="dlib")}
    enc: dict[str, dict[str, np.ndarray]] = {k: {} for k in engines}
    ms: dict[str, list[float]] = {k: [] for k in engines}
    for name in sorted({r[1] for r in rows} | {r[2] for r in rows}):
        img = cv2.cvtColor(cv2.imread(str(lfw / "images" / name)), cv2.COLOR_BGR2RGB)
        dets = hog(img, 1)
        r = max(dets, key=lambda r: r.area()) if dets else dlib.rectangle(70, 70, 180, 180)
        face = [Face(box=(r.left(), r.top(), r.width(), r.height()))]
        for key, encoder in engines.items():
            t = time.perf_counter()
            enc[key][name] = encoder.encode(img, face)[0]
            ms[key].append(1000 * (time.perf_counter() - t))
    names = list(enc["onnx"])
    worst = max(float(np.abs(enc["onnx"][n] - enc["dlib"][n]).max()) for n in names)
    differ = sum(
        (np.linalg.norm(enc["onnx"][a] - enc["onnx"][b]) < 0.6)
        != (np.linalg.norm(enc["dlib"][a] - enc["dlib"][b]) < 0.6)
        for _, a, b, _ in rows
    )
    print(
        f"{len(names)} LFW photos, {len(rows)} pairs: largest |onnx - dlib| {worst:.1e}; "
        f"verdicts at 0.6 that differ: {differ}; median ms per face: onnx "
        f"{statistics.median(ms['onnx']):.1f}, dlib {statistics.median(ms['dlib']):.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
