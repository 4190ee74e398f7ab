"""`facepipe run`: the whole pipeline on one machine.

Starts a private Redis server when no ``REDIS_URL`` is given, starts each stage's workers
as separate OS processes (``facepipe worker STAGE``), captures every source into the
pipeline, waits until every frame is accounted for (processed or dropped with a reason)
and every queue has drained, then stops the workers and the server.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rq import Worker

from pipeline.bus import detection_rate
from pipeline.capture import Capture, CaptureResult, wait_accounted
from pipeline.config import Config
from pipeline.redis_server import PrivateRedis, die_with_parent
from pipeline.retry import REDIS_DOWN, RedisHealth
from pipeline.runtime import Runtime
from pipeline.sources import Source
from pipeline.stages import STAGE_NAMES

log = logging.getLogger(__name__)


class PipelineError(RuntimeError):
    pass


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (Linux ``/proc``); None if gone or
    unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class WorkerProc:
    stage: str
    index: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class RunSummary:
    streams: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_jobs: dict[str, int] = field(default_factory=dict)
    people: dict[str, int] = field(default_factory=dict)
    tracks_merged: int = 0  # re-identification merges (several tracks, one event)
    failed_jobs: int = 0
    interrupted: bool = False
    incomplete: str = ""  # why the run stopped waiting before every frame was accounted
    lost: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # Redis lost these
    latency_s: dict[str, float] = field(default_factory=dict)  # capture->event p50/p95
    # CPU seconds during the run (start-up excluded) of every process: "run" (this one:
    # captures, waiting), each stage's workers, "redis-server" (a private one only)
    cpu_s: dict[str, float] = field(default_factory=dict)
    inference_cpu_s: dict[str, float] = field(default_factory=dict)  # inside model calls

    @property
    def overhead(self) -> float | None:
        """CPU seconds outside model inference per CPU second inside it (all processes)."""
        inside = sum(self.inference_cpu_s.values())
        if not inside or not self.cpu_s:
            return None
        return (sum(self.cpu_s.values()) - inside) / inside

    @property
    def frames(self) -> int:
        return sum(s.get("captured", 0) for s in self.streams.values())

    @property
    def processed(self) -> int:
        return sum(s.get("processed", 0) for s in self.streams.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "streams": self.streams,
            "frames": self.frames,
            "processed": self.processed,
            "seconds": round(self.seconds, 3),
            "fps": round(self.processed / self.seconds, 2) if self.seconds else 0.0,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "stage_jobs": self.stage_jobs,
            "people": self.people,
            "tracks_merged": self.tracks_merged,
            "failed_jobs": self.failed_jobs,
            "latency_s": {k: round(v, 3) for k, v in self.latency_s.items()},
            "interrupted": self.interrupted,
            "incomplete": self.incomplete,
            "cpu_s": {k: round(v, 3) for k, v in self.cpu_s.items()},
            "inference_cpu_s": {k: round(v, 3) for k, v in self.inference_cpu_s.items()},
            "overhead": None if self.overhead is None else round(self.overhead, 4),
        }


class LocalPipeline:
    """Redis (own or given) + worker processes + captures, for one machine."""

    def __init__(
        self,
        config: Config,
        config_path: str | None = None,
        serve_metrics: bool = True,
        log_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.serve_metrics = serve_metrics
        self.redis: PrivateRedis | None = None
        self.workers: list[WorkerProc] = []
        self.rt: Runtime | None = None
        self.log_dir = log_dir or (config.home / "logs" / time.strftime("run-%Y%m%dT%H%M%S"))
        self.captures: list[Capture] = []
        self.health: RedisHealth | None = None
        # the counts last read from Redis per stream ("STREAM/SESSION", by drain()): with
        # the captures' own, what a summary can say when Redis is gone at the end
        self.known_counts: dict[str, dict[str, int]] = {}

    # ----- lifecycle ---------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> Runtime:
        url = self.config.redis.url
        if not url:
            self.redis = PrivateRedis().start()
            url = self.redis.url
            log.info("started private redis-server at %s", url)
        self.rt = Runtime.from_config(self.config, url)
        self.rt.bus.conn.ping()
        self.health = RedisHealth(
            self.rt.bus.conn, who="run", cap_s=self.config.redis.reconnect_max_s
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, REDIS_URL=url, PYTHONUNBUFFERED="1")
        if self.config_path:
            env["FACEPIPE_CONFIG"] = str(Path(self.config_path).resolve())
        counts = self.config.workers.model_dump()
        for stage in STAGE_NAMES:
            for i in range(counts[stage]):
                log_path = self.log_dir / f"{stage}-{i}.log"
                fh = open(log_path, "wb")  # noqa: SIM115 - owned by the child
                proc = subprocess.Popen(
                    [sys.executable, "-m", "pipeline", "worker", stage],
                    env=env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C reaches us; we stop them in order
                    preexec_fn=die_with_parent,  # and they never outlive us
                )
                fh.close()
                self.workers.append(WorkerProc(stage, i, proc, log_path))
        if self.serve_metrics and self.config.metrics.port:
            from pipeline.metrics import serve

            try:
                serve(self.rt.bus, self.config.metrics.port, self.config.metrics.host)
            except OSError as exc:  # a busy port: one clear line, not a traceback
                raise PipelineError(exc.strerror or str(exc)) from None
        self._wait_workers(counts, timeout)
        return self.rt

    def _check_workers(self) -> None:
        for w in self.workers:
            if w.proc.poll() is not None:
                raise PipelineError(
                    f"{w.stage} worker {w.index} exited with code {w.proc.returncode}; "
                    f"log {w.log_path}:\n{w.tail()}"
                )

    def _wait_workers(self, counts: dict[str, int], timeout: float) -> None:
        assert self.rt is not None
        deadline = time.monotonic() + timeout
        while True:
            self._check_workers()
            names = [w.queue_names() for w in Worker.all(connection=self.rt.bus.conn)]
            ready = {
                s: sum(1 for qn in names if self.rt.bus.queue_name(s) in qn) for s in STAGE_NAMES
            }
            if all(ready[s] >= counts[s] for s in STAGE_NAMES):
                return
            if time.monotonic() > deadline:
                raise PipelineError(f"workers did not start within {timeout:.0f} s: {ready}")
            time.sleep(0.2)

    def stop(self) -> None:
        for w in self.workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)  # rq: finish the current job, then exit
        deadline = time.monotonic() + 15
        for w in self.workers:
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        self.workers = []
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    # ----- CPU accounting ------------------------------------------------------------
    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of this process, each stage's workers (summed) and the
        private redis-server; a process that is gone is left out."""
        out = {"run": time.process_time()}
        for w in self.workers:
            cpu = process_cpu_seconds(w.proc.pid)
            if cpu is not None:
                out[w.stage] = out.get(w.stage, 0.0) + cpu
        if self.redis is not None and self.redis.proc is not None:
            cpu = process_cpu_seconds(self.redis.proc.pid)
            if cpu is not None:
                out["redis-server"] = cpu
        return out

    def inference_seconds(self) -> dict[str, float]:
        """``facepipe_inference_cpu_seconds_total`` so far, by stage."""
        assert self.rt is not None
        return {
            dict(labels).get("stage", "?"): v
            for (name, labels), v in self.rt.metrics.counter_values().items()
            if name == "facepipe_inference_cpu_seconds_total"
        }

    # ----- work --------------------------------------------------------------------
    def capture(self, spec: str, stream: str) -> Capture:
        """A capture of ``spec`` as ``stream``; a configured camera of that name runs with
        its own capture keys and detection rate."""
        assert self.rt is not None
        config = self.config.for_camera(stream) if stream in self.config.cameras else self.config
        source = Source.from_config(spec, config)
        cap = Capture(self.rt.with_config(config), source, stream)
        self.captures.append(cap)
        return cap

    def run(
        self,
        sources: list[tuple[str, str]],
        drain_timeout: float = 600.0,
        stop_drain_s: float = 10.0,
        progress_s: float | None = None,
        watch: bool = False,
        keep_running: bool = False,
    ) -> RunSummary:
        """Capture every ``(source, stream)`` and wait until all frames are accounted for.

        Interrupted (SIGINT, or SIGTERM as ``facepipe run`` maps it), the captures stop,
        the frames already enqueued get ``stop_drain_s`` to finish (a second interrupt
        skips that), and the summary counts what is left as ``dropped:interrupted``. Redis
        down meanwhile does not make it wait longer: after ``stop_drain_s`` the summary
        says what this process knows (:meth:`summarize`).
        ``progress_s``: show a live status (:mod:`pipeline.progress`) meanwhile, a line per
        stream every ``progress_s`` seconds when stderr is no terminal. ``watch``: also
        run the cameras added at run time (``POST /api/streams``,
        :mod:`pipeline.stream_control`); the run goes on while one added since it started
        runs (cameras of the set from before are captured meanwhile, but do not keep it
        going), and with ``keep_running`` until interrupted.
        """
        assert self.rt is not None
        t0 = time.monotonic()
        cpu0, inference0 = self.cpu_seconds(), self.inference_seconds()
        caps = [self.capture(spec, stream) for spec, stream in sources]
        watcher = None
        t_wall = time.time()  # cameras added from now on keep the run going
        if watch:
            from pipeline.stream_control import CameraWatcher

            watcher = CameraWatcher(self.rt).start()

        def every_capture() -> list[Capture]:
            return caps + (watcher.captures if watcher is not None else [])

        progress = None
        if progress_s is not None:
            from pipeline.progress import Progress

            progress = Progress(
                self.rt.bus, lambda: [(c.stream, c.session) for c in every_capture()],
                self.config.store_url, interval_s=progress_s,
            ).start()  # fmt: skip
        results: dict[str, CaptureResult] = {}
        errors: list[BaseException] = []

        def run_capture(cap: Capture) -> None:
            try:
                results[cap.stream] = cap.run()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run_capture, args=(c,), daemon=True) for c in caps]
        for t in threads:
            t.start()
        summary = RunSummary()
        try:
            while (
                any(t.is_alive() for t in threads)
                or (watcher is not None and (keep_running or watcher.active(added_since=t_wall)))
            ):  # fmt: skip
                self._check_workers()
                time.sleep(0.2)
            if watcher is not None:
                watcher.stop()
            if errors:
                raise errors[0]
            self.drain([(c.stream, c.session) for c in every_capture()], drain_timeout, summary)
        except KeyboardInterrupt:
            summary.interrupted = True
            for c in every_capture():  # the cameras added at run time too: all at once
                c.stop()
            try:
                if watcher is not None:
                    watcher.stop(timeout_s=5)
                joined_by = time.monotonic() + 5  # all of them, not 5 s each
                for t in threads:
                    t.join(timeout=max(0.0, joined_by - time.monotonic()))
                streams = [(c.stream, c.session) for c in every_capture()]
                self.drain(streams, stop_drain_s, summary)
            except (KeyboardInterrupt, PipelineError):
                pass  # what is left is counted as interrupted
        finally:
            if watcher is not None:  # a worker died: its captures stop too
                watcher.stop(timeout_s=5)
            if progress is not None:
                progress.close(final=not summary.interrupted)
        summary.seconds = time.monotonic() - t0
        cpu1: dict[str, float] | None = None
        inference1: dict[str, float] | None = None
        try:
            cpu1 = self.cpu_seconds()
            if self.health is None or self.health.up:  # in Redis: not tried while it is down
                inference1 = self.inference_seconds()
        except REDIS_DOWN as exc:
            log.warning("no inference CPU accounting for this run: Redis unreachable (%s)", exc)
        except Exception:  # accounting must never cost a run its summary
            log.warning("no CPU accounting for this run", exc_info=True)
        if cpu1 is not None:
            summary.cpu_s = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items() if k in cpu0}
        if inference1 is not None:
            summary.inference_cpu_s = {k: v - inference0.get(k, 0.0) for k, v in inference1.items()}
        summary.lost = {c.stream: results[c.stream].lost_sessions for c in caps
                        if c.stream in results}  # fmt: skip
        return self.summarize(summary, every_capture())

    def drain(
        self, streams: list[tuple[str, str]], timeout: float, summary: RunSummary | None = None
    ) -> None:
        """Wait until every stream is accounted for and the queues are empty.

        Gives up (noted in ``summary.incomplete``) when Redis lost a stream's state or a
        lost job left frames unaccounted (``capture.wait_accounted``), or when Redis is
        unreachable at the end of the ``timeout`` (waited for until then, never longer);
        raises :class:`PipelineError` after ``timeout`` seconds or if a worker died.
        """
        assert self.rt is not None
        deadline = time.monotonic() + timeout
        waited = wait_accounted(
            self.rt, streams, check=self._check_workers, health=self.health, deadline=deadline
        )
        self.known_counts.update(waited.by_stream)
        if waited.done:
            return
        if waited.redis_down:
            down = self.health.down_s() if self.health is not None else 0.0
            waited.reason = (
                f"Redis unreachable (down for {down:.0f} s at least) when the {timeout:.0f} s "
                "to drain ran out"
            )
        elif waited.reason == "stopped":
            raise PipelineError(f"pipeline did not drain within {timeout:.0f} s")
        log.warning("not every frame is accounted for: %s", waited.reason)
        if summary is not None:
            summary.incomplete = waited.reason

    def summarize(self, summary: RunSummary, caps: list[Capture]) -> RunSummary:
        """The counts of every stream (from Redis) and what else the run measured.

        Redis down at the end: waited for, at most ``max(10, 3 x redis.reconnect_max_s)``
        seconds (not when interrupted: the drain waited already); if it is not back, or
        goes away meanwhile, the summary holds what this process knows
        (:meth:`_summarize_offline`)."""
        assert self.rt is not None
        from pipeline.store import EventStore

        up = True
        if self.health is not None and summary.interrupted:
            up = self.health.up  # as the drain left it: it waited for Redis already
        elif self.health is not None:  # Redis down at the end: wait for it (bounded)
            up = self.health.wait(timeout=max(10.0, 3 * self.config.redis.reconnect_max_s))
        if up:
            try:
                self._summarize_from_redis(summary, caps)
            except REDIS_DOWN as exc:  # gone again meanwhile
                if self.health is not None:
                    self.health.mark_down(exc)
                up = False
        if not up:
            self._summarize_offline(summary, caps)
        store = EventStore(self.config.store_url)
        sessions = {c.session for c in caps}
        for ev in store.events():
            if ev["session"] in sessions:
                key = ev["person"] or "unknown"
                summary.people[key] = summary.people.get(key, 0) + 1
        return summary

    def _stream_summary(
        self, summary: RunSummary, c: Capture, counts: dict[str, int], left_as: str
    ) -> None:
        """``summary.streams[c.stream]`` from ``counts``: the sessions Redis lost added (as
        ``dropped:redis_lost``), the frames neither processed nor dropped as
        ``dropped:LEFT_AS`` (every captured frame is in the summary)."""
        counts.pop("end_seq", None)
        lost = sum(n for _, n in summary.lost.get(c.stream, []))
        if lost:  # sessions Redis lost: their frames are counted, as lost
            counts["captured"] = counts.get("captured", 0) + lost
            counts["dropped:redis_lost"] = lost
        dropped = sum(v for k, v in counts.items() if k.startswith("dropped:"))
        left = counts.get("captured", 0) - counts.get("processed", 0) - dropped
        if left > 0:
            counts[f"dropped:{left_as}"] = counts.get(f"dropped:{left_as}", 0) + left
        rate = detection_rate(counts)  # of its processed frames, the share detected
        summary.streams[c.stream] = {
            "session": c.session, "source": c.source.spec, **counts,
            "detection_rate": None if rate is None else round(rate, 4),
        }  # fmt: skip

    def _summarize_offline(self, summary: RunSummary, caps: list[Capture]) -> None:
        """Redis unreachable at the end: each stream's counts are the larger of the
        capture's own (every frame it read, every drop it made: never lost) and the last
        read from Redis (``processed`` and the workers' drops: as far as known); the
        frames whose fate after capture is unknown are ``dropped:redis_unreachable``, and
        ``summary.incomplete`` says so. The stage metrics, held in Redis, are left out."""
        for c in caps:
            known = self.known_counts.get(f"{c.stream}/{c.session}", {})
            own = c.counts()
            counts = {k: max(known.get(k, 0), own.get(k, 0)) for k in {*known, *own}}
            self._stream_summary(summary, c, counts, "redis_unreachable")
        unknown = sum(s.get("dropped:redis_unreachable", 0) for s in summary.streams.values())
        down = self.health.down_s() if self.health is not None else 0.0
        summary.incomplete = (
            f"Redis unreachable at the end of the run (down for {down:.0f} s at least): "
            + (
                f"{unknown} frame(s) sent on before are of unknown fate (processed or not), "
                "counted as dropped:redis_unreachable; "
                if unknown
                else ""
            )
            + "the counts are the captures' own and the last read from Redis, no stage metrics"
        )
        log.warning("summary without Redis: %s", summary.incomplete)

    def _summarize_from_redis(self, summary: RunSummary, caps: list[Capture]) -> None:
        assert self.rt is not None
        bus = self.rt.bus
        for c in caps:  # what is still in flight: interrupted, or left unaccounted
            left_as = "interrupted" if summary.interrupted else "unaccounted"
            self._stream_summary(summary, c, bus.stream_counts(c.stream, c.session), left_as)
        for labels, (total, n) in self.rt.metrics.histogram_sums("facepipe_stage_seconds").items():
            stage = dict(labels).get("stage", "?")
            summary.stage_seconds[stage] = total
            summary.stage_jobs[stage] = n
        q = self.rt.metrics.quantiles("facepipe_capture_to_event_seconds", (0.5, 0.95))
        summary.latency_s = {f"p{int(k * 100)}": v for k, v in q.items()}
        summary.failed_jobs = sum(bus.failed(s) for s in STAGE_NAMES)
        summary.tracks_merged = int(
            sum(
                self.rt.metrics.total("facepipe_tracks_merged_total", stream=c.stream) for c in caps
            )
        )
