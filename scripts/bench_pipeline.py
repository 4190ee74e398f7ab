#!/usr/bin/env python
"""Benchmark: `facepipe run` vs the plain face_recognition loop, same machine, same run.

The plain loop is the library's own example approach: decode every frame, detect with
HOG, encode every face, compare with the enrolled encodings (``compare_faces``,
tolerance 0.6). It runs with ``upsample=1`` (the library's default, as in its
``facerec_from_video_file.py`` example) and ``upsample=0`` (faster, misses small faces).

    python scripts/bench_pipeline.py [--video PATH] [--out docs/benchmarks.md] [--runs 1]
        [--every-n 1,2] [--baseline-tree DIR] [--plain 1,0] [--variant 'workers.recognize=2']

Writes a markdown section with the machine, the load average and the command. Each
pipeline run also reports its CPU accounting (``facepipe run --json``): CPU seconds of
every process during the run (start-up excluded; the capture process, each stage's
workers, redis-server), the part inside model inference, and the overhead (CPU outside
inference / CPU inside it). ``--baseline-tree`` runs another checkout of the project
(e.g. ``git worktree add /tmp/base main``) in turn with this one, ``--runs`` times each
(A B A B ...), so that a change is compared within one run on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.datasets import datasets_root  # noqa: E402
from pipeline.machine import describe  # noqa: E402


def plain_loop(video: Path, known: dict[str, Path], upsample: int) -> dict:
    import face_recognition as fr

    names = list(known)
    encs = [fr.face_encodings(fr.load_image_file(str(p)))[0] for p in known.values()]
    cap = cv2.VideoCapture(str(video))
    per_frame, seen, frames_with_face = [], {}, 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    while True:
        ts = time.perf_counter()
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        locs = fr.face_locations(rgb, number_of_times_to_upsample=upsample)
        frames_with_face += bool(locs)
        for enc in fr.face_encodings(rgb, locs):
            match = fr.compare_faces(encs, enc, tolerance=0.6)
            dist = fr.face_distance(encs, enc)
            name = names[int(np.argmin(dist))] if any(match) else "unknown"
            seen[name] = seen.get(name, 0) + 1
        per_frame.append(time.perf_counter() - ts)
    total = time.perf_counter() - t0
    return {
        "cpu_s": time.process_time() - cpu0,
        "frames": len(per_frame),
        "seconds": total,
        "fps": len(per_frame) / total,
        "latency_ms_median": 1000 * statistics.median(per_frame),
        "latency_ms_p95": 1000 * float(np.percentile(per_frame, 95)),
        "frames_with_face": frames_with_face,
        "face_matches": seen,
    }


def variant_env(variant: str) -> dict[str, str]:
    """``section.key=value,...`` as the environment overrides (``FACEPIPE__SECTION__KEY``)."""
    out = {}
    for item in filter(None, variant.split(",")):
        key, _, value = item.partition("=")
        out["FACEPIPE__" + "__".join(p.upper() for p in key.strip().split("."))] = value
    return out


def pipeline_run(
    video: Path,
    known: dict[str, Path],
    every_n: int | None = None,
    tree: Path = ROOT,
    variant: str = "",
) -> dict:
    """``facepipe run`` of the checkout ``tree`` on ``video`` (default config unless
    ``every_n`` sets ``detector.every_n_frames`` or ``variant`` other keys), with a fresh
    home and private Redis."""
    home = Path(tempfile.mkdtemp(prefix="facepipe-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEPIPE")}
    env.update(FACEPIPE_HOME=str(home), FACEPIPE__METRICS__PORT="0", PYTHONPATH=str(tree))
    if every_n is not None:
        env["FACEPIPE__DETECTOR__EVERY_N_FRAMES"] = str(every_n)
    env.update(variant_env(variant))
    env.pop("REDIS_URL", None)
    cmd = [sys.executable, "-m", "pipeline", "run", str(video), "--json", "--no-serve"]
    for name, photo in known.items():
        cmd += ["--enroll", f"{name}={photo}"]
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tree)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # every process of the run, start-up and enrolment included (they are all reaped)
    cpu_all = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if r.returncode != 0:
        sys.exit(f"facepipe run ({tree}) failed with {r.returncode}:\n{r.stderr[-3000:]}")
    wall = time.perf_counter() - t0
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    ev = subprocess.run(
        [sys.executable, "-m", "pipeline", "events", "--json"],
        env=env, capture_output=True, text=True, check=True, cwd=tree,
    )  # fmt: skip
    events = [json.loads(line) for line in ev.stdout.splitlines()]
    # capture-to-event latency from the event store is not per frame; the run summary
    # holds the per-stage totals, the metrics histogram the per-frame latency
    return {
        "summary": summary,
        "wall_seconds_including_startup": wall,
        "cpu_seconds_including_startup": cpu_all,
        "events": [
            {k: e[k] for k in ("person", "frames", "age", "gender", "track")} for e in events
        ],
        "every_n_frames": every_n,
        "variant": variant,
        "tree": str(tree),
    }


def machine() -> str:
    load = os.getloadavg()
    return f"{describe()}; load average at start {load[0]:.1f}"


def cpu_line(summary: dict) -> str:
    """The run's CPU accounting in one line (empty if the run did not report it)."""
    cpu, inf = summary.get("cpu_s") or {}, summary.get("inference_cpu_s") or {}
    if not cpu or summary.get("overhead") is None:
        return ""
    frames = max(1, summary["processed"])
    return (
        f"CPU {sum(cpu.values()):.1f} s ({1000 * sum(cpu.values()) / frames:.0f} ms/frame: "
        + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
        + f"); inference {sum(inf.values()):.1f} s ("
        + ", ".join(f"{k} {v:.1f}" for k, v in inf.items())
        + f"); overhead {100 * summary['overhead']:.0f} %"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = datasets_root()
    default_video = root / "video" / "short_hamilton_clip.mp4" if root else None
    ap.add_argument("--video", type=Path, default=default_video)
    ap.add_argument("--out", type=Path, help="append a markdown report to this file")
    ap.add_argument(
        "--every-n",
        default="default",
        help="comma-separated detector.every_n_frames values to run the pipeline with "
        "('default': the configuration's)",
    )
    ap.add_argument("--runs", type=int, default=1, help="pipeline runs per configuration")
    ap.add_argument(
        "--baseline-tree",
        type=Path,
        help="another checkout of the project: its pipeline runs in turn with this one's",
    )
    ap.add_argument(
        "--plain", default="1,0", help="upsample values of the plain loop to run ('' for none)"
    )
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="another configuration to run too (this tree), as config keys: "
        "'workers.recognize=2,capture.batch_frames=1' (repeatable)",
    )
    args = ap.parse_args()
    rates = [None if x == "default" else int(x) for x in args.every_n.split(",")]
    ups = [int(x) for x in args.plain.split(",") if x != ""]
    if args.video is None or not args.video.is_file():
        sys.exit("no video: pass --video or provide ../shared/datasets/video")
    kdir = args.video.parent / "known"
    known = {p.stem: p for p in sorted(kdir.glob("*.png"))}
    trees = [ROOT] + ([args.baseline_tree.resolve()] if args.baseline_tree else [])
    info = machine()
    print(f"machine: {info}", file=sys.stderr)
    results: dict = {"machine": info, "video": str(args.video), "argv": sys.argv[1:]}
    results["pipelines"] = []
    configs = [(n, tree, "") for n in rates for tree in trees]
    configs += [(None, ROOT, v) for v in args.variant]
    for _ in range(args.runs):
        for n, tree, variant in configs:
            run = pipeline_run(args.video, known, n, tree, variant)
            results["pipelines"].append(run)
            s = run["summary"]
            print(f"{tree} every_n={n} {variant}: {s['fps']} frames/s, {s['people']}, jobs "
                  f"{s['stage_jobs']}; CPU with start-up "
                  f"{run['cpu_seconds_including_startup']:.1f} s; {cpu_line(s)}",
                  file=sys.stderr)  # fmt: skip
    results["pipeline"] = results["pipelines"][0]
    for up in ups:
        results[f"plain_upsample{up}"] = plain_loop(args.video, known, up)
        print(up, json.dumps(results[f"plain_upsample{up}"]), file=sys.stderr)
    print(json.dumps(results, indent=2))
    if args.out:
        write_markdown(args.out, results, ups)


def write_markdown(path: Path, r: dict, ups: list[int]) -> None:
    s = r["pipeline"]["summary"]
    lines = [
        f"\n## Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n",
        f"Machine: {r['machine']}. Video: `{Path(r['video']).name}`. "
        f"Command: `python scripts/bench_pipeline.py {' '.join(r['argv'])}`.\n",
        "| approach | frames | seconds | frames/s | CPU s | start-up s | latency ms per frame "
        "| names found |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in r["pipelines"]:
        ps, n = run["summary"], run["every_n_frames"]
        label = "default config" if n is None else f"detector.every_n_frames={n}"
        if run.get("variant"):
            label = f"`{run['variant']}`"
        if Path(run["tree"]) != ROOT:
            label += f", baseline `{run['tree']}`"
        lines.append(
            f"| `facepipe run` ({label}) | {ps['processed']} | {ps['seconds']:.1f} | "
            f"{ps['fps']:.1f} | {run['cpu_seconds_including_startup']:.1f} | "
            f"{run['wall_seconds_including_startup'] - ps['seconds']:.1f} | "
            f"capture-to-event p50 {1000 * ps['latency_s'].get('p50', 0):.0f}, "
            f"p95 {1000 * ps['latency_s'].get('p95', 0):.0f} | events: "
            + ", ".join(f"{k} {v}" for k, v in sorted(ps["people"].items()))
            + " |"
        )
    for up in ups:
        p = r[f"plain_upsample{up}"]
        lines.append(
            f"| plain face_recognition loop, HOG upsample {up} | {p['frames']} | "
            f"{p['seconds']:.1f} | {p['fps']:.1f} | {p['cpu_s']:.1f} | - | "
            f"median {p['latency_ms_median']:.0f}, "
            f"p95 {p['latency_ms_p95']:.0f} | face matches: "
            + ", ".join(f"{k} {v}" for k, v in sorted(p["face_matches"].items()))
            + " |"
        )
    lines.append("")
    lines.append(
        "CPU s: of every process, for `facepipe run` with its start-up (worker processes "
        "loading their models, enrolment); the CPU accounting below has the run alone. "
        "Start-up s: from `facepipe run` to its first capture (private Redis, workers "
        "started and warmed up, enrolment), i.e. the wall time not in `seconds`.\n"
    )
    lines.append(
        "Pipeline time by stage, first run (seconds inside each stage's job handler, "
        "summed over its workers / jobs): "
        + ", ".join(
            f"{k} {v:.1f} s / {s['stage_jobs'].get(k, 0)}" for k, v in s["stage_seconds"].items()
        )  # fmt: skip
        + f"; wall time including worker start-up "
        f"{r['pipeline']['wall_seconds_including_startup']:.1f} s.\n"
    )
    cpu = [(run, cpu_line(run["summary"])) for run in r["pipelines"]]
    if any(line for _, line in cpu):
        lines.append("CPU accounting per run (start-up excluded), in the order of the table:\n")
        lines += [f"* {line}" for _, line in cpu if line]
        lines.append("")
    with path.open("a") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
