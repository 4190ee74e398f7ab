"""Waiting out a Redis outage: capped exponential backoff with jitter, one helper for all.

Every process of a pipeline (capture, stage workers, the sink, the metrics endpoint, the
orchestrator) keeps running when Redis goes away: an operation that fails with a
connection error is retried after ``base * 2**n`` seconds (capped at ``cap``, times a
random factor in ``[0.5, 1)`` so that many processes do not reconnect in lock step),
until Redis answers again. Each outage is logged once when it starts and once when it
ends, with its duration, and counted (``facepipe_redis_outages_total``, once Redis is
back, as every other metric lives in Redis).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import redis

log = logging.getLogger(__name__)

T = TypeVar("T")

# what a lost, restarting or unreachable Redis server raises (redis-py)
REDIS_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,  # a restarted server still loading its data
)


def backoff_delays(base: float, cap: float) -> Callable[[int], float]:
    """``attempt -> seconds``: ``min(cap, base * 2**attempt)`` times a jitter in [0.5, 1)."""

    def delay(attempt: int) -> float:
        return min(cap, base * 2 ** min(attempt, 30)) * (0.5 + random.random() / 2)

    return delay


@dataclass
class RedisHealth:
    """One process's view of its Redis server: up or down since when, outages seen.

    ``wait`` blocks until Redis answers a PING (or ``stop`` is set, or a timeout passes);
    ``call`` runs an operation, waiting out outages in between attempts (until ``stop`` or
    a deadline, when given).
    """

    conn: redis.Redis
    who: str = "process"  # for log lines and the outage counter's label
    base_s: float = 0.1
    cap_s: float = 5.0
    up: bool = True
    down_since: float | None = None
    outages: int = 0
    on_reconnect: list[Callable[[float], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _attempt: int = 0  # failed attempts in a row (``try_now``'s backoff)
    _next_try: float = 0.0

    def mark_down(self, exc: BaseException) -> None:
        with self._lock:
            if self.up:
                self.up = False
                self.down_since = time.monotonic()
                log.warning("%s: Redis unreachable (%s); reconnecting with backoff", self.who, exc)

    def down_s(self) -> float:
        """Seconds Redis has been unreachable so far (0.0 while it is up)."""
        since = self.down_since
        return 0.0 if since is None else time.monotonic() - since

    def mark_up(self) -> None:
        with self._lock:
            if self.up:
                return
            self.up = True
            took = time.monotonic() - (self.down_since or time.monotonic())
            self.down_since = None
            self.outages += 1
        log.warning("%s: Redis reachable again after %.1f s", self.who, took)
        for hook in self.on_reconnect:
            try:
                hook(took)
            except REDIS_DOWN as exc:  # gone again: the next wait sees it
                self.mark_down(exc)
            except Exception:  # a hook must not break the reconnect
                log.exception("%s: reconnect hook failed", self.who)

    def try_now(self, op: Callable[[], T]) -> tuple[bool, T | None]:
        """``(True, op())``, or ``(False, None)`` if Redis is down; never blocks on an
        outage: while down, ``op`` is only attempted once per backoff delay (for a live
        source, which must go on reading frames meanwhile)."""
        if not self.up and time.monotonic() < self._next_try:
            return False, None
        try:
            result = op()
        except REDIS_DOWN as exc:
            self.mark_down(exc)
            self._next_try = time.monotonic() + backoff_delays(self.base_s, self.cap_s)(
                self._attempt
            )
            self._attempt += 1
            return False, None
        self._attempt = 0
        if not self.up:
            self.mark_up()
        return True, result

    def ping(self) -> bool:
        """True if Redis answers now (updates up/down)."""
        try:
            self.conn.ping()
        except REDIS_DOWN as exc:
            self.mark_down(exc)
            return False
        self.mark_up()
        return True

    def wait(self, stop: threading.Event | None = None, timeout: float | None = None) -> bool:
        """Block until Redis answers (True), ``stop`` is set or ``timeout`` passed (False)."""
        delay = backoff_delays(self.base_s, self.cap_s)
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while not self.ping():
            pause = delay(attempt)
            if deadline is not None:
                pause = min(pause, deadline - time.monotonic())
                if pause <= 0:
                    return False
            if stop is not None:
                if stop.wait(pause):
                    return False
            else:
                time.sleep(pause)
            attempt += 1
        return True

    def call(
        self,
        op: Callable[[], T],
        stop: threading.Event | None = None,
        deadline: float | None = None,
    ) -> T:
        """``op()``, retried after each outage until it succeeds.

        Raises :class:`Stopped` if ``stop`` is set, or the ``deadline`` (a
        ``time.monotonic()`` value) passes, while Redis is down.
        """
        while True:
            try:
                result = op()
            except REDIS_DOWN as exc:
                self.mark_down(exc)
                timeout = None if deadline is None else deadline - time.monotonic()
                if (timeout is not None and timeout <= 0) or not self.wait(stop, timeout):
                    raise Stopped("stopped while Redis was unreachable") from exc
                continue
            if not self.up:
                self.mark_up()
            return result


class Stopped(RuntimeError):
    """A stop was requested while waiting for Redis."""
