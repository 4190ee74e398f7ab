"""The message bus: Redis keys, rq queues and per-stream frame accounting.

Every stage talks to the others only through this module: jobs on rq queues (JSON
serializer, never pickle) that carry :class:`~pipeline.record.FrameRecord` dicts, and
Redis keys for shared state. Key and queue names all start with ``redis.prefix`` so
several pipelines can share one Redis server.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from pipeline.record import FrameRecord

STAGES = ("detect", "track", "recognize", "attributes", "sink")

# the job function each stage's queue runs (module path inside `workers`)
JOB_FUNCS = {
    "detect": "workers.detect.handle",
    "track": "workers.track.handle",
    "recognize": "workers.recognize.handle",
    "attributes": "workers.attributes.handle",
    "sink": "workers.sink.handle",
}


def connect(url: str) -> redis.Redis:
    """A Redis client for ``redis://``, ``rediss://`` or ``unix://`` URLs."""
    return redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)


class Bus:
    """Redis connection, queue names and key names of one pipeline."""

    def __init__(self, conn: redis.Redis, prefix: str = "facepipe") -> None:
        self.conn = conn
        self.prefix = prefix
        self._queues: dict[str, Queue] = {}

    # ----- keys ----------------------------------------------------------------
    def key(self, *parts: object) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def detected_key(self, stream: str, session: str) -> str:
        """The hash where a stream's frames wait, by seq, for the track stage."""
        return self.key("detected", stream, session)

    def frame_key(self, rec: FrameRecord) -> str:
        return self.key("frame", rec.stream, rec.session, rec.seq)

    def stream_id(self, stream: str, session: str) -> str:
        return f"{stream}/{session}"

    # ----- queues --------------------------------------------------------------
    def queue_name(self, stage: str) -> str:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        return f"{self.prefix}.{stage}"

    def queue(self, stage: str) -> Queue:
        if stage not in self._queues:
            self._queues[stage] = Queue(
                self.queue_name(stage), connection=self.conn, serializer=JSONSerializer
            )
        return self._queues[stage]

    def enqueue(self, stage: str, payload: dict[str, Any], timeout: int = 600) -> None:
        self.queue(stage).enqueue(
            JOB_FUNCS[stage],
            payload,
            job_timeout=timeout,
            result_ttl=0,
            failure_ttl=7 * 24 * 3600,
            retry=Retry(max=2),  # transient errors (a busy database, a restarted Redis)
            description=f"{stage} {payload.get('stream', '')}#{payload.get('seq', '')}",
        )

    def depth(self, stage: str) -> int:
        return self.queue(stage).count

    # ----- streams and frame accounting ------------------------------------------
    def register_stream(self, stream: str, session: str, info: dict[str, Any]) -> None:
        sid = self.stream_id(stream, session)
        self.conn.hset(self.key("streams"), sid, json.dumps({**info, "started": time.time()}))
        self.conn.hset(self.key("stream", sid), mapping={"captured": 0, "processed": 0})

    def streams(self) -> dict[str, dict[str, Any]]:
        raw = self.conn.hgetall(self.key("streams"))
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def count_frame(self, stream: str, session: str, field: str, n: int = 1) -> None:
        """Per-stream counters: ``captured``, ``processed`` or ``dropped:REASON``."""
        self.conn.hincrby(self.key("stream", self.stream_id(stream, session)), field, n)

    def set_end(self, stream: str, session: str, last_seq: int) -> None:
        """A finite source is done; ``last_seq`` is -1 when no frame was enqueued."""
        self.conn.hset(self.key("stream", self.stream_id(stream, session)), "end_seq", last_seq)

    def stream_counts(self, stream: str, session: str) -> dict[str, int]:
        raw = self.conn.hgetall(self.key("stream", self.stream_id(stream, session)))
        return {k.decode(): int(v) for k, v in raw.items()}

    def stream_done(self, stream: str, session: str) -> bool:
        """True once a finite stream's every captured frame is processed or dropped."""
        c = self.stream_counts(stream, session)
        if "end_seq" not in c:
            return False
        dropped = sum(v for k, v in c.items() if k.startswith("dropped:"))
        return c.get("captured", 0) == c.get("processed", 0) + dropped
