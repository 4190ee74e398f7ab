"""The stage table: the one place that names the stages.

Each stage has a queue (``<redis.prefix>.<name>``), a job function that its workers run for each
job on it (a dotted path into ``workers``, so that ``pipeline`` never imports the
workers), the message type its jobs carry (JSON on the wire, read back with the type's
``from_dict``), the worker class that holds the stage's model in a worker process, and
its transport:

* ``rq``: each message is an rq job (a job hash, the queue's list, rq's registries of
  started and failed jobs): the model stages, whose jobs take tens of milliseconds;
* ``stream``: each message is an entry of a Redis stream read by a consumer group
  (``<redis.prefix>:queue:<name>``, ``pipeline/bus.py``), acknowledged and deleted when
  done: the track and sink stages, which see every frame and whose work per message is
  about a millisecond, less than rq's bookkeeping of a job (docs/benchmarks.md). The
  entry carries only the payload: there is no function name in it to refuse. The same
  worker (``workers/base.py``) runs both; the faults it survives are the same.

Queue names, job functions, worker classes and the list of stages all come from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pipeline.record import FrameBatch, SinkMessage, TrackJob


@dataclass(frozen=True)
class StageSpec:
    name: str
    message: type[Any]  # the job payload's type: FrameBatch, TrackJob, SinkMessage
    job: str  # dotted path of the job function
    worker: str  # dotted path of the workers.base.Stage subclass
    transport: Literal["rq", "stream"] = "rq"

    def queue_name(self, prefix: str) -> str:
        return f"{prefix}.{self.name}"

    def parse(self, payload: dict[str, Any]) -> Any:
        """The job payload as this stage's message type (``ValueError`` if malformed)."""
        return self.message.from_dict(payload)


def _spec(
    name: str, message: type[Any], worker_class: str, transport: Literal["rq", "stream"] = "rq"
) -> StageSpec:
    return StageSpec(
        name, message, f"workers.{name}.handle", f"workers.{name}.{worker_class}", transport
    )


# in pipeline order
STAGES: dict[str, StageSpec] = {
    s.name: s
    for s in (
        _spec("detect", FrameBatch, "DetectStage"),
        _spec("track", TrackJob, "TrackStage", "stream"),
        # the samples one hold of the track stage chose: one job (workers/track.py)
        _spec("recognize", FrameBatch, "RecognizeStage"),
        _spec("attributes", FrameBatch, "AttributesStage"),
        _spec("sink", SinkMessage, "SinkStage", "stream"),
    )
}
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)


def stage(name: str) -> StageSpec:
    """The spec of stage ``name`` (``ValueError`` naming the stages if unknown)."""
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}") from None


def stage_of_worker(worker: str) -> StageSpec:
    """The spec whose worker class is ``worker`` (a dotted path)."""
    for spec in STAGES.values():
        if spec.worker == worker:
            return spec
    raise ValueError(f"{worker} is no stage's worker class (pipeline/stages.py)")
