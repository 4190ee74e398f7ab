"""The message bus: Redis keys, rq queues and per-stream frame accounting.

Every stage talks to the others only through this module: jobs on rq queues (JSON
serializer, never pickle) that carry the stage's message type (``pipeline/stages.py``:
:class:`~pipeline.record.FrameRecord`, :class:`~pipeline.record.TrackJob` or a
:class:`~pipeline.record.SinkMessage`), and Redis keys for what stages share:

* ``detected:<stream>:<session>``: the ordered buffer, a hash of frames by ``seq``
  waiting for the track stage (``buffer_*``); detect workers finish out of order, the
  track stage takes them strictly in sequence;
* ``encodings:<stream>:<session>``: a list of :class:`~pipeline.record.Encodings` the
  recognize stage sends the track stage for re-identification (``send_encodings``,
  ``take_encodings``);
* ``tracker:<stream>:<session>``: the track stage's state (JSON), its only writer being
  the track stage, under ``tracker-lock:<stream>:<session>`` (redis-py's ``Lock``);
* ``streams``, ``stream:<stream>/<session>``: registered streams and their frame counts.

Key and queue names all start with ``redis.prefix`` so several pipelines can share one
Redis server.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from redis.lock import Lock
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from pipeline.record import Encodings, FrameRecord, TrackJob
from pipeline.stages import stage as stage_spec

STATE_TTL_S = 7 * 24 * 3600  # the tracker state and encodings of an idle stream expire


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

    def frame_key(self, rec: FrameRecord) -> str:
        return self.key("frame", rec.stream, rec.session, rec.seq)

    def stream_id(self, stream: str, session: str) -> str:
        return f"{stream}/{session}"

    # ----- queues --------------------------------------------------------------
    def queue_name(self, stage: str) -> str:
        return stage_spec(stage).queue_name(self.prefix)

    def queue(self, stage: str) -> Queue:
        if stage not in self._queues:
            self._queues[stage] = Queue(
                self.queue_name(stage), connection=self.conn, serializer=JSONSerializer
            )
        return self._queues[stage]

    def send(self, stage: str, message: Any, timeout: int = 600) -> None:
        """Enqueue a job for ``stage`` carrying ``message``, of the stage's message type."""
        spec = stage_spec(stage)
        if not isinstance(message, spec.message):
            raise TypeError(
                f"the {stage} stage takes {spec.message.__name__}, not {type(message).__name__}"
            )
        self.queue(stage).enqueue(
            spec.job,
            message.to_dict(),
            job_timeout=timeout,
            result_ttl=0,
            failure_ttl=7 * 24 * 3600,
            retry=Retry(max=2),  # transient errors (a busy database, a restarted Redis)
            description=(f"{stage} {getattr(message, 'stream', '')}#{getattr(message, 'seq', '')}"),
        )

    def poke_track(self, stream: str, session: str) -> None:
        """Ask the track stage to look at a stream (frames or encodings are waiting)."""
        self.send("track", TrackJob(stream, session))

    def depth(self, stage: str) -> int:
        return self.queue(stage).count

    # ----- the detect -> track ordered buffer ---------------------------------------
    def _buffer(self, stream: str, session: str) -> str:
        return self.key("detected", stream, session)

    def buffer_put(self, rec: FrameRecord) -> None:
        """Frame ``rec`` waits for the track stage; the stream's track stage is poked."""
        self.conn.hset(self._buffer(rec.stream, rec.session), str(rec.seq), rec.to_json())
        self.poke_track(rec.stream, rec.session)

    def buffer_take(self, stream: str, session: str, seq: int) -> FrameRecord | None:
        """Remove and return frame ``seq`` of the stream, or None if it is not there."""
        pipe = self.conn.pipeline()
        pipe.hget(self._buffer(stream, session), str(seq))
        pipe.hdel(self._buffer(stream, session), str(seq))
        raw, _ = pipe.execute()
        return None if raw is None else FrameRecord.from_json(raw)

    def buffer_has(self, stream: str, session: str, seq: int) -> bool:
        return bool(self.conn.hexists(self._buffer(stream, session), str(seq)))

    def buffer_len(self, stream: str, session: str) -> int:
        return int(self.conn.hlen(self._buffer(stream, session)))

    def buffer_seqs(self, stream: str, session: str) -> list[int]:
        """Sequence numbers of the frames waiting, in order."""
        return sorted(int(k) for k in self.conn.hkeys(self._buffer(stream, session)))

    # ----- encodings for re-identification: recognize -> track ------------------------
    def _encodings(self, stream: str, session: str) -> str:
        return self.key("encodings", stream, session)

    def send_encodings(self, msg: Encodings) -> None:
        """Queue ``msg`` for the stream's tracker and poke the track stage."""
        key = self._encodings(msg.stream, msg.session)
        pipe = self.conn.pipeline()
        pipe.rpush(key, json.dumps(msg.to_dict(), separators=(",", ":")))
        pipe.expire(key, STATE_TTL_S)
        pipe.execute()
        self.poke_track(msg.stream, msg.session)

    def take_encodings(self, stream: str, session: str) -> list[Encodings]:
        """Remove and return every :class:`Encodings` waiting for the stream, in order."""
        key = self._encodings(stream, session)
        pipe = self.conn.pipeline()  # MULTI: nothing pushed in between is lost
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        raw, _ = pipe.execute()
        return [Encodings.from_dict(json.loads(r)) for r in raw]

    def encodings_waiting(self, stream: str, session: str) -> bool:
        return bool(self.conn.llen(self._encodings(stream, session)))

    # ----- the track stage's state and lock ---------------------------------------------
    def load_tracker_state(self, stream: str, session: str) -> dict[str, Any] | None:
        raw = self.conn.get(self.key("tracker", stream, session))
        return None if raw is None else json.loads(raw)

    def save_tracker_state(self, stream: str, session: str, state: dict[str, Any]) -> None:
        self.conn.set(
            self.key("tracker", stream, session),
            json.dumps(state, separators=(",", ":")),
            ex=STATE_TTL_S,
        )

    def tracker_lock(self, stream: str, session: str, timeout_s: float) -> Lock:
        """The stream's tracker lock (expires ``timeout_s`` after it is taken)."""
        return self.conn.lock(self.key("tracker-lock", stream, session), timeout=timeout_s)

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
