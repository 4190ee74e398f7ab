"""What every process of a pipeline shares: config, Redis bus, frame store, metrics."""

from __future__ import annotations

from dataclasses import dataclass, replace

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
        frames = FrameStore(
            conn,
            ttl_s=config.redis.frame_ttl_s,
            jpeg_quality=config.capture.jpeg_quality,
            resize_width=config.capture.resize_width,
        )
        return cls(config=config, bus=bus, frames=frames, metrics=Metrics(bus))

    def with_config(self, config: Config) -> Runtime:
        """The same Redis connection under another config (a camera's overrides): the
        frame store follows its capture section."""
        if config is self.config:
            return self
        frames = FrameStore(
            self.bus.conn,
            ttl_s=config.redis.frame_ttl_s,
            jpeg_quality=config.capture.jpeg_quality,
            resize_width=config.capture.resize_width,
        )
        return replace(self, config=config, frames=frames)
