#!/usr/bin/env python
"""Where the `cnn` detector's time goes on real video frames: proposal pyramid vs refine.

Decodes every ``--every``-th frame of a clip (default: the datasets' 640x360
``video/short_hamilton_clip.mp4``), runs the shipped cascade once to warm up, then
times the proposal net over the pyramid and the refine net on its candidates per frame
and prints medians (wall ms, CPU ms of this process, candidate count). Run it niced on a
shared machine; results are quoted in docs/cnn-detector.md.

    nice -n 10 python scripts/bench_cnn_detector.py --min-face 32
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.cnn_detector.boxes import pyramid_scales  # noqa: E402
from pipeline.cnn_detector.inference import Cascade, CascadeSettings  # noqa: E402
from pipeline.datasets import require  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--video", type=Path, help="clip to read (default: the datasets' Hamilton clip)"
    )
    ap.add_argument("--every", type=int, default=9, help="use every n-th frame")
    ap.add_argument("--min-face", type=float, default=32.0)
    args = ap.parse_args(argv)
    video = args.video or require("video") / "short_hamilton_clip.mp4"
    cap = cv2.VideoCapture(str(video))
    frames = []
    k = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if k % args.every == 0:
            frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
        k += 1
    if not frames:
        raise SystemExit(f"no frames read from {video}")
    cascade = Cascade.load()
    settings = CascadeSettings(min_face=args.min_face)
    cascade.detect(frames[0], settings)
    prop, ref, cpu, cands = [], [], [], []
    for image in frames:
        t0, c0 = time.perf_counter(), time.process_time()
        boxes, _ = cascade.proposals(image, settings)
        t1 = time.perf_counter()
        if len(boxes):
            cascade.refine_boxes(image, boxes)
        t2, c1 = time.perf_counter(), time.process_time()
        prop.append(t1 - t0)
        ref.append(t2 - t1)
        cpu.append(c1 - c0)
        cands.append(len(boxes))
    h, w = frames[0].shape[:2]
    n_scales = len(pyramid_scales(h, w, cascade.window, args.min_face, settings.scale_factor))
    print(
        f"{len(frames)} frames {w}x{h}, min_face {args.min_face:g}, {n_scales} scales, "
        f"load average {os.getloadavg()[0]:.1f}: median proposal {np.median(prop) * 1e3:.1f} ms, "
        f"refine {np.median(ref) * 1e3:.1f} ms, CPU {np.median(cpu) * 1e3:.1f} ms/frame, "
        f"{np.median(cands):.0f} candidates"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
