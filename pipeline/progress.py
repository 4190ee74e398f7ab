"""Live status of running streams: frames, rate, queue depth, drops, people seen.

``facepipe run`` and ``facepipe capture`` show it while they work: on a terminal a table
redrawn in place (rich), otherwise one plain line per stream every ``interval_s``
seconds (for logs and service managers)::

    door: 1520 captured, 1498 processed (14.9/s), 3 dropped {'stale': 3}, queue 2,
    people: ada, unknown x2

(one line each).

Everything is read from Redis (the stream's counts, the queue depths) and the event store
(events of this run), so the status is the pipeline's, whichever machine runs the
workers. A read that fails (Redis restarting) skips that refresh.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from pipeline.bus import Bus, detection_rate
from pipeline.stages import STAGE_NAMES

log = logging.getLogger(__name__)


@dataclass
class StreamStatus:
    stream: str
    captured: int = 0
    processed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    fps: float = 0.0  # processed frames per second since the previous refresh
    queue: int = 0  # jobs waiting in every stage's queue (all streams)
    # name (or "unknown") -> events of this run; None: the store is not read here
    people: dict[str, int] | None = None
    # the share of the processed frames that went through detection (None: none yet)
    detected: float | None = None

    def line(self) -> str:
        drops = sum(self.dropped.values())
        rate = self.detected
        text = (
            f"{self.stream}: {self.captured} captured, {self.processed} processed "
            f"({self.fps:.1f}/s" + ("" if rate is None or rate >= 1 else
                                    f", {100 * rate:.0f} % detected") + f"), "
            f"{drops} dropped" + (f" {self.dropped}" if drops else "")
            + f", queue {self.queue}"
        )  # fmt: skip
        if self.people is not None:
            text += f", people: {people_text(self.people) or 'none yet'}"
        return text


def people_text(people: dict[str, int]) -> str:
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in sorted(people.items()))


class Progress:
    """Refresh the status of ``streams()`` (``(stream, session)`` pairs) when due.

    Call :meth:`update` often (it returns at once unless a refresh is due) and
    :meth:`close` at the end. ``tty`` None: a table when ``out`` is a terminal.
    """

    def __init__(
        self,
        bus: Bus,
        streams: Callable[[], Sequence[tuple[str, str]]],
        store_url: str | None = None,
        interval_s: float = 10.0,
        tty: bool | None = None,
        out: IO[str] | None = None,
    ) -> None:
        self.bus = bus
        self.streams = streams
        self.store_url = store_url
        self.out = out or sys.stderr
        self.tty = self.out.isatty() if tty is None else tty
        self.interval_s = 1.0 if self.tty else interval_s
        self.started = time.time()
        self._t_start = time.monotonic()
        self._next = time.monotonic() + (0.0 if self.tty else interval_s)
        self._last: dict[str, tuple[float, int]] = {}  # stream -> (time, processed)
        self._store: Any = None
        self._live: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ----- reading ------------------------------------------------------------------
    def snapshot(self) -> list[StreamStatus]:
        queue = sum(self.bus.depth(stage) for stage in STAGE_NAMES)
        people = self._people()
        now = time.monotonic()
        out = []
        for stream, session in self.streams():
            counts = self.bus.stream_counts(stream, session)
            processed = counts.get("processed", 0)
            t0, p0 = self._last.get(stream, (self._t_start, 0))  # first: since the start
            fps = (processed - p0) / (now - t0) if now > t0 else 0.0
            self._last[stream] = (now, processed)
            out.append(
                StreamStatus(
                    stream=stream,
                    captured=counts.get("captured", 0),
                    processed=processed,
                    dropped={
                        k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("dropped:")
                    },
                    fps=fps,
                    queue=queue,
                    detected=detection_rate(counts),
                    people=None if people is None else people.get(stream, {}),
                )
            )
        return out

    def _people(self) -> dict[str, dict[str, int]] | None:
        """Events of this run per stream: ``{stream: {name or "unknown": count}}``."""
        if not self.store_url:
            return None
        try:
            if self._store is None:
                from pipeline.store import EventStore

                self._store = EventStore(self.store_url)
            rows = self._store.events(since=self.started)
        except Exception as exc:  # the store is optional to a status line
            log.debug("progress: cannot read events: %s", exc)
            return None
        sessions = {session for _, session in self.streams()}
        out: dict[str, dict[str, int]] = {}
        for ev in rows:
            if ev.get("session") in sessions:
                name = ev.get("person") or "unknown"
                per = out.setdefault(ev["stream"], {})
                per[name] = per.get(name, 0) + 1
        return out

    # ----- showing ------------------------------------------------------------------
    def update(self, force: bool = False) -> list[StreamStatus] | None:
        """Refresh if due (or ``force``); returns the statuses shown, None if not due."""
        if not force and time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self.interval_s
        try:
            rows = self.snapshot()
        except Exception as exc:  # Redis restarting: skip this refresh
            log.debug("progress: %s", exc)
            return None
        if self.tty:
            self._render(rows)
        else:
            for row in rows:
                print(row.line(), file=self.out, flush=True)
        return rows

    def _render(self, rows: list[StreamStatus]) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.table import Table

        table = Table(title="facepipe", title_justify="left", expand=False)
        for col in ("stream", "captured", "processed", "frames/s", "dropped", "queue", "people"):
            table.add_column(col, justify="left" if col in ("stream", "people") else "right")
        for r in rows:
            people = people_text(r.people) if r.people is not None else ""
            table.add_row(
                r.stream, str(r.captured), str(r.processed), f"{r.fps:.1f}",
                str(sum(r.dropped.values())), str(r.queue), people or "-",
            )  # fmt: skip
        if self._live is None:
            console = Console(file=self.out, force_terminal=True)
            self._live = Live(table, console=console, auto_refresh=False, transient=False)
            self._live.start()
        self._live.update(table, refresh=True)

    def start(self) -> Progress:
        """Refresh from a daemon thread until :meth:`close`."""

        def loop() -> None:
            while not self._stop.wait(0.25):
                with self._lock:
                    self.update()

        self._thread = threading.Thread(target=loop, name="facepipe-progress", daemon=True)
        self._thread.start()
        return self

    def close(self, final: bool = True) -> None:
        """Stop refreshing; show the final state once more (``final``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if final:
                self.update(force=True)
            if self._live is not None:
                self._live.stop()
                self._live = None
