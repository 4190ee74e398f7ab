"""Stage workers: rq workers that run jobs in their own process.

rq's default worker forks a work-horse per job; TensorFlow does not survive that fork and
reloading a model per job would waste seconds. :class:`StageWorker` is rq's
``SimpleWorker`` (jobs run in the worker process), and each stage object, which holds
its model, is created once per process by :func:`get_stage`. Which class serves which
stage, and which job function rq calls, is the stage table's (``pipeline/stages.py``);
a job's payload is parsed into the stage's message type before :meth:`Stage.process`.

A stage whose transport is ``stream`` (track, sink) is served by the same worker loop:
its dequeue (:class:`EntryQueue`) reads the next entry of the stage's Redis stream for
this worker (a consumer of the group ``workers``) and hands it to the loop as an
:class:`EntryJob`, which :meth:`StageWorker.execute_job` runs without rq's per-job
records (``_execute_entry``: the handler, then the entry acknowledged and deleted with the
job's metrics and the worker's counters in one round trip).

Faults are handled here, once for every stage (the README's "Faults"):

* Redis outages: every Redis call of the worker loop that fails with a connection error
  waits for Redis (``pipeline/retry.py``: capped exponential backoff with jitter), then
  the worker registers again and goes on; a job interrupted by the outage is requeued (a
  stream entry stays the worker's and is read again first).
* Hostile or broken queue entries: an entry that is not a readable job (undecodable id
  or data, larger than ``workers.max_job_bytes``) is moved to the stage's dead-letter list
  (:meth:`Bus.dead_letter`); a job that names any other function than the stage's job
  function, has other arguments than one payload, callbacks, or a payload that does not
  parse as the stage's message type is refused: failed with the reason, never retried,
  never run. Both are counted and neither stops the worker. A stream entry names no
  function: one without a payload, not a JSON object or oversized is set aside; a payload
  that is not the stage's message type is filed as failed unrun.
* Dead workers: each worker beats a heartbeat key; a watchdog thread in every worker
  requeues the started jobs, and sends again the taken stream entries, of workers whose
  heartbeat expired (``workers.job_recovery_s``).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import socket
import threading
import time
import traceback
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, ClassVar

import numpy as np
from rq import Queue, SimpleWorker, worker_registration
from rq.exceptions import DequeueTimeout, NoSuchJobError
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.utils import get_version, now, str_to_date
from rq.worker import WorkerStatus
from rq.worker_registration import REDIS_WORKER_KEYS

from pipeline.bus import STREAM_ATTEMPTS, Bus, QueueEntry
from pipeline.config import load_config
from pipeline.record import FrameRecord
from pipeline.retry import REDIS_DOWN, RedisHealth, backoff_delays
from pipeline.runtime import Runtime
from pipeline.stages import STAGE_NAMES, StageSpec, stage_of_worker
from pipeline.stages import stage as stage_spec

log = logging.getLogger(__name__)

_runtime: Runtime | None = None
_stages: dict[str, Stage] = {}
# the payload the worker just validated and what it parsed to: the job function gets the
# same dict object, so its handler takes the message instead of parsing the payload again
_validated: tuple[dict[str, Any], Any] | None = None
# while a StageWorker runs a job: the Redis commands of the job's metrics, sent with rq's
# bookkeeping of the finished job (one round trip for both), or on their own otherwise
_job_metrics: list[tuple[Any, ...]] | None = None
# the name of this process's StageWorker once its heartbeat runs (beating_worker)
_beating: str | None = None


def set_runtime(rt: Runtime) -> None:
    global _runtime
    _runtime = rt
    _stages.clear()


def runtime() -> Runtime:
    """This process's runtime (built from FACEPIPE_CONFIG / REDIS_URL on first use)."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime.from_config(load_config(os.environ.get("FACEPIPE_CONFIG")))
    return _runtime


class Stage:
    """One stage's per-process state (its model) and its job handler."""

    loads: ClassVar[int] = 0  # how many times this process built the stage (tests check 1)

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.inference_cpu_s = 0.0  # CPU seconds inside model calls in the current job
        type(self).loads += 1

    @classmethod
    def spec(cls) -> StageSpec:
        """This class's row of the stage table."""
        return stage_of_worker(f"{cls.__module__}.{cls.__qualname__}")

    def warmup(self) -> None:
        """Load/run the model once before the first job."""

    def image(self, rec: FrameRecord) -> np.ndarray | None:
        """The frame's image (RGB) while it is in Redis; None without a key or expired."""
        return self.rt.frames.get(rec.key) if rec.key else None

    def images(self, recs: list[FrameRecord]) -> list[np.ndarray | None]:
        """:meth:`image` of each of ``recs``, read from Redis in one round trip."""
        keys = [r.key for r in recs if r.key]
        got = dict(zip(keys, self.rt.frames.get_many(keys), strict=True))
        return [got[r.key] if r.key else None for r in recs]

    @contextmanager
    def inference(self) -> Iterator[None]:
        """Count the block's CPU time (the whole process's: model libraries run threads
        of their own) as model inference (``facepipe_inference_cpu_seconds_total``)."""
        t0 = time.process_time()
        try:
            yield
        finally:
            self.inference_cpu_s += time.process_time() - t0

    def handle(self, payload: dict[str, Any]) -> None:
        """Run one job: its payload parsed into the stage's message type. The job's
        metrics go to Redis in one round trip at its end."""
        global _validated
        spec = self.spec()
        metrics = self.rt.metrics
        t0 = time.perf_counter()
        pre, _validated = _validated, None
        self.inference_cpu_s = 0.0
        with metrics.batch(_job_metrics):  # None outside a StageWorker's job: sent now
            try:
                self.process(
                    pre[1] if pre is not None and pre[0] is payload else spec.parse(payload)
                )
            finally:
                labels = {"stage": spec.name}
                metrics.observe("facepipe_stage_seconds", labels, time.perf_counter() - t0)
                if self.inference_cpu_s:
                    metrics.inc("facepipe_inference_cpu_seconds_total", labels,
                                self.inference_cpu_s)  # fmt: skip

    def process(self, message: Any) -> None:
        raise NotImplementedError


def beating_worker() -> str | None:
    """The name of the worker running in this process whose heartbeat (``alive:<name>``)
    says it lives, or None (a stage run without a worker, or a burst worker that does not
    beat): a lock held under this name may be taken over once the heartbeat is gone."""
    return _beating


def get_stage(stage: str) -> Stage:
    """This process's object of ``stage`` (its worker class from the stage table)."""
    if stage not in _stages:
        module, _, name = stage_spec(stage).worker.rpartition(".")
        _stages[stage] = getattr(importlib.import_module(module), name)(runtime())
    return _stages[stage]


def run_job(cls: type[Stage], payload: dict[str, Any]) -> None:
    """The body of each stage module's job function: ``cls``'s stage runs ``payload``."""
    get_stage(cls.spec().name).handle(payload)


JOB_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
ENTRY_TIMEOUT_S = 600  # a stream stage's message is stopped after this (rq jobs': 600)
HEARTBEAT_EVERY_S = 5.0  # rq's worker heartbeat at most this often outside a job's start
SUSPENSION_CHECK_S = 1.0  # `rq suspend` is looked for at most this often


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class GuardedQueue(Queue):
    """rq's queue, but an entry that is not a readable job is set aside, not raised.

    rq's ``dequeue_any`` raises on an undecodable id or job hash (which stops the
    worker loop and leaves the entry in the intermediate queue for the next worker to
    choke on). This one moves such entries to the dead-letter list of the worker's bus
    (``StageWorker.queue_class`` is a subclass bound to it) and dequeues the next.
    """

    bus: ClassVar[Bus | None] = None
    max_job_bytes: ClassVar[int] = 16 * 1024 * 1024
    on_dead: ClassVar[Any] = None  # (stage, reason) -> None, counts the entry
    on_redis_down: ClassVar[Any] = None  # () -> None: the dequeue met a Redis outage

    @classmethod
    def dequeue_any(  # type: ignore[override]
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: Any,
        job_class: Any = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        queue_keys = [queue.key for queue in queues]
        job_cls = job_class or Job
        while True:
            try:
                if len(queue_keys) == 1 and get_version(connection) >= (6, 2, 0):
                    result = cls.lmove(connection, queue_keys[0], timeout)
                else:
                    result = cls.lpop(queue_keys, timeout, connection=connection)
            except REDIS_DOWN:
                if cls.on_redis_down is not None:
                    cls.on_redis_down()
                raise
            if result is None:
                return None
            queue_key, raw = _text(result[0]), result[1]
            raw = raw.encode() if isinstance(raw, str) else raw
            reason = cls._bad_id(raw)
            if reason is None:
                # the guard and rq's fetch share one read of the job hash
                fields = connection.hgetall(job_cls.key_for(raw.decode()))
                if not fields:
                    continue  # gone (deleted, expired): as rq, dequeue the next
                reason = cls._oversized(fields.get(b"data") or b"")
            if reason is None:
                try:
                    queue = cls.from_queue_key(
                        queue_key, connection=connection, job_class=job_cls,
                        serializer=serializer, death_penalty_class=death_penalty_class,
                    )  # fmt: skip
                    job = job_cls(raw.decode(), connection=connection, serializer=serializer)
                    job.restore(fields)
                    job.func_name, job.args, job.kwargs  # noqa: B018 - decodes the data
                    return job, queue
                except Exception as exc:
                    reason = f"undecodable job: {type(exc).__name__}: {exc}"[:500]
            cls._set_aside(connection, queue_key, raw, reason)

    @staticmethod
    def _bad_id(raw: bytes) -> str | None:
        try:
            job_id = raw.decode("ascii")
        except UnicodeDecodeError:
            return "undecodable job id"
        if not JOB_ID.fullmatch(job_id):
            return "malformed job id"
        return None

    @classmethod
    def _oversized(cls, data: bytes) -> str | None:
        size = len(data)
        if size <= cls.max_job_bytes:  # rq compresses job data: measure it inflated
            try:  # bounded, so a zip bomb is measured without being inflated
                size = len(zlib.decompressobj().decompress(data, cls.max_job_bytes + 1))
            except zlib.error:
                pass  # stored uncompressed
        if size > cls.max_job_bytes:
            return f"oversized job: over workers.max_job_bytes ({cls.max_job_bytes})"
        return None

    @classmethod
    def _unreadable(cls, connection: Any, raw: bytes) -> str | None:
        reason = cls._bad_id(raw)
        if reason is not None:
            return reason
        return cls._oversized(connection.hget(Job.key_for(raw.decode()), "data") or b"")

    @classmethod
    def _set_aside(cls, connection: Any, queue_key: str, raw: bytes, reason: str) -> None:
        bus = cls.bus
        assert bus is not None, "GuardedQueue used without a bus"
        stage = queue_key.rsplit(".", 1)[-1]
        entry = raw
        if JOB_ID.fullmatch(raw.decode("ascii", "replace")):
            job_key = Job.key_for(raw.decode())
            data = connection.hget(job_key, "data") or b""
            entry = raw + b"\n" + data[: 64 * 1024]
            connection.delete(job_key)
        bus.dead_letter(stage, entry, reason)
        connection.lrem(IntermediateQueue(queue_key, connection).key, 1, raw)
        log.warning("%s queue: entry set aside (%s): %r", stage, reason, raw[:80])
        if cls.on_dead is not None:
            cls.on_dead(stage, reason.split(":")[0])


class EntryJob:
    """A message of a stream stage as the worker loop carries it: rq's loop passes it from
    the dequeue to :meth:`StageWorker.execute_job` and never stores it (no job hash, no
    registries: the stream entry and its consumer group are the record)."""

    def __init__(self, entry: QueueEntry, payload: Any) -> None:
        self.id = entry.id
        self.attempts = entry.attempts
        self.payload = payload
        self.redis_server_version: Any = None  # rq's loop sets it on every job it dequeues


class EntryQueue(GuardedQueue):
    """The dequeue of a stream stage (``pipeline/stages.py``): the next entry of the
    stage's stream for this worker's consumer (``Bus.read_entry``), as a
    :class:`EntryJob`. An entry that is not a readable message (no payload, larger than
    ``workers.max_job_bytes``, not a JSON object) is set aside in the stage's dead-letter
    list and the next is read, as :class:`GuardedQueue` does with rq's entries."""

    stage: ClassVar[str] = ""
    consumer: ClassVar[str] = ""
    # read this worker's own unfinished entries first (set at start and after an outage
    # interrupted a message: it stays this consumer's until done)
    own_first: ClassVar[list[bool]] = [True]

    @classmethod
    def dequeue_any(  # type: ignore[override]
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: Any,
        job_class: Any = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Any, Queue] | None:
        bus = cls.bus
        assert bus is not None, "EntryQueue used without a bus"
        (queue,) = queues
        while True:
            own = cls.own_first[0]
            try:
                entry = bus.read_entry(
                    cls.stage, cls.consumer, None if timeout is None else max(1, timeout) * 1000,
                    own=own,
                )  # fmt: skip
            except REDIS_DOWN:
                if cls.on_redis_down is not None:
                    cls.on_redis_down()
                raise
            if entry is None:
                if own:
                    cls.own_first[0] = False
                    continue
                if timeout is not None:
                    raise DequeueTimeout(timeout, bus.entries_key(cls.stage))
                return None
            reason: str | None
            payload: Any = None
            data = entry.payload
            if data is None:
                reason = "undecodable job: no payload"
            elif len(data) > cls.max_job_bytes:
                reason = f"oversized job: over workers.max_job_bytes ({cls.max_job_bytes})"
            else:
                try:
                    payload = json.loads(data)
                    reason = None if isinstance(payload, dict) else "undecodable job: not an object"
                except ValueError as exc:
                    reason = f"undecodable job: {exc}"[:500]
            if reason is None:
                return EntryJob(entry, payload), queue
            raw = bus.entry_raw(cls.stage, entry.id)
            bus.dead_letter(cls.stage, raw, reason)  # (the first 64 KiB of it kept)
            bus.entry_done(cls.stage, entry.id)
            log.warning("%s stream: entry %s set aside (%s)", cls.stage, entry.id, reason)
            if cls.on_dead is not None:
                cls.on_dead(cls.stage, reason.split(":")[0])


class StageWorker(SimpleWorker):
    """A non-forking rq worker (models stay loaded between jobs) that survives Redis
    outages, sets unreadable entries aside, refuses foreign jobs and recovers the jobs
    of dead workers (see the module's docstring)."""

    def __init__(self, *args: Any, rt: Runtime, stage: str, **kwargs: Any) -> None:
        self.rt = rt
        self.stage = stage_spec(stage)
        bus = rt.bus
        self.streamed = self.stage.transport == "stream"
        self.queue_class = type(
            "StageQueue",
            (EntryQueue if self.streamed else GuardedQueue,),
            {
                "bus": bus,
                "max_job_bytes": rt.config.workers.max_job_bytes,
                "on_dead": staticmethod(self._count_dead),
                "on_redis_down": staticmethod(self._dequeue_failed),
                "stage": self.stage.name,
                "own_first": [True],
            },
        )
        super().__init__(*args, queue_class=self.queue_class, **kwargs)
        self.queue_class.consumer = self.name  # type: ignore[attr-defined]
        self.health = RedisHealth(bus.conn, who=self.name, cap_s=rt.config.redis.reconnect_max_s)
        self.health.on_reconnect.append(self._reconnected)
        self.max_connection_wait_time = 1  # rq's own retry pause; ours is the health's
        self.stopping = threading.Event()
        self.recovery_s = rt.config.workers.job_recovery_s
        self._beat_thread: threading.Thread | None = None
        self.activity = Activity(self.name)
        self._suspension_checked = -SUSPENSION_CHECK_S  # time.monotonic() of the last check
        self._state_unsure = True  # whether Redis may hold another state than self._state
        self._prepared: Any = None  # prepare_execution's transaction, not yet sent
        # registration with rq (rq:workers): written by the worker loop at its start, and
        # again by whichever thread first sees that Redis lost it (see _beat_loop)
        self._registration_lock = threading.Lock()
        self._registered = False
        self._server_id: str | None = None  # run_id of the Redis server registered with

    # ----- counters ----------------------------------------------------------------
    def _count_dead(self, stage: str, reason: str) -> None:
        self.rt.metrics.inc("facepipe_queue_entries_dead_total", {"stage": stage, "reason": reason})

    # ----- Redis outages ------------------------------------------------------------
    def _dequeue_failed(self) -> None:
        """rq retries a failed dequeue itself: the next heartbeat must reach Redis (not be
        skipped as recent), so that the outage is waited out here and the worker
        registers again if Redis came back empty."""
        self.last_heartbeat = None

    def _wait_redis(self, exc: BaseException) -> None:
        """Redis is gone: wait (backoff with jitter) until it is back or we stop."""
        self.health.mark_down(exc)
        self.health.wait(self.stopping)

    def _reconnected(self, took: float) -> None:
        """Redis is back (maybe empty, if it restarted without persistence): register;
        a stream stage reads the messages it had taken and not done first."""
        self._register_again()
        if self.streamed:
            self.queue_class.own_first[0] = True  # type: ignore[attr-defined]
        labels = {"process": self.stage.name}
        self.rt.metrics.inc("facepipe_redis_outages_total", labels)
        self.rt.metrics.inc("facepipe_redis_outage_seconds_total", labels, took)

    # ----- registration with rq ------------------------------------------------------
    def register_birth(self) -> None:
        """rq's registration (refusing a name a live worker holds, as rq does), written in
        one transaction with the worker's state."""
        with self._registration_lock:
            if self.connection.exists(self.key) and not self.connection.hexists(self.key, "death"):
                raise ValueError(f"There exists an active worker named {self.name!r} already")
            self._write_registration()

    def _write_registration(self) -> None:
        self.birth_date = self.last_heartbeat = now()
        with self.connection.pipeline() as pipe:
            pipe.delete(self.key)
            pipe.hset(self.key, mapping={**self.serialize(), "state": self._state or "idle"})
            worker_registration.register(self, pipe)
            pipe.expire(self.key, self.worker_ttl + 60)
            pipe.info("server")
            self._server_id = pipe.execute()[-1].get("run_id")
        self._state_unsure = False
        self._registered = True

    def _register_again(self) -> bool:
        """Register again if Redis lost the registration (a restart without persistence,
        a flush); whether it did."""
        with self._registration_lock:
            if not self._registered or self.connection.sismember(REDIS_WORKER_KEYS, self.key):
                return False
            self._write_registration()
            return True

    def _registration_lost(self) -> None:
        """The heartbeat found the registration gone although this worker saw no outage:
        it was not using Redis while the server restarted (paused, starved of CPU) and
        redis-py's retry reconnected it silently. Register again; if the server is a new
        one, count the outage (its length is unknown)."""
        before = self._server_id
        if not self._register_again():
            return
        restarted = before is not None and self._server_id != before
        log.warning(
            "%s: Redis lost this worker's registration (%s); registering again",
            self.name, "the server restarted" if restarted else "flushed or expired",
        )  # fmt: skip
        if restarted:
            self.rt.metrics.inc("facepipe_redis_outages_total", {"process": self.stage.name})

    def register_death(self) -> None:
        with self._registration_lock:
            self._registered = False
            try:
                super().register_death()
            except REDIS_DOWN:
                log.warning("%s: Redis unreachable while stopping; not unregistered", self.name)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        # rq beats (3 round trips) before and after every dequeue and after every job; the
        # worker key lives worker_ttl (minutes): once every HEARTBEAT_EVERY_S is plenty
        if (
            pipeline is None
            and timeout is None
            and getattr(self, "last_heartbeat", None) is not None
            and (now() - self.last_heartbeat).total_seconds() < HEARTBEAT_EVERY_S
        ):
            return
        try:
            super().heartbeat(timeout, pipeline)
        except REDIS_DOWN as exc:
            if pipeline is not None:
                raise
            self._wait_redis(exc)

    def check_for_suspension(self, burst: bool) -> None:
        # `rq suspend` is noticed within SUSPENSION_CHECK_S (rq asks Redis before every job)
        if time.monotonic() - self._suspension_checked < SUSPENSION_CHECK_S and not burst:
            return
        try:
            super().check_for_suspension(burst)
            self._suspension_checked = time.monotonic()
        except REDIS_DOWN as exc:
            self._wait_redis(exc)

    def run_maintenance_tasks(self) -> None:
        try:
            self._sweep_intermediate()
            super().run_maintenance_tasks()
        except REDIS_DOWN as exc:
            self._wait_redis(exc)
        except Exception:  # rq's cleanup must never stop the worker
            log.exception("%s: maintenance failed; skipped until the next round", self.name)
            self.last_cleaned_at = now()

    def _sweep_intermediate(self) -> None:
        """Set aside unreadable entries left in the intermediate queue (by a worker from
        before, or pushed there by hand): rq's cleanup of it raises on them."""
        if self.streamed:
            return  # no intermediate queue: a taken entry stays in the stream until done
        queue_class = self.queue_class
        for queue in self.queues:
            key = IntermediateQueue(queue.key, self.connection).key
            for raw in self.connection.lrange(key, 0, -1):
                reason = queue_class._unreadable(self.connection, raw)
                if reason is None:
                    try:
                        job = Job.fetch(raw.decode(), connection=self.connection,
                                        serializer=self.serializer)  # fmt: skip
                        job.func_name, job.args, job.kwargs  # noqa: B018 - decodes the data
                    except NoSuchJobError:
                        continue
                    except Exception as exc:
                        reason = f"undecodable job: {type(exc).__name__}: {exc}"[:500]
                if reason is not None:
                    queue_class._set_aside(self.connection, queue.key, raw, reason)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is None and state == self._state and not getattr(self, "_state_unsure", True):
            return  # rq sets "idle" after each job and again before each dequeue
        self._state_unsure = False
        try:
            super().set_state(state, pipeline)
        except REDIS_DOWN as exc:
            if pipeline is not None:
                raise
            self._state = state
            self._wait_redis(exc)

    def set_shutdown_requested_date(self) -> None:
        try:
            super().set_shutdown_requested_date()
        except REDIS_DOWN:
            pass  # informational; the stop itself is local

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stopping.set()
        super().request_stop(signum, frame)

    def execute_job(self, job: Job, queue: Queue) -> None:
        if isinstance(job, EntryJob):
            self._execute_entry(job)
            return
        try:
            super().execute_job(job, queue)
        except REDIS_DOWN as exc:
            log.warning("%s: job %s interrupted by a Redis outage", self.name, job.id)
            self._wait_redis(exc)
            if not self.stopping.is_set():
                self._requeue_interrupted(job, queue)
            self._state, self._state_unsure = "idle", True

    def _execute_entry(self, job: EntryJob) -> None:
        """Run a stream stage's message: its payload parsed into the stage's message type
        (or the message filed as failed, never run: ``facepipe_jobs_refused_total``), the
        stage's handler, then the message acknowledged and deleted with the job's metrics
        in one round trip. A handler that raises sends the message again (two retries,
        as rq's jobs of the bus), then files it in the stage's failed list with the
        traceback. An outage mid-message leaves it this worker's: it is read again first
        once Redis is back (or, if the worker dies, recovered by the watchdog)."""
        global _validated, _job_metrics
        spec, bus, metrics = self.stage, self.rt.bus, self.rt.metrics
        t0 = time.monotonic()
        try:
            message = spec.parse(job.payload)
        except Exception as exc:
            reason = f"not a {spec.message.__name__}: {exc}"[:500]
            log.warning("%s: refused message %s (payload): %s", self.name, job.id, reason)
            try:
                bus.entry_again(spec.name, job.id, f"refused by {self.name} (payload): {reason}", 0)
                self.increment_failed_job_count()
            except REDIS_DOWN as down:
                self._wait_redis(down)
                return
            metrics.inc("facepipe_jobs_refused_total", {"stage": spec.name, "reason": "payload"})
            self.activity.job(False, time.monotonic() - t0)
            return
        _validated = (job.payload, message)
        _job_metrics = []
        ok = False
        # busy for rq's stop request (SIGTERM/SIGINT: the message is finished first); not
        # written to Redis (two commands a message, read by nothing of the pipeline)
        self._state = WorkerStatus.BUSY
        try:
            with self.death_penalty_class(ENTRY_TIMEOUT_S, JobTimeoutException, job_id=job.id):
                get_stage(spec.name).handle(job.payload)
            ok = True
        except REDIS_DOWN as exc:
            log.warning("%s: message %s interrupted by a Redis outage", self.name, job.id)
            _job_metrics = None
            self._wait_redis(exc)  # then read again first (_reconnected)
            return
        except Exception:
            failure = traceback.format_exc()
            log.warning("%s: message %s failed (attempt %d of %d):\n%s", self.name, job.id,
                        job.attempts + 1, STREAM_ATTEMPTS, failure)  # fmt: skip
        finally:
            held, _job_metrics = _job_metrics, None
            _validated = None
            self._state = WorkerStatus.IDLE
        took = time.monotonic() - t0
        try:
            # done (or sent again), rq's counters of this worker and the job's metrics: one
            # round trip
            with self.connection.pipeline(transaction=False) as pipe:
                if ok:
                    bus.entry_done(spec.name, job.id, pipe)
                    self.increment_successful_job_count(pipeline=pipe)
                    self.increment_total_working_time(timedelta(seconds=took), pipe)
                else:
                    self.increment_failed_job_count(pipeline=pipe)
                for args in held or ():
                    pipe.execute_command(*args)
                pipe.execute()
            if not ok:
                if bus.entry_again(spec.name, job.id, f"failed in {self.name}: {failure}") == 2:
                    log.warning("%s: message %s failed for good", self.name, job.id)
        except REDIS_DOWN as exc:
            self._wait_redis(exc)  # the message is read again first: it ran once more
        self.activity.job(ok, took)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        # rq also writes the job's heartbeat here (a round trip) for a job it then deletes
        # or files as failed; the worker's own heartbeat says it is alive
        job.ended_at = now()

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Any
    ) -> None:
        """rq's bookkeeping of a finished job in one round trip, for the stage jobs (no
        result kept, no repeats): the worker's counters, the job and its execution
        deleted. rq's own way first watches and reads the job's dependents (two round
        trips): stage jobs have none (the bus never enqueues with ``depends_on``), and a
        job enqueued by hand to depend on one stays deferred."""
        if (
            job.get_result_ttl(self.default_result_ttl) != 0
            or job.repeats_left
            or execution is None
            or job.group_id
            or job.has_rate_limit
        ):
            super().handle_job_success(job, queue, started_job_registry, execution)
            return
        with self.connection.pipeline() as pipe:
            self.increment_successful_job_count(pipeline=pipe)
            assert job.started_at is not None and job.ended_at is not None
            self.increment_total_working_time(job.ended_at - job.started_at, pipe)
            # rq's job.cleanup(0) reads the job's status and its executions first (seven
            # round trips): the status is "started" and the execution is this one. Another
            # execution of the same job (a recovered job whose worker still ran) keeps its
            # own keys, which expire with their TTL.
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.delete(job.execution_registry.key)
            pipe.delete(job.key, job.dependents_key, job.dependencies_key, Result.get_key(job.id))
            self.set_state(WorkerStatus.IDLE, pipeline=pipe)  # rq sets it after the job
            global _job_metrics
            for args in _job_metrics or ():  # the job's metrics (Stage.handle)
                pipe.execute_command(*args)
            _job_metrics = None
            pipe.execute()
        job._status = JobStatus.FINISHED

    def _send_commands(self, commands: list[tuple[Any, ...]]) -> None:
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                for args in commands:
                    pipe.execute_command(*args)
                pipe.execute()
        except REDIS_DOWN:
            log.warning("%s: a job's metrics were not written (Redis down)", self.name)

    def prepare_execution(self, job: Job) -> Execution:
        """rq's execution record of ``job``, written with the job's own preparation
        (:meth:`prepare_job_execution`) in one transaction instead of two."""
        pipe = self.connection.pipeline()
        execution = Execution.create(
            job, self.get_heartbeat_ttl(job), pipeline=pipe, worker_name=self.name
        )
        self.executions[execution.id] = execution
        self.set_state(WorkerStatus.BUSY, pipeline=pipe)
        self._prepared = pipe
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """rq's bookkeeping before a job runs (heartbeats, the job started, out of the
        intermediate queue), in the transaction :meth:`prepare_execution` began."""
        pipe, self._prepared = self._prepared, None
        pipe = pipe if pipe is not None else self.connection.pipeline()
        with pipe:
            ttl = self.get_heartbeat_ttl(job)
            super().heartbeat(ttl, pipeline=pipe)
            job.heartbeat(now(), ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            if remove_from_intermediate_queue:
                key = Queue.redis_queue_namespace_prefix + job.origin
                pipe.lrem(IntermediateQueue.get_intermediate_queue_key(key), 1, job.id)
            pipe.execute()

    def _requeue_interrupted(self, job: Job, queue: Queue) -> None:
        """After an outage: the interrupted job, if Redis still has it, runs again."""
        registry = StartedJobRegistry(queue=queue)
        mine = [e for e in self.connection.zrange(registry.key, 0, -1)
                if _text(e).split(":")[0] == job.id]  # fmt: skip
        if mine:
            self.connection.zadd(registry.key, {e: 1 for e in mine}, xx=True)
            registry.cleanup()
            log.warning("%s: job %s requeued after the outage", self.name, job.id)

    # ----- only the stage's own jobs run ------------------------------------------
    def refusal(self, job: Job) -> tuple[str, str] | None:
        """``(reason, message)`` if ``job`` must not run on this stage, else None."""
        spec = self.stage
        if job.func_name != spec.job:
            return "function", f"{job.func_name!r} is not the {spec.name} job function {spec.job}"
        callbacks = (job._success_callback_name, job._failure_callback_name,
                     job._stopped_callback_name)  # fmt: skip
        if job.instance is not None or any(callbacks):
            return "arguments", "a stage job has no instance and no callbacks"
        if job.kwargs or len(job.args) != 1 or not isinstance(job.args[0], dict):
            return "arguments", "a stage job takes exactly one payload object"
        global _validated
        try:
            _validated = (job.args[0], spec.parse(job.args[0]))
        except Exception as exc:
            return "payload", f"not a {spec.message.__name__}: {exc}"[:500]
        return None

    def perform_job(self, job: Job, queue: Queue, execution: Any) -> bool:
        global _job_metrics
        refused = self.refusal(job)
        if refused is None:
            t0 = time.monotonic()
            _job_metrics = []
            try:
                ok = super().perform_job(job, queue, execution)
            finally:
                held, _job_metrics = _job_metrics, None
                if held:  # not sent with the success bookkeeping (a failure, a retry...)
                    self._send_commands(held)
            self.activity.job(ok, time.monotonic() - t0)
            return ok
        reason, message = refused
        log.warning("%s: refused job %s (%s): %s", self.name, job.id, reason, message)
        self.prepare_job_execution(job, remove_from_intermediate_queue=len(self.queues) == 1)
        job.retries_left = 0  # a refused job is never retried
        job.ended_at = now()
        self.handle_job_failure(
            job=job, queue=queue, started_job_registry=queue.started_job_registry,
            exc_string=f"refused by {self.name} ({reason}): {message}", execution=execution,
        )  # fmt: skip
        self.rt.metrics.inc(
            "facepipe_jobs_refused_total", {"stage": self.stage.name, "reason": reason}
        )
        return False

    # ----- heartbeat and the watchdog for dead workers' jobs ----------------------
    def start_beating(self) -> None:
        global _beating
        _beating = self.name
        self._beat_thread = threading.Thread(target=self._beat_loop, daemon=True,
                                             name="facepipe-heartbeat")  # fmt: skip
        self._beat_thread.start()

    def _beat_loop(self) -> None:
        period = self.recovery_s / 4
        bus = self.rt.bus  # thread-safe: each command takes a pooled connection
        while not self.stopping.wait(period):
            try:
                pipe = bus.conn.pipeline(transaction=False)
                bus.beat(self.name, self.recovery_s, pipe)
                pipe.sismember(REDIS_WORKER_KEYS, self.key)
                if not pipe.execute()[-1] and self._registered and self.health.up:
                    self._registration_lost()
                if bus.conn.set(bus.key("watchdog"), self.name, nx=True, px=int(period * 900)):
                    recover_dead_jobs(bus, self.rt.metrics, self.recovery_s)
            except REDIS_DOWN:
                pass  # the worker loop waits for Redis
            except Exception:
                log.exception("%s: watchdog pass failed", self.name)

    def beat_now(self) -> None:
        self.rt.bus.beat(self.name, self.recovery_s)


def stage_worker(stage: str, rt: Runtime, name: str | None = None) -> StageWorker:
    """The worker of ``stage`` on ``rt``'s bus (named ``STAGE-HOST-PID`` by default)."""
    return StageWorker(
        [rt.bus.queue_name(stage)],
        connection=rt.bus.conn,
        serializer=JSONSerializer,
        name=name or f"{stage}-{socket.gethostname()}-{os.getpid()}",
        log_job_description=False,
        rt=rt,
        stage=stage,
    )


def recover_dead_jobs(bus: Bus, metrics: Any, recovery_s: float) -> int:
    """Requeue the started jobs whose worker's heartbeat expired; returns how many.

    rq would only notice them when their timeout (minutes) ran out. The job is retried
    if it has retries left (every job of the bus has two), else it goes to the failed
    registry (``AbandonedJobError``): rq's own cleanup, applied to these entries now.
    """
    recovered = 0
    for stage in STAGE_NAMES:
        if stage_spec(stage).transport == "stream":
            recovered += _recover_entries(bus, metrics, stage, recovery_s)
            continue
        registry = StartedJobRegistry(queue=bus.queue(stage))
        dead: dict[bytes, str] = {}
        for entry in bus.conn.zrange(registry.key, 0, -1):
            job_id = _text(entry).split(":")[0]
            worker, started = bus.conn.hmget(Job.key_for(job_id), ["worker_name", "started_at"])
            if worker is None or bus.alive(_text(worker)):
                continue
            # a worker that just started the job (or just reconnected) has had less than
            # one recovery period to beat: only jobs started before that are orphans
            if not started or (now() - str_to_date(started)).total_seconds() < recovery_s:
                continue
            dead[entry] = _text(worker)
        if dead:
            bus.conn.zadd(registry.key, {e: 1 for e in dead}, xx=True)
            registry.cleanup()
            recovered += len(dead)
            metrics.inc("facepipe_jobs_recovered_total", {"stage": stage}, len(dead))
            log.warning(
                "requeued %d %s job(s) of dead worker(s) %s",
                len(dead), stage, ", ".join(sorted(set(dead.values()))),
            )  # fmt: skip
    return recovered


def _recover_entries(bus: Bus, metrics: Any, stage: str, recovery_s: float) -> int:
    """The messages of a stream stage whose worker's heartbeat expired are sent again
    (one more attempt counted; filed as failed after :data:`STREAM_ATTEMPTS`, so a
    message that kills every worker that takes it stops being retried)."""
    dead: dict[str, str] = {}  # entry id -> its worker
    for p in bus.entries_pending(stage, recovery_s):
        worker = _text(p["consumer"])
        if not bus.alive(worker):
            dead[_text(p["message_id"])] = worker
    again = 0
    for entry_id, worker in dead.items():
        got = bus.entry_again(stage, entry_id, f"its worker {worker} died while running it")
        again += got == 1
        if got == 2:
            log.warning("%s message %s failed for good: its workers died", stage, entry_id)
    if dead:
        metrics.inc("facepipe_jobs_recovered_total", {"stage": stage}, len(dead))
        log.warning(
            "sent %d %s message(s) of dead worker(s) %s again (%d), or filed them as failed",
            len(dead), stage, ", ".join(sorted(set(dead.values()))), again,
        )  # fmt: skip
    bus.prune_consumers(stage, recovery_s)  # dead workers that held nothing leave the group
    return len(dead)


activity_log = logging.getLogger("workers.activity")
activity_log.setLevel(logging.INFO)  # shown without -v: a worker's log says it is working


class Activity:
    """A worker's log line about its work, at most one per ``every_s`` seconds (INFO,
    logger ``workers.activity``): ``detect-0: 143 jobs in 10.0 s (14.3/s), 0 failed,
    mean 35 ms``. Nothing is logged while the worker is idle."""

    def __init__(self, name: str, every_s: float = 10.0) -> None:
        self.name, self.every_s = name, every_s
        self._reset(time.monotonic())
        self.total = 0

    def _reset(self, now: float) -> None:
        self.since, self.jobs, self.failed, self.busy_s = now, 0, 0, 0.0

    def job(self, ok: bool, seconds: float) -> None:
        self.jobs += 1
        self.total += 1
        self.failed += 0 if ok else 1
        self.busy_s += seconds
        now = time.monotonic()
        span = now - self.since
        if span >= self.every_s:
            activity_log.info(
                "%s: %d jobs in %.1f s (%.1f/s), %d failed, mean %.0f ms; %d since start",
                self.name, self.jobs, span, self.jobs / span, self.failed,
                1000 * self.busy_s / self.jobs, self.total,
            )  # fmt: skip
            self._reset(now)


def run_worker(stage: str, rt: Runtime, burst: bool = False, name: str | None = None) -> None:
    """Load the stage's model once, then process its queue until stopped.

    rq's loop ends on errors it does not handle; unless a stop was requested (SIGTERM,
    SIGINT) or ``burst`` emptied the queue, it is started again once Redis answers.
    """
    set_runtime(rt)
    st = get_stage(stage)
    st.warmup()
    if stage_spec(stage).transport == "stream":  # rq jobs left by a facepipe from before
        moved = rt.bus.adopt_rq_jobs(stage)
        if moved:
            log.warning("%s: moved %d rq job(s) of an older facepipe to the stream", stage, moved)
    worker = stage_worker(stage, rt, name)
    worker.health.call(worker.beat_now)
    worker.start_beating()
    pause = backoff_delays(0.5, rt.config.redis.reconnect_max_s)
    quick_exits = 0
    try:
        while True:
            started = time.monotonic()
            try:
                worker.work(burst=burst, logging_level="WARNING", with_scheduler=False)
            except REDIS_DOWN as exc:
                worker._wait_redis(exc)
            if burst or worker.stopping.is_set() or worker._stop_requested:
                return
            quick_exits = quick_exits + 1 if time.monotonic() - started < 5 else 0
            log.warning("%s: worker loop ended; restarting it", worker.name)
            if worker.stopping.wait(pause(quick_exits)):  # no busy loop if it ends at once
                return
            worker.health.wait(worker.stopping)
            worker._stop_requested = False
            with_key = worker.connection.exists(worker.key)
            if with_key:
                worker.connection.delete(worker.key)  # ours: register again
    finally:
        worker.stopping.set()
        try:
            rt.bus.forget(worker.name)
        except REDIS_DOWN:
            pass
