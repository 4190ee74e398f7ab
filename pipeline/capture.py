"""The capture producer: frames from one source onto the detect queue.

Every frame read is counted as captured. Then it is either enqueued (encoded image in
Redis under a key with a TTL; the job carries a :class:`FrameRecord`) or counted as
dropped with a reason:

* ``stale``: a live source produced it while the pipeline was still busy with an earlier
  one (the reader keeps only the newest frame);
* ``backpressure``: a live source's frame was due for detection after
  ``capture.max_undetected`` frames in a row without one, and the camera's own detections
  in flight were at their bound (``capture.live_max_in_flight``): the machine cannot
  detect even that often.

**Live sources adapt the detection rate to the load** instead of dropping frames: a live
frame due for detection (``detector.every_n_frames``) goes to the detect queue only when
the camera has fewer than ``capture.live_max_in_flight`` detections in flight (sent, not
yet detected: a sorted set per stream session that the detect stage empties,
:meth:`Bus.detections_in_flight`) and the detect queue holds fewer than
``capture.max_queue`` jobs; otherwise it goes straight to the track stage as a frame
detection skipped (``FrameRecord.undetected = "load"``: the tracker predicts its faces),
processed like any other. So each camera's detection rate falls to what the machine can
do while every frame is still processed. Fairness: after ``capture.max_undetected``
frames in a row without detection, a camera's next frame is detected even when the queue
holds ``max_queue`` jobs (up to twice that; its own in-flight bound still holds; else
``backpressure``). A detection not back after ``tracker.gap_timeout_s`` no longer counts
as in flight (its job was lost; the track stage gives its frame up by then).
The sink counts each processed frame as ``detected`` or ``undetected:REASON``
(``facepipe_frames_undetected_total``), so a run reports each camera's detection rate.

Frames of a file go to detection in batches (a :class:`~pipeline.record.FrameBatch` per
detect job, the frames' images stored in the same transaction): while the detect queue
has jobs waiting, consecutive frames wait for one job, up to ``capture.batch_frames`` of
them (and ``capture.batch_wait_s`` when paced at the file's frame rate); the queue holds
about ``capture.max_queue`` frames (``max_queue / batch_frames`` jobs). A live source
sends a job per frame. A file source never drops: it waits until the detect queue has
room. Frames of a file
that its decoder could not read (corrupt data) were never captured; they are counted as
``unreadable`` in the stream's counts, and the result says the run was cut short.

With ``detector.every_n_frames`` > 1, only every n-th frame goes to the detect queue
(``undetected = "schedule"`` on the others; for a live source, n frames after the last
detected one); the others skip detection (no image is stored) and go straight to the
stream's buffer for the track stage, which fills in the tracker's predicted faces. They
are counted like any other frame.

Redis outages (``pipeline/retry.py``): a file source waits them out (backoff with
jitter) and loses nothing; a live source goes on reading and counts the frames it could
not enqueue meanwhile as dropped (``redis_down``); counts that could not be written wait
in the process and are written once Redis is back. If Redis comes back *empty* (restarted
without persistence), the session's queued frames and counts are gone: the capture says
so, counts the frames of that session as ``dropped:redis_lost`` in its result, and goes
on in a new session. :func:`wait_accounted` waits until a stream's every frame is
accounted for, but never forever.

A live source that is down (a camera off, unreachable, or down already at start) is
reconnected by the source itself with backoff, forever (``pipeline/sources.py``); the
capture keeps running and publishes the source's health every second:
``facepipe_source_up{stream}`` (1/0, a gauge that vanishes when the capture ends or dies),
``facepipe_source_reconnects_total`` and ``facepipe_source_down_seconds_total``; and
each change of up/down goes to the configured notifications (``pipeline.notify``: MQTT
``PREFIX/STREAM/available``, webhooks' ``stream`` messages).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rq.intermediate_queue import IntermediateQueue
from rq.registry import StartedJobRegistry

from pipeline.bus import Bus, counts_done, read_entry_counts
from pipeline.names import check_stream
from pipeline.record import FrameBatch, FrameRecord
from pipeline.retry import REDIS_DOWN, RedisHealth, Stopped
from pipeline.runtime import Runtime
from pipeline.shots import WIDTH as SHOT_WIDTH
from pipeline.shots import CutDetector
from pipeline.sources import Source, SourceStatus
from pipeline.stages import STAGE_NAMES
from pipeline.stages import stage as stage_spec

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class CaptureResult:
    stream: str
    session: str
    captured: int = 0
    enqueued: int = 0
    dropped: int = 0
    seconds: float = 0.0
    unreadable: int = 0  # frames of a file that could not be decoded (corrupt data)
    # sessions whose state Redis lost (restart without persistence): (session, frames)
    lost_sessions: list[tuple[str, int]] = field(default_factory=list)

    @property
    def cut_short(self) -> bool:
        return self.unreadable > 0

    @property
    def lost(self) -> int:
        return sum(n for _, n in self.lost_sessions)


def new_session() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)


class Capture:
    def __init__(
        self, rt: Runtime, source: Source, stream: str, session: str | None = None
    ) -> None:
        check_stream(stream)  # becomes a snapshot directory and part of Redis keys
        self.rt = rt
        self.source = source
        self.stream = stream
        self.session = session or new_session()
        self.stop_event = threading.Event()
        self.health = RedisHealth(
            rt.bus.conn, who=f"capture {stream}", cap_s=rt.config.redis.reconnect_max_s
        )
        self.health.on_reconnect.append(self._reconnected)
        self._unsent: Counter[str] = Counter()  # stream counts not yet written to Redis
        # every count of this session, as this process made it (written to Redis or not):
        # what a summary can still say when Redis is gone (see counts())
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._unsent_metrics: Counter[tuple[str, str | None]] = Counter()
        self._session_captured = 0
        self._last_flush = 0.0  # time.monotonic() of the last write of the counts
        self._check_state = False
        self._last_check = time.monotonic()

    def stop(self) -> None:
        self.stop_event.set()
        self.source.stop()

    def counts(self) -> dict[str, int]:
        """This session's counts as the capture made them (``captured``, its
        ``dropped:REASON``, ``unreadable``), whether Redis has them yet or not; the
        workers' counts (``processed``, ...) are only in Redis."""
        with self._counts_lock:
            return dict(self._counts)

    # the frame counts are written at most this often (and when the capture ends): a round
    # trip or two per frame saved; the sink's counts never run ahead for long
    FLUSH_EVERY_S = 0.1
    # a file source waits this long between looks at a full detect queue
    FULL_QUEUE_POLL_S = 0.02

    # ----- Redis, through the outage helper ----------------------------------------
    def _redis(self, op: Callable[[], T]) -> tuple[bool, T | None]:
        """``(True, op())``; while Redis is down a file source waits (``(False, None)``
        only if stopped meanwhile), a live source gets ``(False, None)`` at once."""
        if self.source.live:
            return self.health.try_now(op)
        try:
            return True, self.health.call(op, self.stop_event)
        except Stopped:
            return False, None

    def _reconnected(self, took: float) -> None:
        self._check_state = True
        labels = {"process": "capture"}
        self.rt.metrics.inc("facepipe_redis_outages_total", labels)
        self.rt.metrics.inc("facepipe_redis_outage_seconds_total", labels, took)

    def _count(self, field: str, n: int = 1) -> None:
        self._unsent[field] += n
        with self._counts_lock:
            self._counts[field] += n
        if field == "captured":
            self._unsent_metrics[("facepipe_frames_captured_total", None)] += n
        elif field.startswith("dropped:"):
            reason = field.split(":", 1)[1]
            self._unsent_metrics[("facepipe_frames_dropped_total", reason)] += n

    def _flush(self, force: bool = False) -> None:
        """Write the counts kept (while Redis was down, or since the last write: at most
        every FLUSH_EVERY_S unless ``force``), each field once."""
        now = time.monotonic()
        if not force and now - self._last_flush < self.FLUSH_EVERY_S:
            return
        self._last_flush = now
        bus, metrics = self.rt.bus, self.rt.metrics
        for f, n in list(self._unsent.items()):
            ok, _ = self._redis(lambda f=f, n=n: bus.count_frame(self.stream, self.session, f, n))
            if not ok:
                return
            del self._unsent[f]
        for (name, reason), n in list(self._unsent_metrics.items()):
            labels = {"stream": self.stream} | ({"reason": reason} if reason else {})
            ok, _ = self._redis(lambda name=name, labels=labels, n=n: metrics.inc(name, labels, n))
            if not ok:
                return
            del self._unsent_metrics[(name, reason)]

    def _drop(self, result: CaptureResult, reason: str, n: int = 1) -> None:
        result.dropped += n
        self._count(f"dropped:{reason}", n)

    def _captured(self, result: CaptureResult, n: int) -> None:
        result.captured += n
        self._session_captured += n
        self._count("captured", n)

    def _register(self) -> None:
        fps = getattr(self.source, "fps", 0.0)  # a file's frame rate: its video position
        info = {"source": self.source.spec, "live": self.source.live, "fps": round(fps, 3) or None}
        self._redis(lambda: self.rt.bus.register_stream(self.stream, self.session, info))

    def _state_lost(self) -> bool:
        """True if Redis lost this session's state (checked after an outage, and every
        second, as redis-py hides a quick restart)."""
        if not (self._check_state or time.monotonic() - self._last_check > 1.0):
            return False
        ok, exists = self._redis(lambda: self.rt.bus.stream_exists(self.stream, self.session))
        if not ok:
            return False
        self._check_state, self._last_check = False, time.monotonic()
        return not exists

    def _new_session(self, result: CaptureResult) -> None:
        lost = self._session_captured
        result.lost_sessions.append((self.session, lost))
        old, self.session = self.session, new_session()
        log.warning(
            "%s: Redis lost session %s (restarted without persistence?): its %d captured "
            "frames are unaccounted (dropped:redis_lost); going on as session %s",
            self.stream, old, lost, self.session,
        )  # fmt: skip
        self._unsent.clear()
        with self._counts_lock:
            self._counts.clear()
        self._session_captured = 0
        result.session = self.session
        self._register()

    # ----- a live source's health, as metrics ---------------------------------------
    SOURCE_PUBLISH_S = 1.0  # how often the source's state is written

    def _watch_source(self, done: threading.Event) -> None:
        """Write the live source's up/down state and outage counters every second until
        ``done``, then remove the gauge (no capture, no series). Runs in a thread: while
        the camera is down the capture loop itself waits for a frame."""
        from pipeline.notify import NullNotifier, for_capture

        metrics, labels = self.rt.metrics, {"stream": self.stream}
        ttl = 10 * self.SOURCE_PUBLISH_S  # a capture that died stops showing after this
        reconnects, down_s = 0, 0.0  # what the counters hold already
        told: bool | None = None  # what the notifications said last
        try:
            notifier = for_capture(self.rt, self.stream)
        except Exception:  # notifications must never stop a capture
            log.exception("%s: notifications of the source's state are off", self.stream)
            notifier = NullNotifier()

        def tell(st: SourceStatus) -> None:
            nonlocal told
            if st.up != told:
                try:
                    notifier.stream_status(self.stream, st.up, st.reason)
                except Exception:
                    log.exception("%s: cannot notify the source's state", self.stream)
                told = st.up

        def publish(final: bool) -> None:
            nonlocal reconnects, down_s
            st = self.source.status()
            if not final:
                tell(st)
            if final:
                metrics.clear_gauge("facepipe_source_up", labels)
            else:
                metrics.set_gauge("facepipe_source_up", labels, 1.0 if st.up else 0.0, ttl)
            if st.reconnects > reconnects:
                metrics.inc("facepipe_source_reconnects_total", labels, st.reconnects - reconnects)
                reconnects = st.reconnects
            if st.down_s > down_s:
                metrics.inc("facepipe_source_down_seconds_total", labels, st.down_s - down_s)
                down_s = st.down_s

        final = False
        while True:
            try:
                publish(final)
            except REDIS_DOWN:
                pass  # Redis is down: the capture loop logs that; written once it is back
            except Exception:  # metrics must never stop a capture
                log.exception("%s: cannot publish the source's state", self.stream)
            if final:
                try:
                    notifier.close()  # MQTT: the stream goes offline
                except Exception:
                    log.exception("%s: closing the notifier failed", self.stream)
                return
            final = done.wait(self.SOURCE_PUBLISH_S)

    # ----- the capture loop --------------------------------------------------------
    def run(self) -> CaptureResult:
        bus, cfg = self.rt.bus, self.rt.config.capture
        live = self.source.live
        self._register()
        watch_done = threading.Event()
        watcher = None
        if live:
            watcher = threading.Thread(
                target=self._watch_source, args=(watch_done,), name="source-watch", daemon=True
            )
            watcher.start()
        result = CaptureResult(self.stream, self.session)
        t0 = time.monotonic()
        seq = -1

        every_n = self.rt.config.detector.every_n_frames
        # live sources: a job per frame. Batched, one live 30 frames/s camera on a busy
        # machine dropped 19 % of its frames instead of 6 % (docs/benchmarks.md): the
        # queue bound counts a waiting job as a full batch, but live batches are small
        batch_max = 1 if live else cfg.batch_frames
        # the detect queue holds about max_queue frames: fewer jobs when they are batches
        jobs_max = max(1, -(-cfg.max_queue // batch_max))
        cuts = CutDetector(cfg.shot_cut_threshold) if cfg.shot_cut_threshold else None
        cut_pending = False  # a cut on a frame that was then dropped marks the next one
        # frames captured and not yet sent, with their encoded image (detected frames) and
        # when they were read; the last one is held back until the next is read, so that
        # the last frame of a file can be marked as such
        held: list[tuple[FrameRecord, bytes | None, float]] = []
        paced = live or cfg.realtime
        seen_depth: list[int] = []  # the detect queue's depth, read once per frame
        # the newest frame sent (or held) for detection; a frame is due for detection
        # every_n frames after it (a live frame detection skipped for load: the next one)
        last_detected = -every_n
        max_run = max(cfg.max_undetected, every_n - 1)  # frames in a row without detection
        # a detection not back after this long no longer counts as in flight: the track
        # stage gives its frame up as lost then (a job that failed for good)
        lost_after = max(self.rt.config.tracker.gap_timeout_s, cfg.max_frame_age_s)

        def depth() -> int:
            if not seen_depth:
                ok, n = self._redis(lambda: bus.depth("detect"))
                seen_depth.append(n if ok and n is not None else 0)
            return seen_depth[0]

        def room() -> tuple[int, int] | None:
            """(detect queue depth, this camera's detections in flight), the frames held
            for detection and not yet sent included: one round trip; None while Redis is
            down (nothing can be sent)."""
            since = time.time() - lost_after  # no longer in flight: its job was lost
            ok, got = self._redis(lambda: bus.detect_room(self.stream, self.session, since))
            if not ok or got is None:
                return None
            jobs, mine = got
            seen_depth[:] = [jobs]
            waiting = sum(r.detected for r, _, _ in held)
            return jobs + waiting, mine + waiting

        def admit() -> tuple[bool, str | None]:
            """Whether the next frame goes to detection, or why not (``undetected``); a
            ``backpressure`` or ``redis_down`` reason: drop it."""
            gap = seq + 1 - last_detected  # frames since the last one detected, this one too
            if gap < every_n:
                return False, "schedule"
            if not live:
                return True, None
            got = room()
            if got is None:  # Redis down: it could not be sent (not the machine's load)
                return False, "redis_down"
            jobs, mine = got
            if mine < cfg.live_max_in_flight and jobs < jobs_max:
                return True, None
            if gap - 1 < max_run:
                return False, "load"  # the tracker carries the faces: processed, not lost
            if mine < cfg.live_max_in_flight and jobs < 2 * jobs_max:
                return True, None  # due (fairness): the shared queue's bound yields, once
            return False, "backpressure"

        def send(items: list[tuple[FrameRecord, bytes | None, float]]) -> bool:
            """The detected frames as one detect job with their images, the others into
            the track stage's buffer (it predicts their faces): one transaction."""
            if items[0][0].session != self.session:
                return False  # its session was lost with Redis' data
            det = [(r, img) for r, img, _ in items if r.detected]
            rest = [r for r, _, _ in items if not r.detected]

            def op() -> None:
                pipe = bus.pipeline()
                if det:
                    self.rt.frames.put_many([(r.key, img) for r, img in det], pipeline=pipe)
                    if live:  # in flight until the detect stage wrote its result
                        bus.detections_sent(
                            [r for r, _ in det], time.time() - lost_after, pipeline=pipe
                        )
                    bus.send("detect", FrameBatch([r for r, _ in det]), pipeline=pipe)
                if rest and live:
                    # a live camera's frames that skip detection mostly follow one still
                    # in detection: its result pokes the track stage, not each of them
                    bus.buffer_put_behind(rest, pipeline=pipe)
                    if pipe.execute()[-1] == 0:
                        try:
                            bus.poke_track(self.stream, self.session)
                        except REDIS_DOWN:  # the frames went out; the next one pokes
                            log.debug("%s: track stage not poked (Redis down)", self.stream)
                    return
                if rest:
                    bus.buffer_put_many(rest, pipeline=pipe)
                pipe.execute()

            ok, _ = self._redis(op)
            if ok:
                result.enqueued += len(items)
            else:
                self._drop(result, "redis_down", len(items))
            return ok

        def flush(final: bool = False) -> None:
            """Send the held frames but the last (all of them if ``final``) when the rules
            say so. A file's frames for detection wait, up to ``capture.batch_frames`` of
            them (and ``capture.batch_wait_s`` when paced), while the detect queue has jobs
            waiting; a full batch waits for room in the queue. A live source's go at once
            (:func:`admit` decided when each was read whether the detect stage has room)."""
            nonlocal held, seq, last_detected
            ready = held if final else held[:-1]
            if not ready:
                return
            first = next((t for r, _, t in ready if r.detected), None)
            if first is not None and not final and not live:
                full = sum(r.detected for r, _, _ in ready) >= batch_max
                # a file read as fast as it decodes fills a batch at once; its latency
                # matters only paced at its frame rate (capture.realtime)
                aged = paced and time.monotonic() - first >= cfg.batch_wait_s
                if depth() > 0 and not (full or aged):
                    return  # the detect stage is busy: more frames for this job
                if depth() >= jobs_max:
                    while depth() >= jobs_max:
                        # a full queue holds max_queue frames of work: no hurry to refill it
                        if self.stop_event.wait(self.FULL_QUEUE_POLL_S):
                            break
                        seen_depth.clear()
            held = held[len(ready) :]
            if not send(ready):  # (live) dropped: the later frames take their seqs, no hole
                for r, _, _ in held:
                    r.seq -= len(ready)
                seq -= len(ready)
                last_detected = -every_n  # (its frame may be gone) the next one is due

        try:
            for frame in self.source:
                seen_depth.clear()
                if self._state_lost():
                    self._new_session(result)
                    seq, held, last_detected = -1, [], -every_n
                if frame.skipped:
                    self._captured(result, frame.skipped)
                    self._drop(result, "stale", frame.skipped)
                self._captured(result, 1)
                if cuts is not None and cuts.update(frame.preview(SHOT_WIDTH)):
                    cut_pending = True
                detect, undetected = admit()
                if undetected in ("backpressure", "redis_down"):
                    self._drop(result, undetected)
                    self._flush()
                    continue
                # an MJPEG camera's JPEG goes to Redis as it came (when it needs no resize)
                as_sent = frame.jpeg is not None and not self.rt.frames.needs_resize(frame.size[0])
                bgr = None if as_sent else self.rt.frames.prepare(frame.bgr)
                width, height = frame.size if bgr is None else (bgr.shape[1], bgr.shape[0])
                seq += 1
                if detect:
                    last_detected = seq
                rec = FrameRecord(
                    stream=self.stream,
                    session=self.session,
                    seq=seq,
                    ts=frame.ts,
                    width=int(width),
                    height=int(height),
                    live=live,
                    detected=detect,
                    undetected=undetected,
                    cut=cut_pending,
                )
                cut_pending = False
                image = None
                if detect:  # frames detection skips are never needed as images
                    rec.key = bus.frame_key(rec)
                    image = frame.jpeg if bgr is None else self.rt.frames.encode(bgr)
                held.append((rec, image, time.monotonic()))
                flush()
                self._flush()
                if self.stop_event.is_set():
                    break
        finally:
            if self._state_lost():
                self._new_session(result)
                seq, held, last_detected = -1, [], -every_n
            if held:
                held[-1][0].last = True
                flush(final=True)  # the end marks the last frame that went out
            result.unreadable = self.source.unreadable
            if result.unreadable:
                self._count("unreadable", result.unreadable)
            self._flush(force=True)
            self._redis(lambda: bus.set_end(self.stream, self.session, seq))
            self.source.close()
            if watcher is not None:
                watch_done.set()
                watcher.join(timeout=5)
            result.seconds = time.monotonic() - t0
        log.info(
            "%s: captured %d, enqueued %d, dropped %d in %.1f s",
            self.stream, result.captured, result.enqueued, result.dropped, result.seconds,
        )  # fmt: skip
        if result.cut_short:
            log.warning(
                "%s: cut short: %d frame(s) of %s unreadable (corrupt data)",
                self.stream, result.unreadable, self.source.spec,
            )  # fmt: skip
        return result


@dataclass
class WaitResult:
    done: bool
    counts: dict[str, int]
    reason: str = ""  # why it stopped waiting though not done
    # the last counts read, per stream ("STREAM/SESSION"); empty if none could be read
    by_stream: dict[str, dict[str, int]] = field(default_factory=dict)
    redis_down: bool = False  # stopped (stop, deadline) while Redis was unreachable

    @property
    def unaccounted(self) -> int:
        c = self.counts
        dropped = sum(v for k, v in c.items() if k.startswith("dropped:"))
        return max(0, c.get("captured", 0) - c.get("processed", 0) - dropped)


def pipeline_busy(bus: Bus, queued: bool = True) -> bool:
    """True while any stage has a job running (or, with ``queued``, waiting)."""
    waiting, running = pipeline_activity(bus)
    return running or (queued and waiting)


def pipeline_activity(bus: Bus, pipe: Any = None) -> tuple[bool, bool]:
    """Whether any stage has jobs waiting, and whether any has a job running, in one round
    trip (with ``pipe``, a non-transactional pipeline: its results are the last of its
    ``execute()``; use :func:`read_activity` on them). A started job counts until its
    heartbeat's expiry (as rq counts it after its cleanup, without the cleanup's writes:
    the workers' watchdog requeues the jobs of dead workers). A job a worker has taken
    from the queue (into rq's intermediate queue) but not started yet counts as waiting:
    in between it is in neither the queue nor the started registry, and a run that
    stopped its workers then would lose what that job sends on (the last samples)."""
    own = pipe is None
    if own:
        pipe = bus.conn.pipeline(transaction=False)
    now = time.time()
    for stage in STAGE_NAMES:
        if stage_spec(stage).transport == "stream":  # [entries, running], two placeholders
            bus.entry_counts(stage, pipe)
            pipe.exists(bus.entries_key(stage))
            pipe.exists(bus.entries_key(stage))
            continue
        q = bus.queue(stage)
        pipe.llen(q.key)
        pipe.llen(IntermediateQueue(q.key, bus.conn).key)
        pipe.zcount(StartedJobRegistry(queue=q).key, now, "+inf")
    return read_activity(pipe.execute()) if own else (False, False)


def read_activity(results: list[Any]) -> tuple[bool, bool]:
    """``(waiting, running)`` from the results of :func:`pipeline_activity`'s commands
    (the last ``3 * len(STAGE_NAMES)`` of ``results``)."""
    tail = results[-3 * len(STAGE_NAMES) :]
    waiting = running = False
    for i, stage in enumerate(STAGE_NAMES):
        first, second, third = tail[3 * i : 3 * i + 3]
        if stage_spec(stage).transport == "stream":
            queued, taken = read_entry_counts(first)
            waiting, running = waiting or bool(queued), running or bool(taken)
        else:
            waiting = waiting or bool(first) or bool(second)
            running = running or bool(third)
    return waiting, running


def wait_accounted(
    rt: Runtime,
    streams: list[tuple[str, str]],
    stop: threading.Event | None = None,
    check: Callable[[], Any] | None = None,
    health: RedisHealth | None = None,
    settle_s: float | None = None,
    deadline: float | None = None,
) -> WaitResult:
    """Wait until every frame of the finite ``streams`` is accounted for and no job is
    left, waiting out Redis outages; never forever.

    It stops (``reason`` "stopped") when ``stop`` is set or ``deadline`` (a
    ``time.monotonic()`` value) passes, also in the middle of a Redis outage
    (``redis_down`` then: the counts are the last ones read, if any).

    It gives up (``done`` False, with the reason) when a stream's state vanished (Redis
    lost its data), or when nothing moved for ``tracker.gap_timeout_s`` + 3 ×
    ``workers.job_recovery_s`` while no job was queued or running: a lost job that was
    not recovered. The track stage is poked every 2 s so that it skips frames whose
    detect job was lost. ``check`` runs each round (e.g. to notice dead workers).

    Once every frame of ``streams`` is accounted for, it also waits until no job is left
    (the last identity/attribute samples of their tracks); with ``settle_s`` at most that
    long (other streams' jobs may keep a shared pipeline busy for ever).
    """
    bus = rt.bus
    health = health or RedisHealth(bus.conn, who="wait", cap_s=rt.config.redis.reconnect_max_s)
    stall_s = rt.config.tracker.gap_timeout_s + 3 * rt.config.workers.job_recovery_s
    last: dict[str, dict[str, int]] | None = None
    last_change, last_poke = time.monotonic(), 0.0
    done_since: float | None = None  # every frame accounted for since, the pipeline busy

    def snapshot() -> tuple[dict[str, dict[str, int]], bool, bool, list[str]]:
        """Every stream's counts, which vanished, and the stages' activity: one round trip."""
        pipe = bus.conn.pipeline(transaction=False)
        for s, sess in streams:
            pipe.hgetall(bus.key("stream", bus.stream_id(s, sess)))
        pipeline_activity(bus, pipe)
        results = pipe.execute()
        counts, vanished = {}, []
        for (s, sess), raw in zip(streams, results, strict=False):
            sid = f"{s}/{sess}"
            if b"registered" not in raw:  # counts alone may be re-created by a late worker
                vanished.append(sid)
            counts[sid] = {k.decode(): int(v) for k, v in raw.items() if k != b"registered"}
        waiting, running = read_activity(results)
        return counts, waiting or running, running, vanished

    def total(counts: dict[str, dict[str, int]]) -> dict[str, int]:
        out: Counter[str] = Counter()
        for c in counts.values():
            out.update({k: v for k, v in c.items() if k != "end_seq"})
        return dict(out)

    def stopped(redis_down: bool = False) -> WaitResult:
        seen = last or {}
        return WaitResult(False, total(seen), "stopped", dict(seen), redis_down)

    while True:
        if check is not None:
            check()
        try:
            counts, busy, running, vanished = health.call(snapshot, stop, deadline)
        except Stopped:
            return stopped(redis_down=True)
        if vanished:
            return WaitResult(
                False,
                total(counts),
                f"Redis lost the state of {', '.join(vanished)} (restarted without "
                "persistence?): its queued frames and counts are gone",
                counts,
            )
        now = time.monotonic()
        if all(counts_done(c) for c in counts.values()):
            done_since = now if done_since is None else done_since
            if not busy or (settle_s is not None and now - done_since >= settle_s):
                return WaitResult(True, total(counts), by_stream=counts)
        else:
            done_since = None
        if counts != last or running:
            last, last_change = counts, now
        elif now - last_change > stall_s:
            return WaitResult(
                False,
                total(counts),
                f"no progress for {stall_s:.0f} s and no job running: frames of a lost job "
                "(see the failed registry) or no worker for a stage",
                counts,
            )
        if now - last_poke > 2.0:
            try:
                for s, sess in streams:
                    if not counts_done(counts[f"{s}/{sess}"]):
                        poke = lambda s=s, sess=sess: bus.poke_track(s, sess)  # noqa: E731
                        health.call(poke, stop, deadline)
            except Stopped:
                return stopped(redis_down=True)
            last_poke = now
        pause = 0.05 if deadline is None else min(0.05, deadline - time.monotonic())
        if pause <= 0:
            return stopped()
        if stop is not None:
            if stop.wait(pause):
                return stopped()
        else:
            time.sleep(pause)
