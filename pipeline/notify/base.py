"""What every notifier backend shares: the notification, a bounded queue and its thread.

A backend's :meth:`Backend.offer` never blocks and never raises: it puts the
notification on the backend's bounded queue (``notify.queue_size``) or, when that is
full, drops it; one background thread per backend delivers what is queued
(:meth:`Backend.deliver`, which may block: a broker reconnecting, an HTTP timeout, retries).
Every notification ends with one outcome, counted in
``facepipe_notifications_total{backend, outcome}``:

* ``sent``: delivered (MQTT: acknowledged by the broker at QoS 1/2, written at QoS 0;
  webhook: a 2xx answer);
* ``failed``: given up (webhook: every attempt failed; MQTT: the broker refused it);
* ``unconfirmed``: MQTT only, published but not acknowledged within the timeout (the
  broker went away meanwhile; paho sends it again after reconnecting);
* ``dropped``: the queue was full (the backend is down or slower than the events);
* ``expired``: it waited longer than ``notify.max_delay_s`` for the backend (a
  "person at the door" message minutes late would mislead an automation).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

log = logging.getLogger(__name__)

Kind = Literal["new", "update", "end", "stream"]
KINDS: tuple[Kind, ...] = ("new", "update", "end", "stream")
OUTCOMES = ("sent", "failed", "unconfirmed", "dropped", "expired")

# counts one outcome: (backend name, outcome)
Counter = Callable[[str, str], None]


@dataclass
class Notification:
    """One thing to tell: an event's change (``new``/``update``/``end``) or a stream's.

    ``message`` is what the events topic and webhooks get (``{"type", "before",
    "after"}`` for events, ``{"type": "stream", "stream", "status", ...}`` for streams);
    ``stream`` names the camera (for per-stream topics); ``person_seen`` marks the
    notifications that also go to the per-stream person topic.
    """

    kind: Kind
    stream: str
    message: dict[str, Any]
    person_seen: bool = False  # the event got its identity or it changed (new/update)
    created: float = field(default_factory=time.monotonic)


class Backend:
    """A notifier backend: a bounded queue, a delivery thread, counted outcomes."""

    name: ClassVar[str] = ""

    def __init__(
        self, count: Counter | None = None, queue_size: int = 1000, max_delay_s: float = 60.0
    ) -> None:
        self._count = count
        self.max_delay_s = max_delay_s
        self._queue: queue.Queue[Notification | None] = queue.Queue(maxsize=queue_size)
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ----- what the sink calls ---------------------------------------------------
    def wants(self, note: Notification) -> bool:
        """Whether this backend sends ``note`` at all (a webhook's ``events`` filter)."""
        return True

    def offer(self, note: Notification) -> bool:
        """Queue ``note`` without blocking; False (and counted ``dropped``) when full."""
        if not self.wants(note):
            return False
        self.start()
        try:
            self._queue.put_nowait(note)
            return True
        except queue.Full:
            self.count("dropped")
            return False

    # ----- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self.connect()
            self._thread = threading.Thread(
                target=self._run, name=f"facepipe-notify-{self.name}", daemon=True
            )
            self._thread.start()

    def connect(self) -> None:
        """Start connecting (must not block); called before the first delivery."""

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what is queued for up to ``timeout`` seconds, then stop."""
        self.flush(timeout)
        self.stopping.set()
        try:
            self._queue.put_nowait(None)  # wakes the thread
        except queue.Full:
            pass
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self.disconnect()

    def disconnect(self) -> None:
        """Say goodbye to the other side (MQTT: availability offline)."""

    def flush(self, timeout: float) -> bool:
        """Wait until every queued notification is done; False on timeout."""
        deadline = time.monotonic() + timeout
        done = self._queue.all_tasks_done
        with done:
            while self._queue.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                done.wait(left)
        return True

    # ----- delivery ----------------------------------------------------------------
    def deliver(self, note: Notification) -> str:
        """Send ``note``; returns its outcome (``sent``, ``failed``, ...). May block."""
        raise NotImplementedError

    def count(self, outcome: str) -> None:
        if self._count is None:
            return
        try:
            self._count(self.name, outcome)
        except Exception as exc:  # metrics live in Redis, which may be down
            log.debug("notify: cannot count %s/%s: %s", self.name, outcome, exc)

    def expired(self, note: Notification) -> bool:
        return time.monotonic() - note.created > self.max_delay_s

    def _run(self) -> None:
        while not self.stopping.is_set():
            note = self._queue.get()
            try:
                if note is not None:
                    self.count(self._outcome(note))
            finally:
                self._queue.task_done()

    def _outcome(self, note: Notification) -> str:
        try:
            return "expired" if self.expired(note) else self.deliver(note)
        except Exception:  # a backend's bug must not end the thread
            log.exception("notify %s: delivery failed", self.name)
            return "failed"
