"""Start-up time and memory of each stage worker, and the cost of importing the CLI.

For every stage, starts ``python -m pipeline worker STAGE`` (the ``facepipe worker``
command, default config unless ``FACEPIPE_CONFIG`` is set) against a private Redis
server and measures:

* ``ready_s``: seconds from process start until rq lists the worker as registered (the
  stage has built and warmed up its model by then: ``run_worker`` warms up first), and
  ``cpu_s``, the CPU time the process used until then (less sensitive than wall time to
  other load on the machine);
* ``rss_mib`` / ``peak_mib``: the process's VmRSS / VmHWM once registered (plus
  ``--settle`` seconds);
* ``tensorflow``: whether a TensorFlow shared library is mapped into the process.

* ``modules``: how many modules the worker had imported, and the heavy packages and
  training modules among them (it writes its ``sys.modules`` when it exits).

Then, in a fresh interpreter, the time to ``import pipeline.cli`` and which heavy
packages and training modules that import pulled in. Each measurement is repeated
``--repeat`` times; the median is reported. Usage::

    python scripts/bench_workers.py [--repeat 3] [--stages detect,sink] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rq import Worker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.redis_server import PrivateRedis  # noqa: E402
from pipeline.stages import STAGE_NAMES  # noqa: E402

HEAVY = ("tensorflow", "keras", "dlib", "cv2", "onnxruntime", "scipy", "skimage")
# training code, before (pipeline.training, pipeline.vj.train, ...) and after the split
TRAINING = (
    r"^training(\.|$)|^pipeline\.training"
    r"|^pipeline\.(vj|cnn_detector|agegender)\.(train|training|data|stacking|bench|boost|augment)$"
)

IMPORT_PROBE = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import pipeline.cli
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmRSS"))
out = {"import_s": dt, "cpu_s": cpu, "rss_mib": rss / 1024, "modules": sorted(sys.modules)}
print(json.dumps(out))
"""


# `facepipe worker STAGE` that, when it exits, writes the names of its imported modules
WORKER = """
import atexit, json, sys
stage, name, out = sys.argv[1:4]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
from pipeline.cli import main
main(["worker", stage, "--name", name], prog_name="facepipe")
"""


def notable(modules: list[str]) -> list[str]:
    """The heavy packages and training modules among ``modules``."""
    return sorted(h for h in HEAVY if h in modules) + sorted(
        m for m in modules if re.search(TRAINING, m)
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def maps_tensorflow(pid: int) -> bool:
    """True when a TensorFlow shared library is mapped into the process."""
    return "tensorflow" in Path(f"/proc/{pid}/maps").read_text()


def bench_worker(stage: str, url: str, home: str, settle: float, timeout: float) -> dict:
    import redis

    conn = redis.Redis.from_url(url)
    name = f"bench-{stage}-{time.monotonic_ns()}"
    env = dict(os.environ, REDIS_URL=url, FACEPIPE_HOME=home)
    modules = Path(home) / f"{name}.modules.json"
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, stage, name, str(modules)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{stage} worker exited: {proc.stderr.read().decode()[-2000:]}")
            if any(w.name == name for w in Worker.all(connection=conn)):
                ready = time.perf_counter() - t0
                cpu = cpu_seconds(proc.pid)
                break
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{stage} worker not ready within {timeout} s")
            time.sleep(0.05)
        time.sleep(settle)
        mem = proc_status(proc.pid)
        tf = maps_tensorflow(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    names = json.loads(modules.read_text()) if modules.exists() else []
    return {
        "ready_s": ready,
        "cpu_s": cpu,
        "rss_mib": mem["VmRSS"],
        "peak_mib": mem["VmHWM"],
        "tensorflow": tf,
        "modules": len(names),
        "heavy": notable(names) if names else ["?"],
    }


def bench_import() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    names = result.pop("modules")
    result["modules"] = len(names)
    result["heavy"] = notable(names)
    return result


def median_of(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            out[key] = statistics.median(r[key] for r in runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stages", default=",".join(STAGE_NAMES), help="comma-separated")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds after ready before RSS")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    results: dict[str, dict] = {}
    results["import pipeline.cli"] = median_of([bench_import() for _ in range(args.repeat)])
    with PrivateRedis() as server, tempfile.TemporaryDirectory() as home:
        for stage in args.stages.split(","):
            runs = [
                bench_worker(stage, server.url, home, args.settle, args.timeout)
                for _ in range(args.repeat)
            ]
            results[stage] = median_of(runs)

    print(f"{'what':22} {'start-up s':>10} {'CPU s':>6} {'RSS MiB':>8} {'peak MiB':>8}  notes")
    for what, r in results.items():
        t = r.get("ready_s", r.get("import_s"))
        notes = f"{r['modules']} modules, of note: {', '.join(r['heavy']) or '-'}"
        if "tensorflow" in r:
            notes += f"; TF library {'mapped' if r['tensorflow'] else 'not mapped'}"
        print(
            f"{what:22} {t:10.2f} {r['cpu_s']:6.2f} {r['rss_mib']:8.0f} "
            f"{r.get('peak_mib', 0):8.0f}  {notes}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
