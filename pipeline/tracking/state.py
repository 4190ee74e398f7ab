"""Each stream's tracker state in Redis, and the per-stream lock that guards it.

The track stage advances a stream's tracker frame by frame; the recognize stage feeds it
the encodings of sampled faces (appearance, re-identification). Both run in whichever
worker process takes the job, so the state lives in Redis, as JSON, under
``<prefix>:tracker:<stream>:<session>``, and every change happens while holding
``<prefix>:tracker-lock:<stream>:<session>`` (``SET NX PX`` with a random token; a
worker that dies holding it loses it after ``LOCK_MS``).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.bus import Bus
from pipeline.config import TrackerConfig
from pipeline.tracking.stream import StreamState, Tracker, new_tracker

LOCK_MS = 30_000
STATE_TTL_S = 7 * 24 * 3600
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class TrackerStates:
    """Load, save and lock the tracker state of ``(stream, session)`` pairs."""

    def __init__(self, bus: Bus, config: TrackerConfig) -> None:
        self.bus = bus
        self.config = config
        self._release = bus.conn.register_script(_RELEASE)

    def key(self, what: str, stream: str, session: str) -> str:
        """``tracker`` (the state) or ``tracker-lock``."""
        return self.bus.key(what, stream, session)

    def new_tracker(self) -> Tracker:
        return new_tracker(self.config)

    def load(self, stream: str, session: str) -> StreamState:
        raw = self.bus.conn.get(self.key("tracker", stream, session))
        if raw is None:
            return StreamState(self.new_tracker())
        return StreamState.from_dict(json.loads(raw), self.config)

    def save(self, stream: str, session: str, state: StreamState) -> None:
        self.bus.conn.set(
            self.key("tracker", stream, session),
            json.dumps(state.to_dict(), separators=(",", ":")),
            ex=STATE_TTL_S,
        )

    @contextmanager
    def locked(self, stream: str, session: str, wait_s: float = 0.0) -> Iterator[bool]:
        """Hold the stream's lock inside the block; yields False if not had in ``wait_s``."""
        key, token = self.key("tracker-lock", stream, session), secrets.token_hex(8)
        deadline = time.monotonic() + wait_s
        while not self.bus.conn.set(key, token, nx=True, px=LOCK_MS):
            if time.monotonic() >= deadline:
                yield False
                return
            time.sleep(0.002)
        try:
            yield True
        finally:
            self._release(keys=[key], args=[token])

    def frame_waiting(self, stream: str, session: str, seq: int) -> bool:
        """Whether frame ``seq``'s detect result is buffered (a track job should run)."""
        return bool(self.bus.conn.hexists(self.bus.detected_key(stream, session), str(seq)))
