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
from dataclasses import dataclass, field
from typing import Any

from pipeline.bus import Bus
from pipeline.config import TrackerConfig
from pipeline.tracking.iou import IoUTracker
from pipeline.tracking.kalman import KalmanTracker

LOCK_MS = 30_000
STATE_TTL_S = 7 * 24 * 3600
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

Tracker = IoUTracker | KalmanTracker


@dataclass
class StreamState:
    """A stream's tracker and where the track stage is in the stream."""

    tracker: Tracker
    next_seq: int = 0  # the next frame the track stage will consume
    waiting_since: float | None = None  # since when it waits for a missing frame
    # per track: the best face of the current sampling window, not yet sent to recognition
    # ({"seq", "ts", "key", "width", "height", "live", "face"}; the face carries its quality)
    candidates: dict[int, dict[str, Any]] = field(default_factory=dict)


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
        cfg = self.config
        if cfg.model == "kalman":
            return KalmanTracker(
                cfg.iou_threshold,
                cfg.max_missed,
                cfg.min_hits,
                reid_threshold=cfg.reid_threshold,
                reid_merge=cfg.reid_window > 0,
                reid_window=cfg.reid_window,
                reid_margin=cfg.reid_margin,
                max_tentative_missed=cfg.max_tentative_missed,
            )
        return IoUTracker(cfg.iou_threshold, cfg.max_missed, cfg.min_hits)

    def load(self, stream: str, session: str) -> StreamState:
        raw = self.bus.conn.get(self.key("tracker", stream, session))
        if raw is None:
            return StreamState(self.new_tracker())
        data = json.loads(raw)
        cls = KalmanTracker if self.config.model == "kalman" else IoUTracker
        return StreamState(
            cls.from_dict(data["tracker"]),
            data["next_seq"],
            data.get("waiting_since"),
            {int(k): v for k, v in data.get("candidates", {}).items()},
        )

    def save(self, stream: str, session: str, state: StreamState) -> None:
        data = {
            "tracker": state.tracker.to_dict(),
            "next_seq": state.next_seq,
            "waiting_since": state.waiting_since,
            "candidates": state.candidates,
        }
        self.bus.conn.set(
            self.key("tracker", stream, session),
            json.dumps(data, separators=(",", ":")),
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
