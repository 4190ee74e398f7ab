"""What every process of a pipeline shares: config, Redis bus, frame store, metrics."""

from __future__ import annotations

from dataclasses import dataclass, replace

import redis

from pipeline.bus import Bus, connect
from pipeline.config import Config
from pipeline.frames import FrameStore
from pipeline.metrics import Metrics


class NoRedisError(RuntimeError):
    pass


@dataclass
class Runtime:
    config: Config
    bus: Bus
    frames: FrameStore
    metrics: Metrics

    @classmethod
    def from_config(cls, config: Config, redis_url: str | None = None) -> Runtime:
        url = redis_url or config.redis.url
        if not url:
            raise NoRedisError(
                "no Redis server given: set REDIS_URL (or redis.url in the config), "
                "e.g. REDIS_URL=redis://localhost:6379/0; `facepipe run` starts its own"
            )
        conn = connect(url)
        bus = Bus(conn, config.redis.prefix, config.redis.session_ttl_s)
        return cls(config=config, bus=bus, frames=frame_store(conn, config), metrics=Metrics(bus))

    def with_config(self, config: Config) -> Runtime:
        """The same Redis connection under another config (a camera's overrides): the
        frame store follows its capture section."""
        if config is self.config:
            return self
        return replace(self, config=config, frames=frame_store(self.bus.conn, config))


def frame_store(conn: redis.Redis, config: Config) -> FrameStore:
    """The frame store of ``config``'s capture section on ``conn``: raw frames with
    ``capture.frame_format`` raw, or auto on a unix socket (every reader on this
    machine), else JPEG."""
    fmt = config.capture.frame_format
    local = conn.connection_pool.connection_class is redis.UnixDomainSocketConnection
    return FrameStore(
        conn,
        ttl_s=config.redis.frame_ttl_s,
        jpeg_quality=config.capture.jpeg_quality,
        resize_width=config.capture.resize_width,
        raw=fmt == "raw" or (fmt == "auto" and local),
    )
