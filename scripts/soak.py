#!/usr/bin/env python
"""Soak benchmark: a live camera through the real processes for minutes; RSS and Redis.

Serves a video in a loop as a live MJPEG camera on 127.0.0.1 (the demo clip, or
``--video``), starts a private redis-server and the distributed pipeline as separate OS
processes (``facepipe capture`` of the camera URL, one ``facepipe worker`` per stage,
``facepipe sink``, ``facepipe metrics``), and every ``--interval`` seconds samples each
process's resident memory (RSS) and CPU time, Redis' memory and keys (frames among them),
the frame counts (captured, processed, dropped by reason) and the queue depths; the
metrics endpoint is scraped at each sample, as Prometheus would. At the end the capture
is stopped (it prints its summary), the queues get ``--drain`` seconds, every process is
stopped (SIGTERM), and the results are written as JSON (``--out``) and printed as markdown.

    nice -n 10 python scripts/soak.py [--minutes 10] [--interval 10] [--video PATH]
        [--fps 15] [--out soak.json]

Any ``FACEPIPE__SECTION__KEY`` in the environment reaches every process (e.g.
``FACEPIPE__REDIS__FRAME_TTL_S=60``). Results of a run: ``docs/soak.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.bus import Bus, connect  # noqa: E402
from pipeline.camera_server import MjpegCamera  # noqa: E402
from pipeline.machine import info as machine_info  # noqa: E402
from pipeline.metrics import Metrics  # noqa: E402
from pipeline.redis_server import PrivateRedis  # noqa: E402
from pipeline.stages import STAGE_NAMES  # noqa: E402

try:  # psutil when the environment has it, else /proc
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
WORKER_STAGES = [s for s in STAGE_NAMES if s != "sink"]


def rss_and_cpu(pid: int) -> tuple[int | None, float | None]:
    """Resident bytes and CPU seconds (user + system) of a process; None if it is gone."""
    if psutil is not None:
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                t = p.cpu_times()
                return p.memory_info().rss, t.user + t.system
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None, None
    try:
        rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return rss_pages * PAGE, (int(stat[11]) + int(stat[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None, None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    args: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    fh: TextIO | None = None
    exit_code: int | None = None
    exited_at: float | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid


@dataclass
class Soak:
    args: argparse.Namespace
    work: Path
    env: dict[str, str]
    procs: dict[str, Proc] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    t0: float = 0.0

    def start(self, name: str, *cli: str) -> Proc:
        log = self.work / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = Proc(name, [sys.executable, "-m", "pipeline", *cli], log)
        proc.fh = log.open("w")
        proc.popen = subprocess.Popen(
            proc.args, env=self.env, cwd=ROOT, stdout=proc.fh, stderr=subprocess.STDOUT
        )
        self.procs[name] = proc
        return proc

    def check_exits(self) -> None:
        for p in self.procs.values():
            if p.exit_code is None and p.popen is not None and p.popen.poll() is not None:
                p.exit_code, p.exited_at = p.popen.returncode, time.monotonic() - self.t0
                print(f"soak: {p.name} exited with {p.exit_code} (log {p.log})", file=sys.stderr)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        p = self.procs[name]
        if p.popen is None or p.popen.poll() is not None:
            return
        p.popen.send_signal(sig)
        try:
            p.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            p.popen.kill()
            p.popen.wait()
        if p.exit_code is None:
            p.exit_code = p.popen.returncode


def wait_workers(bus: Bus, soak: Soak, timeout: float) -> float:
    """Wait until a worker listens on every stage's queue; returns the seconds it took."""
    from rq import Worker

    t0 = time.monotonic()
    wanted = {bus.queue_name(s) for s in STAGE_NAMES}
    while time.monotonic() - t0 < timeout:
        soak.check_exits()
        dead = [p.name for p in soak.procs.values() if p.exit_code is not None]
        if dead:
            sys.exit(f"soak: {', '.join(dead)} exited while starting (logs in {soak.work}/logs)")
        names = {q for w in Worker.all(connection=bus.conn) for q in w.queue_names()}
        if wanted <= names:
            return time.monotonic() - t0
        time.sleep(1.0)
    sys.exit(f"soak: workers not ready after {timeout:.0f} s (logs in {soak.work}/logs)")


def redis_sample(bus: Bus) -> dict[str, Any]:
    conn = bus.conn
    mem = conn.info("memory")
    keys: dict[str, int] = {}
    frame_keys: list[bytes] = []
    for k in conn.scan_iter(count=1000):
        parts = k.decode(errors="replace").split(":")
        kind = ":".join(parts[:2]) if parts[0] in (bus.prefix, "rq") else parts[0]
        keys[kind] = keys.get(kind, 0) + 1
        if kind == f"{bus.prefix}:frame":
            frame_keys.append(k)
    pipe = conn.pipeline(transaction=False)
    for k in frame_keys:
        pipe.strlen(k)
    frame_bytes = sum(pipe.execute()) if frame_keys else 0
    return {
        "used_memory": int(mem["used_memory"]),
        "used_memory_rss": int(mem["used_memory_rss"]),
        "used_memory_peak": int(mem["used_memory_peak"]),
        "keys": int(conn.dbsize()),
        "keys_by_kind": dict(sorted(keys.items())),
        "frame_keys": len(frame_keys),
        "frame_bytes": int(frame_bytes),
        "registry_sessions": int(conn.hlen(bus.key("streams"))),
        "metrics_fields": int(conn.hlen(bus.key("metrics", "counters")))
        + int(conn.hlen(bus.key("metrics", "histograms"))),
    }


def frames_sample(metrics: Metrics) -> dict[str, Any]:
    out: dict[str, Any] = {"dropped": {}}
    for (name, labels), v in metrics.counter_values().items():
        if name == "facepipe_frames_captured_total":
            out["captured"] = out.get("captured", 0) + int(v)
        elif name == "facepipe_frames_processed_total":
            out["processed"] = out.get("processed", 0) + int(v)
        elif name == "facepipe_frames_dropped_total":
            reason = dict(labels).get("reason", "")
            out["dropped"][reason] = out["dropped"].get(reason, 0) + int(v)
    out.setdefault("captured", 0)
    out.setdefault("processed", 0)
    return out


def scrape(url: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read()
        return {"ok": True, "seconds": time.perf_counter() - t0, "bytes": len(body)}
    except OSError as exc:
        return {"ok": False, "error": str(exc)}


def take_sample(soak: Soak, bus: Bus, metrics: Metrics, metrics_url: str, pids: dict) -> None:
    soak.check_exits()
    rss: dict[str, int | None] = {}
    cpu: dict[str, float | None] = {}
    for name, pid in pids.items():
        rss[name], cpu[name] = rss_and_cpu(pid)
    s = {
        "t": round(time.monotonic() - soak.t0, 2),
        "wall": time.time(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "rss": rss,
        "cpu_s": cpu,
        "redis": redis_sample(bus),
        "frames": frames_sample(metrics),
        "queues": {stage: bus.depth(stage) for stage in STAGE_NAMES},
        "scrape": scrape(metrics_url),
    }
    soak.samples.append(s)
    fr, rd = s["frames"], s["redis"]
    print(
        f"soak: t={s['t']:.0f}s captured {fr['captured']} processed {fr['processed']} "
        f"dropped {sum(fr['dropped'].values())} | redis {rd['used_memory'] / 2**20:.1f} MB, "
        f"{rd['keys']} keys ({rd['frame_keys']} frames) | queues "
        f"{sum(s['queues'].values())} | load {s['loadavg'][0]}",
        file=sys.stderr,
        flush=True,
    )


def growth(values: list[float], n: int = 3) -> dict[str, float] | None:
    """Mean of the first and last ``n`` values and the change (None if too few)."""
    if len(values) < 2:
        return None
    n = min(n, len(values) // 2)
    first, last = statistics.fmean(values[:n]), statistics.fmean(values[-n:])
    return {
        "first": first,
        "last": last,
        "change": last - first,
        "change_pct": 100.0 * (last - first) / first if first else 0.0,
    }


def summarize(samples: list[dict[str, Any]], frame_ttl_s: float, warmup: float) -> dict[str, Any]:
    """Growth of each process's RSS, Redis memory and keys (samples after ``warmup`` s)."""
    names = list(samples[0]["rss"]) if samples else []
    samples = [s for s in samples if s["t"] >= warmup] or samples[-1:]
    rss = {}
    for name in names:
        vals = [s["rss"][name] for s in samples if s["rss"].get(name) is not None]
        rss[name] = growth([float(v) for v in vals])
    redis_mem = [float(s["redis"]["used_memory"]) for s in samples]
    # frames live frame_ttl_s: Redis fills up for that long, then should stay level
    settled = [float(s["redis"]["used_memory"]) for s in samples if s["t"] >= frame_ttl_s + 30]
    return {
        "rss": rss,
        "redis_used_memory": growth(redis_mem),
        "redis_used_memory_after_frame_ttl": growth(settled),
        "redis_keys": growth([float(s["redis"]["keys"]) for s in samples]),
    }


def mb(v: float | None) -> str:
    return "-" if v is None else f"{v / 2**20:.0f}"


def markdown(result: dict[str, Any], max_rows: int = 13) -> str:
    samples = result["samples"]
    if not samples:
        return "no samples\n"
    names = list(samples[0]["rss"])
    step = max(1, -(-len(samples) // (max_rows - 1)))
    rows = samples[::step]
    if rows[-1] is not samples[-1]:
        rows.append(samples[-1])
    out = ["RSS per process (MB) over time:", ""]
    out.append("| t (s) | " + " | ".join(names) + " |")
    out.append("|---:|" + "---:|" * len(names))
    for s in rows:
        out.append(f"| {s['t']:.0f} | " + " | ".join(mb(s["rss"].get(n)) for n in names) + " |")
    out += ["", "Redis and frames over time:", ""]
    out.append(
        "| t (s) | used_memory (MB) | keys | frame keys | frame MB | sessions in registry | "
        "metric fields | captured | processed | dropped | queued | load |"
    )
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for s in rows:
        r, f = s["redis"], s["frames"]
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(f["dropped"].items())) or "0"
        out.append(
            f"| {s['t']:.0f} | {r['used_memory'] / 2**20:.1f} | {r['keys']} | {r['frame_keys']} "
            f"| {r['frame_bytes'] / 2**20:.1f} | {r['registry_sessions']} | "
            f"{r['metrics_fields']} | {f['captured']} | {f['processed']} | {dropped} | "
            f"{sum(s['queues'].values())} | {s['loadavg'][0]} |"
        )
    out += [
        "",
        f"Growth, mean of the first 3 samples after {result['warmup_s']:g} s vs the last 3:",
        "",
    ]
    out.append("| what | first | last | change | change % |")
    out.append("|---|---:|---:|---:|---:|")
    g = result["growth"]
    for name, v in g["rss"].items():
        if v:
            out.append(
                f"| RSS {name} (MB) | {v['first'] / 2**20:.1f} | {v['last'] / 2**20:.1f} | "
                f"{v['change'] / 2**20:+.1f} | {v['change_pct']:+.1f} |"
            )
    for key, label in (
        ("redis_used_memory", "Redis used_memory (MB)"),
        ("redis_used_memory_after_frame_ttl", "Redis used_memory once frames expire (MB)"),
    ):
        v = g[key]
        if v:
            out.append(
                f"| {label} | {v['first'] / 2**20:.1f} | {v['last'] / 2**20:.1f} | "
                f"{v['change'] / 2**20:+.1f} | {v['change_pct']:+.1f} |"
            )
    v = g["redis_keys"]
    if v:
        out.append(
            f"| Redis keys | {v['first']:.0f} | {v['last']:.0f} | {v['change']:+.0f} | "
            f"{v['change_pct']:+.1f} |"
        )
    return "\n".join(out) + "\n"


def enroll_args(video: Path | None, work: Path) -> list[tuple[str, Path]]:
    """Who to enroll: the demo clip's face, or the PNGs in a ``known/`` folder beside the
    video (the datasets' layout), else nobody."""
    if video is None:
        from pipeline.demo import write_enrollment_photo

        return [("eileen-collins", write_enrollment_photo(work / "eileen.png"))]
    known = video.parent / "known"
    return [(p.stem, p) for p in sorted(known.glob("*.png"))] if known.is_dir() else []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Soak benchmark: a live camera through the real processes; RSS per "
        "process and Redis memory over time."
    )
    ap.add_argument(
        "--video", type=Path, help="video to serve as the camera (default: the demo clip)"
    )
    ap.add_argument("--minutes", type=float, default=10.0, help="how long to sample (10)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples (10)")
    ap.add_argument("--fps", type=float, default=15.0, help="camera frame rate (15)")
    ap.add_argument("--out", type=Path, default=Path("soak.json"), help="results JSON (soak.json)")
    ap.add_argument("--drain", type=float, default=30.0,
                    help="seconds the queues get after the capture stops (30)")  # fmt: skip
    ap.add_argument("--startup-timeout", type=float, default=600.0,
                    help="seconds the workers get to load their models (600)")  # fmt: skip
    ap.add_argument("--warmup", type=float, default=60.0,
                    help="seconds left out of the growth figures (start-up; 60)")  # fmt: skip
    ap.add_argument("--churn", type=float, default=0.0,
                    help="every this many seconds, stop the capture and start one under a new "
                    "stream name (cam-1, cam-2, ...), as cameras or files come and go; "
                    "0: one capture (default)")  # fmt: skip
    ap.add_argument("--no-enroll", action="store_true", help="enroll nobody")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs, event store)")
    args = ap.parse_args(argv)
    if args.video is not None and not args.video.is_file():
        ap.error(f"no such video: {args.video}")
    if args.minutes < 0 or args.interval <= 0:
        ap.error("--minutes must be >= 0 and --interval > 0")

    work = Path(tempfile.mkdtemp(prefix="facepipe-soak-"))
    video = args.video
    if video is None:
        from pipeline.demo import make_demo_video

        video = make_demo_video(work / "demo.mp4", frames=90)
    env = {**os.environ, "FACEPIPE_HOME": str(work / "home"), "PYTHONPATH": str(ROOT)}
    metrics_port = free_port()
    env["FACEPIPE__METRICS__PORT"] = str(metrics_port)
    command = "python scripts/soak.py " + " ".join(argv if argv is not None else sys.argv[1:])

    from pipeline.config import load_config

    config = load_config(os.environ.get("FACEPIPE_CONFIG"))
    with PrivateRedis() as server, MjpegCamera(video, fps=args.fps) as camera:
        env["REDIS_URL"] = server.url
        bus = Bus(connect(server.url), config.redis.prefix, config.redis.session_ttl_s)
        metrics = Metrics(bus)
        soak = Soak(args, work, env)
        try:
            if not args.no_enroll:
                for name, photo in enroll_args(args.video, work):
                    subprocess.run(
                        [sys.executable, "-m", "pipeline", "enroll", name, str(photo)],
                        env=env, cwd=ROOT, check=True, capture_output=True,
                    )  # fmt: skip
            t_start = time.monotonic()
            for stage in WORKER_STAGES:
                soak.start(stage, "worker", stage)
            soak.start("sink", "sink", "--metrics-port", "0")
            soak.start("metrics", "metrics", "--port", str(metrics_port))
            startup = wait_workers(bus, soak, args.startup_timeout)
            print(f"soak: workers ready after {startup:.0f} s; capturing {camera.url}",
                  file=sys.stderr)  # fmt: skip
            soak.start("capture", "capture", camera.url, "--stream", "cam")
            deadline = time.monotonic() + 120  # sampling starts once the capture runs
            while not bus.streams() and time.monotonic() < deadline:
                soak.check_exits()
                if soak.procs["capture"].exit_code is not None:
                    sys.exit(f"soak: the capture exited (log {soak.procs['capture'].log})")
                time.sleep(0.2)
            pids = {name: p.pid for name, p in soak.procs.items()}
            pids["redis-server"] = server.proc.pid if server.proc else -1
            pids["camera (this script)"] = os.getpid()
            soak.t0 = time.monotonic()
            end = soak.t0 + args.minutes * 60
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            streams = 0
            while True:
                now = time.monotonic()  # (no new capture just before the end)
                if args.churn and now - soak.t0 >= (streams + 1) * args.churn and now < end - 1:
                    streams += 1
                    soak.stop("capture", signal.SIGTERM)
                    soak.start("capture", "capture", camera.url, "--stream", f"cam-{streams}")
                    pids["capture"] = soak.procs["capture"].pid
                take_sample(soak, bus, metrics, metrics_url, pids)
                nxt = soak.t0 + len(soak.samples) * args.interval
                if nxt > end + 1e-6:
                    break
                time.sleep(max(0.0, nxt - time.monotonic()))
            # stop the capture (it prints its summary), let the queues drain, sample again
            soak.stop("capture", signal.SIGTERM)
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline and any(bus.depth(s) for s in STAGE_NAMES):
                time.sleep(0.5)
            take_sample(soak, bus, metrics, metrics_url, pids)
            final = soak.samples.pop()  # not part of the time series: the capture is gone
        finally:
            # SIGTERM: every facepipe process stops cleanly on it (the capture prints its
            # summary), and SIGINT is ignored by processes started in the background by sh
            for name in reversed(list(soak.procs)):
                soak.stop(name, signal.SIGTERM)
            for p in soak.procs.values():
                if p.fh:
                    p.fh.close()
        capture_log = soak.procs["capture"].log.read_text() if "capture" in soak.procs else ""

    result = {
        "machine": machine_info(),
        "command": command,
        "video": str(args.video) if args.video else "demo clip (pipeline.demo, 90 frames)",
        "camera": {"fps": args.fps, "frames_sent": camera.frames_sent, "url": camera.url},
        "minutes": args.minutes,
        "interval_s": args.interval,
        "workers_startup_s": round(startup, 1),
        "wall_start_to_end_s": round(time.monotonic() - t_start, 1),
        "config": {
            "frame_ttl_s": config.redis.frame_ttl_s,
            "session_ttl_s": config.redis.session_ttl_s,
            "stream_retention_s": getattr(config.redis, "stream_retention_s", "n/a"),
            "detector": config.detector.backend,
            "attributes": config.attributes.backend,
            "facepipe_env": {k: v for k, v in os.environ.items() if k.startswith("FACEPIPE__")},
        },
        "pids": pids,
        "exits": {n: p.exit_code for n, p in soak.procs.items()},
        "died_during_soak": {
            n: p.exited_at for n, p in soak.procs.items() if p.exited_at is not None
        },
        "capture_summary": [ln for ln in capture_log.splitlines() if "captured" in ln][-1:],
        "after_drain": {
            "frames": final["frames"],
            "queues": final["queues"],
            "redis": final["redis"],
        },  # fmt: skip
        "samples": soak.samples,
        "warmup_s": args.warmup,
        "churn_s": args.churn,
        "growth": summarize(soak.samples, config.redis.frame_ttl_s, args.warmup),
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(markdown(result))
    print(f"results: {args.out}; logs: {work / 'logs'}" + ("" if args.keep else " (removed)"))
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 1 if result["died_during_soak"] else 0


if __name__ == "__main__":
    sys.exit(main())
