"""Stage workers: rq workers that run jobs in their own process.

rq's default worker forks a work-horse per job; TensorFlow does not survive that fork and
reloading a model per job would waste seconds. :class:`StageWorker` is rq's
``SimpleWorker`` (jobs run in the worker process), and each stage object, which holds
its model, is created once per process by :func:`get_stage`. Which class serves which
stage, and which job function rq calls, is the stage table's (``pipeline/stages.py``);
a job's payload is parsed into the stage's message type before :meth:`Stage.process`.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
from typing import Any, ClassVar

import numpy as np
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from pipeline.config import load_config
from pipeline.record import FrameRecord
from pipeline.runtime import Runtime
from pipeline.stages import StageSpec, stage_of_worker
from pipeline.stages import stage as stage_spec

log = logging.getLogger(__name__)

_runtime: Runtime | None = None
_stages: dict[str, Stage] = {}


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

    def handle(self, payload: dict[str, Any]) -> None:
        """Run one job: its payload parsed into the stage's message type."""
        spec = self.spec()
        t0 = time.perf_counter()
        try:
            self.process(spec.parse(payload))
        finally:
            self.rt.metrics.observe(
                "facepipe_stage_seconds", {"stage": spec.name}, time.perf_counter() - t0
            )

    def process(self, message: Any) -> None:
        raise NotImplementedError


def get_stage(stage: str) -> Stage:
    """This process's object of ``stage`` (its worker class from the stage table)."""
    if stage not in _stages:
        module, _, name = stage_spec(stage).worker.rpartition(".")
        _stages[stage] = getattr(importlib.import_module(module), name)(runtime())
    return _stages[stage]


def run_job(cls: type[Stage], payload: dict[str, Any]) -> None:
    """The body of each stage module's job function: ``cls``'s stage runs ``payload``."""
    get_stage(cls.spec().name).handle(payload)


class StageWorker(SimpleWorker):
    """A non-forking rq worker (models stay loaded between jobs)."""


def run_worker(stage: str, rt: Runtime, burst: bool = False, name: str | None = None) -> None:
    """Load the stage's model once, then process its queue until stopped."""
    set_runtime(rt)
    st = get_stage(stage)
    st.warmup()
    worker = StageWorker(
        [rt.bus.queue(stage)],
        connection=rt.bus.conn,
        serializer=JSONSerializer,
        name=name or f"{stage}-{socket.gethostname()}-{os.getpid()}",
        log_job_description=False,
    )
    worker.work(burst=burst, logging_level="WARNING", with_scheduler=False)
