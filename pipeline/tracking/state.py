"""Each stream's tracker state in Redis, and the per-stream lock that guards it.

The track stage is the state's only writer. Its jobs run in whichever worker process
takes them, so the state (:class:`~pipeline.tracking.stream.StreamState`, JSON) lives in
Redis through the bus (``<prefix>:tracker:<stream>:<session>``), and a job changes it only
while holding the stream's lock (``<prefix>:tracker-lock:<stream>:<session>``, redis-py's
:class:`redis.lock.Lock`: a random token, released only by its owner; a worker that dies
holding it loses it after ``LOCK_S`` seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.exceptions import LockError

from pipeline.bus import Bus
from pipeline.config import TrackerConfig
from pipeline.tracking.stream import StreamState, Tracker, new_tracker

log = logging.getLogger(__name__)

LOCK_S = 30.0  # a hold lasts milliseconds per frame; the track stage works in batches


class TrackerStates:
    """Load, save and lock the tracker state of ``(stream, session)`` pairs."""

    def __init__(self, bus: Bus, config: TrackerConfig) -> None:
        self.bus = bus
        self.config = config

    def new_tracker(self) -> Tracker:
        return new_tracker(self.config)

    def load(self, stream: str, session: str) -> StreamState:
        return self.from_data(self.bus.load_tracker_state(stream, session))

    def from_data(self, data: dict[str, Any] | None) -> StreamState:
        """The state stored as ``data`` (a new one for None: the stream's first frame)."""
        if data is None:
            return StreamState(self.new_tracker())
        return StreamState.from_dict(data, self.config)

    def save(self, stream: str, session: str, state: StreamState, pipeline: Any = None) -> None:
        """Write ``state`` (with ``pipeline``, when that is executed)."""
        self.bus.save_tracker_state(stream, session, state.to_dict(), pipeline=pipeline)

    @contextmanager
    def locked(self, stream: str, session: str, wait_s: float = 0.0) -> Iterator[bool]:
        """Hold the stream's lock inside the block; yields False if not had in ``wait_s``
        seconds (0: one try)."""
        lock = self.bus.tracker_lock(stream, session, LOCK_S)
        if wait_s > 0:
            held = lock.acquire(blocking=True, blocking_timeout=wait_s)
        else:
            held = lock.acquire(blocking=False)
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            try:
                lock.release()
            except LockError:  # expired while held (and perhaps taken by another worker)
                log.warning("tracker lock of %s/%s expired while held", stream, session)
