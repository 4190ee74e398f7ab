"""Speed of the `viola-jones` backend on 640 x 360 video frames, next to OpenCV's Haar.

``python -m training.vj.bench [--frames N] [--cascade PATH]`` decodes the first N frames
of ``video/short_hamilton_clip.mp4`` from the datasets folder and times, interleaved
frame by frame, ``viola-jones`` and ``haar`` (OpenCV's haarcascade_frontalface_default,
when that backend is available), printing median wall-clock and process-CPU
milliseconds per frame. CPU time is reported too because on a shared machine wall time
mostly measures the other jobs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from pipeline.datasets import require
from pipeline.detectors import registry


def frames(n: int) -> list[np.ndarray]:
    """The first ``n`` RGB frames of the 640 x 360 Hamilton clip."""
    cap = cv2.VideoCapture(str(require("video") / "short_hamilton_clip.mp4"))
    out = []
    while len(out) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not out:
        raise RuntimeError("could not decode short_hamilton_clip.mp4")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--cascade", help="cascade JSON (default: the shipped one)")
    args = ap.parse_args(argv)
    imgs = frames(args.frames)
    dets = {"viola-jones": registry.create("viola-jones", {"cascade": args.cascade})}
    try:
        dets["haar"] = registry.create("haar")
    except Exception as exc:  # noqa: BLE001 - the comparison is optional
        print(f"haar unavailable: {exc}")
    times: dict[str, list[tuple[float, float, int]]] = {k: [] for k in dets}
    for d in dets.values():
        d.detect(imgs[0])
    for img in imgs:
        for name, d in dets.items():
            w0, c0 = time.perf_counter(), time.process_time()
            faces = d.detect(img)
            times[name].append(
                ((time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3, len(faces))
            )
    h, w = imgs[0].shape[:2]
    for name, t in times.items():
        print(
            f"{name}: {w}x{h}, {len(t)} frames: median {statistics.median(x[0] for x in t):.1f} ms "
            f"wall, {statistics.median(x[1] for x in t):.1f} ms CPU, "
            f"{statistics.mean(x[2] for x in t):.2f} faces/frame"
        )


if __name__ == "__main__":
    main()
