#!/usr/bin/env python
"""Live cameras per machine: N simultaneous live cameras through `facepipe run`.

    python scripts/bench_live.py --video ../shared/datasets/video/short_hamilton_clip.mp4 \\
        --cameras 1,2,3 --seconds 60 --fps 30 --out docs/benchmarks.md

For each N of ``--cameras``: N MJPEG-over-HTTP cameras on 127.0.0.1 (the video in a loop,
``pipeline/camera_server.py``, each at ``--fps``), then ``facepipe run URL1 ... URLN``
at the default configuration (workers, sink, the web UI off; the redis-server it uses is
the script's, ``REDIS_URL``), stopped with SIGTERM (as Ctrl-C) after ``--seconds`` of
capture (its summary accounts for every frame: processed, or dropped with a reason).
Reported per N: frames captured, processed and dropped by reason over all cameras, the
share dropped, the share of each camera's processed frames that went through detection
(live cameras detect less often when the detect stage has no room: the tracker carries
the faces between detections), capture-to-event latency p50 and p95 over all frames (the
run's histogram; bucket edges at 0.1, 0.25, 0.5 s), Redis' ``used_memory`` (peak and at
the end of the capture, ``INFO memory`` read twice a second), and whether the issue-14
goal holds (p95 <= 250 ms and < 1 % dropped). Config overrides as ``--set key=value``
(FACEPIPE__ variables), e.g. ``--set workers.detect=2``.
A benchmark to run by hand on a quiet machine, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import machine  # noqa: E402
from pipeline.bus import connect  # noqa: E402
from pipeline.camera_server import MjpegCamera  # noqa: E402
from pipeline.redis_server import PrivateRedis  # noqa: E402

GOAL_P95_S = 0.25
GOAL_DROPPED = 0.01


def run_cameras(video: Path, n: int, seconds: float, fps: float, overrides: dict[str, str],
                startup_timeout: float) -> dict[str, Any]:  # fmt: skip
    """One `facepipe run` on ``n`` live cameras for ``seconds``; its JSON summary, with
    Redis' used_memory (bytes) as ``_redis_peak`` and ``_redis_end`` (end of the capture)."""
    work = Path(tempfile.mkdtemp(prefix="facepipe-live-"))
    server = PrivateRedis().start()  # the run's Redis: its memory is read from here
    env = {**os.environ, "FACEPIPE_HOME": str(work / "home"), "PYTHONPATH": str(ROOT),
           "FACEPIPE__METRICS__PORT": "0", "REDIS_URL": server.url}  # fmt: skip
    for key, value in overrides.items():
        env["FACEPIPE__" + key.upper().replace(".", "__")] = value
    conn = connect(server.url)
    cams = [MjpegCamera(video, fps=fps).start() for _ in range(n)]
    try:
        cli = [sys.executable, "-m", "pipeline", "run", "--json", "--no-serve",
               "--progress-every", "0"]  # fmt: skip
        for i, cam in enumerate(cams, 1):
            cli += [cam.url, "--stream", f"cam{i}"]
        log = work / "run.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(cli, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
            # the run captures once its workers are up: count the seconds from there
            deadline = time.monotonic() + startup_timeout
            while "starting workers" not in log.read_text(errors="replace") or not any(
                c.frames_sent for c in cams
            ):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    sys.exit(f"bench_live: the run did not start (log {log})")
                time.sleep(0.2)
            peak = used = 0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                used = int(conn.info("memory")["used_memory"])
                peak = max(peak, used)
                time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            # SIGTERM stops `facepipe run` as Ctrl-C does, and unlike SIGINT it is not
            # ignored when this script runs as a background job of a shell
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()  # its workers die with it
                proc.communicate()
                sys.exit(f"bench_live: the run did not stop within 300 s (log {log})")
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if not lines:
            sys.exit(f"bench_live: no summary from the run (log {log})")
        summary = json.loads(lines[-1])
        summary["_sent"] = [c.frames_sent for c in cams]
        summary["_redis_peak"], summary["_redis_end"] = peak, used
        return summary
    finally:
        for cam in cams:
            cam.close()
        server.stop()


def row(n: int, s: dict[str, Any], seconds: float, fps: float) -> dict[str, Any]:
    captured = processed = 0
    dropped: dict[str, int] = {}
    for st in s["streams"].values():
        captured += int(st.get("captured", 0))
        processed += int(st.get("processed", 0))
        for k, v in st.items():
            if k.startswith("dropped:"):
                dropped[k[len("dropped:") :]] = dropped.get(k[len("dropped:") :], 0) + int(v)
    lat = s.get("latency_s", {})
    share = sum(dropped.values()) / captured if captured else 1.0
    p95 = float(lat.get("p95", float("inf")))
    # per camera: the share of its processed frames detected (None: not reported)
    detected = {name: st.get("detection_rate") for name, st in sorted(s["streams"].items())}
    undetected_load = sum(int(st.get("undetected:load", 0)) for st in s["streams"].values())
    return {
        "cameras": n, "captured": captured, "processed": processed, "dropped": dropped,
        "dropped_share": share, "p50_s": lat.get("p50"), "p95_s": lat.get("p95"),
        "offered_fps": n * fps, "processed_fps": processed / seconds,
        "detection_rate": detected, "undetected_load": undetected_load,
        "redis_peak_bytes": s.get("_redis_peak"), "redis_end_bytes": s.get("_redis_end"),
        "holds": p95 <= GOAL_P95_S and share < GOAL_DROPPED,
        "people": s.get("people", {}), "cpu_s": s.get("cpu_s", {}),
        "stage_jobs": s.get("stage_jobs", {}),
    }  # fmt: skip


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, load: float) -> str:
    cpu = machine.cpu_model()
    lines = [
        f"## Live cameras per machine, run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; load "
        f"average at start {load:.1f}. Command: `python scripts/bench_live.py "
        f"{' '.join(sys.argv[1:])}`. Each camera: `{args.video.name}` in a loop at "
        f"{args.fps:g} frames/s over MJPEG from 127.0.0.1; `facepipe run` at the default "
        f"configuration{' with ' + ', '.join(args.set) if args.set else ''}, "
        f"{args.seconds:g} s of capture, then SIGTERM (as Ctrl-C).",
        "",
        "| cameras | offered frames/s | captured | processed | dropped (by reason) | dropped | "
        "processed frames detected, per camera | latency p50 / p95 ms | Redis used_memory "
        "peak / end MiB | goal (p95 <= 250 ms, < 1 % dropped) |",
        "|---:|---:|---:|---:|---|---:|---|---:|---:|---|",
    ]
    for r in rows:
        why = ", ".join(f"{k} {v}" for k, v in sorted(r["dropped"].items())) or "-"
        p50 = "-" if r["p50_s"] is None else f"{1000 * r['p50_s']:.0f}"
        p95 = "-" if r["p95_s"] is None else f"{1000 * r['p95_s']:.0f}"
        rates = r["detection_rate"].values()
        det = " / ".join("-" if v is None else f"{100 * v:.0f} %" for v in rates)
        lines.append(
            f"| {r['cameras']} | {r['offered_fps']:g} | {r['captured']} | {r['processed']} | "
            f"{why} | {100 * r['dropped_share']:.1f} % | {det or '-'} | {p50} / {p95} | "
            f"{mib(r['redis_peak_bytes'])} / {mib(r['redis_end_bytes'])} | "
            f"{'holds' if r['holds'] else 'no'} |"
        )
    held = [r["cameras"] for r in rows if r["holds"]]
    lines += ["", f"Largest number of cameras that holds the goal: {max(held) if held else 0}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, required=True, help="video each camera serves")
    ap.add_argument("--cameras", default="1,2,3", help="numbers of cameras to try (1,2,3)")
    ap.add_argument("--seconds", type=float, default=60.0, help="capture time per try (60)")
    ap.add_argument("--fps", type=float, default=30.0, help="frame rate of each camera (30)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, repeatable (e.g. workers.detect=2)")  # fmt: skip
    ap.add_argument("--startup-timeout", type=float, default=600.0)
    ap.add_argument("--out", type=Path, help="append the markdown table to this file")
    args = ap.parse_args(argv)
    if not args.video.is_file():
        ap.error(f"no such video: {args.video}")
    try:
        counts = [int(c) for c in args.cameras.split(",")]
        overrides = dict(kv.split("=", 1) for kv in args.set)
    except ValueError:
        ap.error("--cameras takes numbers like 1,2,3 and --set KEY=VALUE")
    load = os.getloadavg()[0]
    rows = []
    for n in counts:
        print(f"bench_live: {n} camera(s) for {args.seconds:g} s...", file=sys.stderr)
        r = row(n, run_cameras(args.video, n, args.seconds, args.fps, overrides,
                               args.startup_timeout), args.seconds, args.fps)  # fmt: skip
        print(f"bench_live: {json.dumps(r)}", file=sys.stderr)
        rows.append(r)
    text = markdown(rows, args, load)
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
