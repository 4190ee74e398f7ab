"""Prometheus metrics shared by every process of a pipeline, kept in Redis.

Workers run as many processes on many machines; a scrape must see the pipeline as a
whole. So processes write counters and histogram buckets into Redis hashes
(:class:`Metrics`), and one exporter (the sink, ``facepipe run`` or ``facepipe metrics``)
serves them with a custom collector that also reads queue depths and worker counts
live from rq (:class:`RedisCollector`).

Metric names follow Prometheus conventions (``_total`` counters, ``_seconds`` units).
"""

from __future__ import annotations

import bisect
import json
import logging
import platform
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector
from rq import Worker

from pipeline import __version__
from pipeline.bus import Bus
from pipeline.privacy import listen_failure
from pipeline.stages import STAGE_NAMES

log = logging.getLogger(__name__)

COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "facepipe_frames_captured_total": ("Frames read from a source.", ("stream",)),
    "facepipe_frames_processed_total": (
        "Frames that went through every stage into the event store.",
        ("stream",),
    ),
    "facepipe_frames_dropped_total": (
        "Frames dropped by a policy or an error, by reason.",
        ("stream", "reason"),
    ),
    "facepipe_frames_undetected_total": (
        "Processed frames detection skipped (the tracker predicted their faces), by reason: "
        "schedule (detector.every_n_frames), load (a live camera's detections in flight "
        "were at capture.live_max_in_flight).",
        ("stream", "reason"),
    ),
    "facepipe_faces_detected_total": ("Faces found by the detect stage.", ("stream",)),
    "facepipe_tracks_started_total": ("Tracks started by the track stage.", ("stream",)),
    "facepipe_tracks_merged_total": (
        "New tracks merged into an earlier one by appearance (re-identification).",
        ("stream",),
    ),
    "facepipe_tracker_takeovers_total": (
        "Tracker locks taken over from a dead worker's unfinished hold (its frames redone).",
        ("stream",),
    ),
    "facepipe_recognitions_total": (
        "Identity samples matched against the gallery, by result (known/unknown).",
        ("stream", "result"),
    ),
    "facepipe_attribute_samples_total": ("Age/gender samples estimated.", ("stream",)),
    "facepipe_events_updated_total": ("Person-event updates written by the sink.", ("stream",)),
    "facepipe_frames_duplicate_total": (
        "Frames of a retried sink batch that were counted already (and skipped).",
        ("stream",),
    ),
    "facepipe_jobs_refused_total": (
        "Jobs a worker refused to run (not its stage's job function, bad arguments or "
        "payload), by stage and reason; they are in the failed registry.",
        ("stage", "reason"),
    ),
    "facepipe_queue_entries_dead_total": (
        "Queue entries no worker could read (undecodable, oversized), moved to the "
        "dead-letter list, by stage and reason.",
        ("stage", "reason"),
    ),
    "facepipe_jobs_recovered_total": (
        "Jobs of dead workers (no heartbeat for workers.job_recovery_s) requeued, by stage.",
        ("stage",),
    ),
    "facepipe_redis_outages_total": (
        "Redis outages a process waited out (counted once Redis is back), by process.",
        ("process",),
    ),
    "facepipe_redis_outage_seconds_total": (
        "Seconds processes waited for Redis, by process.",
        ("process",),
    ),
    "facepipe_source_reconnects_total": (
        "Times a live source (camera) came back after being down (or down at start).",
        ("stream",),
    ),
    "facepipe_source_down_seconds_total": (
        "Seconds a live source (camera) was down, growing during an outage.",
        ("stream",),
    ),
    "facepipe_inference_cpu_seconds_total": (
        "CPU seconds spent inside model calls (detector, face encoder, age/gender), by "
        "stage: the pipeline's useful work; the processes' other CPU time is overhead.",
        ("stage",),
    ),
    "facepipe_notifications_total": (
        "Notifications (MQTT, webhooks) by backend and outcome: sent, failed, unconfirmed, "
        "dropped (queue full), expired (waited longer than notify.max_delay_s).",
        ("backend", "outcome"),
    ),
}

# gauges a process sets with a lifetime (Metrics.set_gauge): a series whose process died
# without clearing it vanishes after that lifetime instead of showing a stale value
GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "facepipe_source_up": (
        "1 while a live source (camera) delivers frames, 0 while it is down and being "
        "reconnected; absent when no capture of the stream runs.",
        ("stream",),
    ),
}

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "facepipe_stage_seconds": (
        "Processing time of one job, by stage.",
        ("stage",),
        STAGE_BUCKETS,
    ),
    "facepipe_capture_to_event_seconds": (
        "Time from frame capture to its observations being stored.",
        ("stream",),
        LATENCY_BUCKETS,
    ),
}

SEP = "\x1f"

# Label values that exist from the start (at 0), so that a dashboard's rate() and
# increase() see the first real event instead of a series appearing at 1 (which they
# cannot tell from "always was 1"). Streams come from the stream registry and the
# counters; these are the other labels' known values.
DROP_REASONS = ("stale", "backpressure", "expired", "lost", "redis_down")
UNDETECTED_REASONS = ("schedule", "load")
RECOGNITION_RESULTS = ("known", "unknown")
REFUSAL_REASONS = ("function", "arguments", "payload")
DEAD_REASONS = ("undecodable job id", "malformed job id", "oversized job", "undecodable job")
ZERO_SERIES: dict[str, tuple[tuple[str, ...], ...]] = {
    # name -> the values of its labels after the first ("stream" or "stage")
    "facepipe_frames_captured_total": ((),),
    "facepipe_frames_processed_total": ((),),
    "facepipe_frames_dropped_total": tuple((r,) for r in DROP_REASONS),
    "facepipe_frames_undetected_total": tuple((r,) for r in UNDETECTED_REASONS),
    "facepipe_faces_detected_total": ((),),
    "facepipe_tracks_started_total": ((),),
    "facepipe_tracks_merged_total": ((),),
    "facepipe_tracker_takeovers_total": ((),),
    "facepipe_recognitions_total": tuple((r,) for r in RECOGNITION_RESULTS),
    "facepipe_attribute_samples_total": ((),),
    "facepipe_events_updated_total": ((),),
    "facepipe_frames_duplicate_total": ((),),
    "facepipe_jobs_refused_total": tuple((r,) for r in REFUSAL_REASONS),
    "facepipe_queue_entries_dead_total": tuple((r,) for r in DEAD_REASONS),
    "facepipe_jobs_recovered_total": ((),),
    "facepipe_source_reconnects_total": ((),),
    "facepipe_source_down_seconds_total": ((),),
}


def _field(name: str, labels: dict[str, str], suffix: str = "") -> str:
    return SEP.join((name, json.dumps(labels, sort_keys=True), suffix))


class Metrics:
    """Write side: increments go straight to Redis (one round trip each), or, inside
    :meth:`batch`, together in one round trip at the end of the block."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.counters_key = bus.key("metrics", "counters")
        self.hist_key = bus.key("metrics", "histograms")
        self.gauges_key = bus.key("metrics", "gauges")
        self._local = threading.local()  # this thread's batch pipeline, if any

    @contextmanager
    def batch(self, hand_over: list[tuple[Any, ...]] | None = None) -> Iterator[None]:
        """Send this thread's counter increments and histogram observations of the block
        in one round trip when it ends (a worker's job: one write for all its metrics).
        Nested blocks join the outer one; other threads are not affected. With
        ``hand_over``, the block's Redis commands (argument tuples) are appended to that
        list instead, for the caller to send with a write of its own (a stage worker: with
        rq's bookkeeping of the finished job)."""
        if getattr(self._local, "pipe", None) is not None:
            yield
            return
        self._local.pipe = self.bus.conn.pipeline(transaction=False)
        try:
            yield
        finally:
            pipe, self._local.pipe = self._local.pipe, None
            if hand_over is not None:
                hand_over += [args for args, _ in pipe.command_stack]
                pipe.reset()
            elif len(pipe):
                pipe.execute()

    def _writer(self) -> Any:
        pipe = getattr(self._local, "pipe", None)
        return pipe if pipe is not None else self.bus.conn

    def inc(self, name: str, labels: dict[str, str], value: float = 1.0) -> None:
        if name not in COUNTERS:
            raise KeyError(f"unknown counter {name}")
        if value:
            self._writer().hincrbyfloat(self.counters_key, _field(name, labels), value)

    def set_gauge(self, name: str, labels: dict[str, str], value: float, ttl_s: float) -> None:
        """Set a gauge that lives ``ttl_s`` seconds unless set again (Redis-side expiry:
        no clock of another machine is involved)."""
        if name not in GAUGES:
            raise KeyError(f"unknown gauge {name}")
        field = _field(name, labels)
        pipe = self.bus.conn.pipeline(transaction=False)
        pipe.set(self.bus.key("metrics", "gauge", field), value, px=max(1, int(ttl_s * 1000)))
        pipe.sadd(self.gauges_key, field)
        pipe.execute()

    def clear_gauge(self, name: str, labels: dict[str, str]) -> None:
        field = _field(name, labels)
        pipe = self.bus.conn.pipeline(transaction=False)
        pipe.delete(self.bus.key("metrics", "gauge", field))
        pipe.srem(self.gauges_key, field)
        pipe.execute()

    def gauge_values(self) -> dict[str, tuple[dict[str, str], float]]:
        """Live gauges as ``{field: (labels, value)}`` (expired ones are left out)."""
        fields = sorted(f.decode() for f in self.bus.conn.smembers(self.gauges_key))
        if not fields:
            return {}
        values = self.bus.conn.mget([self.bus.key("metrics", "gauge", f) for f in fields])
        out = {}
        for f, v in zip(fields, values, strict=True):
            if v is not None:
                _name, labels, _ = f.split(SEP)
                out[f] = (json.loads(labels), float(v))
        return out

    def declare(self, name: str, labels: dict[str, str]) -> None:
        """Make a counter's series exist (at 0 unless it counted already): for label
        values ZERO_SERIES cannot know, e.g. the configured notification backends."""
        if name not in COUNTERS:
            raise KeyError(f"unknown counter {name}")
        self.bus.conn.hincrbyfloat(self.counters_key, _field(name, labels), 0)

    def observe(self, name: str, labels: dict[str, str], value: float) -> None:
        if name not in HISTOGRAMS:
            raise KeyError(f"unknown histogram {name}")
        buckets = HISTOGRAMS[name][2]
        idx = bisect.bisect_left(buckets, value)  # len(buckets) means +Inf
        batch = getattr(self._local, "pipe", None)
        pipe = batch if batch is not None else self.bus.conn.pipeline(transaction=False)
        pipe.hincrby(self.hist_key, _field(name, labels, f"b{idx}"), 1)
        pipe.hincrbyfloat(self.hist_key, _field(name, labels, "sum"), value)
        if batch is None:
            pipe.execute()

    def counter_values(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """All counters as ``{(name, sorted label items): value}`` (for summaries/tests)."""
        out = {}
        for field, value in self.bus.conn.hgetall(self.counters_key).items():
            name, labels, _ = field.decode().split(SEP)
            out[(name, tuple(sorted(json.loads(labels).items())))] = float(value)
        return out

    def total(self, name: str, **match: str) -> float:
        return sum(
            v
            for (n, labels), v in self.counter_values().items()
            if n == name and all(dict(labels).get(k) == m for k, m in match.items())
        )

    def histogram_sums(self, name: str) -> dict[tuple[tuple[str, str], ...], tuple[float, int]]:
        """``{labels: (sum, count)}`` of one histogram."""
        sums: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for field, value in self.bus.conn.hgetall(self.hist_key).items():
            n, labels, suffix = field.decode().split(SEP)
            if n != name:
                continue
            key = tuple(sorted(json.loads(labels).items()))
            entry = sums.setdefault(key, [0.0, 0])
            if suffix == "sum":
                entry[0] += float(value)
            else:
                entry[1] += int(value)
        return {k: (v[0], int(v[1])) for k, v in sums.items()}

    def quantiles(self, name: str, qs: tuple[float, ...] = (0.5, 0.95)) -> dict[float, float]:
        """Quantiles of one histogram over all its labels, interpolated within buckets
        (as Prometheus' ``histogram_quantile`` does)."""
        buckets = HISTOGRAMS[name][2]
        counts = [0.0] * (len(buckets) + 1)
        for field, value in self.bus.conn.hgetall(self.hist_key).items():
            n, _labels, suffix = field.decode().split(SEP)
            if n == name and suffix.startswith("b"):
                counts[int(suffix[1:])] += float(value)
        total = sum(counts)
        out: dict[float, float] = {}
        if total == 0:
            return out
        for q in qs:
            rank, running = q * total, 0.0
            for i, c in enumerate(counts):
                if running + c >= rank and c > 0:
                    lo = buckets[i - 1] if i > 0 else 0.0
                    hi = buckets[i] if i < len(buckets) else buckets[-1]
                    out[q] = lo + (hi - lo) * (rank - running) / c
                    break
                running += c
        return out


def build_info() -> GaugeMetricFamily:
    """``facepipe_build_info{version, python}`` 1: which release an exporter runs."""
    info = GaugeMetricFamily(
        "facepipe_build_info", "facepipe version and Python of this exporter (always 1).",
        labels=["version", "python"],
    )  # fmt: skip
    info.add_metric([__version__, platform.python_version()], 1)
    return info


class RedisCollector(Collector):
    """Read side: turns the Redis hashes and rq state into Prometheus metric families."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.metrics = Metrics(bus)

    def collect(self) -> Iterator:  # type: ignore[override]
        conn = self.bus.conn
        yield build_info()
        up = GaugeMetricFamily(
            "facepipe_redis_up", "1 if this exporter reached Redis at the last scrape, else 0."
        )
        try:
            counters = conn.hgetall(self.metrics.counters_key)
            hists = conn.hgetall(self.metrics.hist_key)
        except Exception as exc:  # a scrape must not crash the exporter
            log.warning("metrics scrape failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        families = {
            name: CounterMetricFamily(name, doc, labels=list(labels))
            for name, (doc, labels) in COUNTERS.items()
        }
        values: dict[str, dict[tuple[str, ...], float]] = {name: {} for name in COUNTERS}
        streams: set[str] = set()
        for field, value in counters.items():
            name, labels, _ = field.decode().split(SEP)
            if name in families:
                lab = json.loads(labels)
                key = tuple(lab.get(k, "") for k in COUNTERS[name][1])
                values[name][key] = values[name].get(key, 0.0) + float(value)
                if "stream" in lab:
                    streams.add(lab["stream"])
        try:
            streams |= {sid.rsplit("/", 1)[0] for sid in self.bus.streams()}
        except Exception as exc:
            log.warning("stream registry scrape failed: %s", exc)
        for name, rest in ZERO_SERIES.items():
            first = COUNTERS[name][1][0]
            for head in sorted(streams) if first == "stream" else STAGE_NAMES:
                for tail in rest:
                    values[name].setdefault((head, *tail), 0.0)
        for name, series in values.items():
            for key, value in sorted(series.items()):
                families[name].add_metric(list(key), value)
        yield from families.values()
        try:
            gauges = self.metrics.gauge_values()
        except Exception as exc:
            log.warning("gauge scrape failed: %s", exc)
            gauges = {}
        for gname, (doc, label_names) in GAUGES.items():
            gfam = GaugeMetricFamily(gname, doc, labels=list(label_names))
            for f, (lab, value) in gauges.items():
                if f.split(SEP, 1)[0] == gname:
                    gfam.add_metric([lab.get(k, "") for k in label_names], value)
            yield gfam

        grouped: dict[tuple[str, str], dict[str, float]] = {}
        for field, value in hists.items():
            name, labels, suffix = field.decode().split(SEP)
            grouped.setdefault((name, labels), {})[suffix] = float(value)
        for name, (doc, label_names, buckets) in HISTOGRAMS.items():
            fam = HistogramMetricFamily(name, doc, labels=list(label_names))
            for (n, labels), parts in grouped.items():
                if n != name:
                    continue
                lab = json.loads(labels)
                cumulative, running = [], 0.0
                for i, bound in enumerate(buckets):
                    running += parts.get(f"b{i}", 0.0)
                    cumulative.append((repr(float(bound)), running))
                running += parts.get(f"b{len(buckets)}", 0.0)
                cumulative.append(("+Inf", running))
                fam.add_metric(
                    [lab.get(k, "") for k in label_names], cumulative, parts.get("sum", 0.0)
                )
            yield fam

        depth = GaugeMetricFamily(
            "facepipe_queue_depth", "Jobs waiting in each stage's queue.", labels=["stage"]
        )
        busy = GaugeMetricFamily(
            "facepipe_jobs_in_progress", "Jobs being processed, by stage.", labels=["stage"]
        )
        failed = GaugeMetricFamily(
            "facepipe_jobs_failed", "Jobs in each stage's failed registry.", labels=["stage"]
        )
        workers = GaugeMetricFamily(
            "facepipe_workers",
            "Workers listening on each stage whose heartbeat is fresh.",
            labels=["stage"],
        )
        dead = GaugeMetricFamily(
            "facepipe_dead_letters",
            "Queue entries set aside in each stage's dead-letter list.",
            labels=["stage"],
        )
        try:
            # alive = registered with rq AND its facepipe heartbeat is fresh: rq keeps a
            # killed worker registered for minutes, the heartbeat lapses within
            # workers.job_recovery_s
            all_workers = [w for w in Worker.all(connection=conn) if self.bus.alive(w.name)]
            for stage in STAGE_NAMES:
                q = self.bus.queue(stage)  # a stream stage's workers name it too
                depth.add_metric([stage], self.bus.depth(stage))
                busy.add_metric([stage], self.bus.busy(stage))
                failed.add_metric([stage], self.bus.failed(stage))
                workers.add_metric(
                    [stage], sum(1 for w in all_workers if q.name in w.queue_names())
                )
                dead.add_metric([stage], conn.llen(self.bus.dead_key(stage)))
        except Exception as exc:
            log.warning("queue scrape failed: %s", exc)
            return
        yield depth
        yield busy
        yield failed
        yield workers
        yield dead


class MetricsServeError(OSError):
    """The metrics endpoint cannot listen (port in use, address not on this machine)."""


def metrics_url(host: str, port: int) -> str:
    """The endpoint's URL as a user would open it (``[::1]`` for IPv6 addresses)."""
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"


def serve(bus: Bus, port: int, host: str = "127.0.0.1") -> CollectorRegistry:
    """Start the HTTP exporter in a daemon thread; returns its registry.

    Listens on ``host`` (``metrics.host``, this machine only by default: the endpoint
    has no authentication). Raises :class:`MetricsServeError` with a one-line reason if
    it cannot listen.
    """
    registry = CollectorRegistry()
    registry.register(RedisCollector(bus))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        hint = "set metrics.port / --metrics-port to another port, or 0 for none"
        raise MetricsServeError(
            exc.errno, listen_failure(exc, "metrics", host, port, hint)
        ) from None
    return registry


# ----- retiring the series of streams gone for good ---------------------------------------
RETIRED_STREAM = "(retired)"  # not a valid stream name, so never a real stream's label

# KEYS[1] = a metrics hash; ARGV = (field, retired field, "1" for an integer field) per
# field: each value is added to its retired field and the field removed, atomically (a
# field already moved by another process is skipped)
_FOLD_LUA = """
local moved = 0
for i = 1, #ARGV, 3 do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    if ARGV[i + 2] == '1' then
      redis.call('HINCRBY', KEYS[1], ARGV[i + 1], v)
    else
      redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i + 1], v)
    end
    redis.call('HDEL', KEYS[1], ARGV[i])
    moved = moved + 1
  end
end
return moved
"""


def retire_idle_streams(
    metrics: Metrics, live_streams: set[str], after_s: float, now: float | None = None
) -> list[str]:
    """Fold the series of streams idle for ``after_s`` seconds into ``stream="(retired)"``.

    A stream is idle from the first call that finds it has series but is not in
    ``live_streams`` (no session left in Redis: see ``Bus.prune_sessions``); the time is
    kept in ``<prefix>:metrics:idle-since``. Once idle for ``after_s`` its counters and
    histogram buckets are added to the same metric's ``(retired)`` series and removed, so
    the metrics hashes stay bounded when stream names come and go, while every series
    stays monotonic and a sum over streams keeps its total. Returns the retired streams.
    """
    conn = metrics.bus.conn
    now = time.time() if now is None else now
    idle_key = metrics.bus.key("metrics", "idle-since")
    moves: dict[str, dict[str, list[tuple[str, str, bool]]]] = {}
    for key in (metrics.counters_key, metrics.hist_key):
        for raw in conn.hkeys(key):
            field = raw.decode()
            name, labels, suffix = field.split(SEP)
            lab = json.loads(labels)
            stream = lab.get("stream")
            if stream is None or stream == RETIRED_STREAM:
                continue
            target = _field(name, {**lab, "stream": RETIRED_STREAM}, suffix)
            integer = key == metrics.hist_key and suffix.startswith("b")
            moves.setdefault(stream, {}).setdefault(key, []).append((field, target, integer))
    since = {k.decode(): float(v) for k, v in conn.hgetall(idle_key).items()}
    back = [s for s in since if s in live_streams or s not in moves]
    if back:
        conn.hdel(idle_key, *back)
    fold = conn.register_script(_FOLD_LUA)
    retired = []
    for stream, per_key in sorted(moves.items()):
        if stream in live_streams:
            continue
        if stream not in since:
            conn.hsetnx(idle_key, stream, now)
            continue
        if now - since[stream] < after_s:
            continue
        for key, items in per_key.items():
            argv = [x for field, target, integer in items for x in (field, target, int(integer))]
            fold(keys=[key], args=argv)
        conn.hdel(idle_key, stream)
        retired.append(stream)
    return retired
