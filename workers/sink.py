"""Sink stage: stores tracked frames and per-track samples as person events.

Its jobs carry one of the sink messages of ``pipeline/record.py``:

* :class:`~pipeline.record.Observations`: a batch of tracked frames, in order, from the
  track stage. Each frame is counted as processed (or dropped, with the reason a stage
  gave) and its capture-to-event latency is recorded; a processed frame also as
  ``detected`` or ``undetected:REASON`` (``facepipe_frames_undetected_total``).
* :class:`~pipeline.record.Samples` (``identity``, ``attributes`` or both): the samples
  one hold of the track stage chose (one record per sampled frame); they are stored (a
  retried message stores none twice) and each touched track's event is re-fused from all
  its samples. The best identity sample (largest, sharpest face) becomes the event's
  snapshot, a JPEG under ``store.snapshots_dir``, with its context image beside it
  (``store.context_images``: the whole frame, scaled down, and its faces' boxes; replaced
  with the snapshot).
* :class:`~pipeline.record.Merge`: the track stage's tracker re-identified a new track as
  the continuation of an earlier one; the new track's event is folded into the earlier
  one's, which is re-fused. The store records the merged track as an alias of the
  survivor, so observations and samples of the merged id, sent before or after, land on
  the survivor's event.

With ``store.retention_days`` set, the sink also prunes old events (with their samples
and snapshots) and empty unknown-N clusters, at start and then at most once an hour.

It also keeps Redis bounded (:func:`prune_redis`, in a background thread every
:data:`REDIS_PRUNE_EVERY_S`, or ``redis.session_ttl_s`` if shorter; one sink at a time
when there are several): sessions whose keys expired leave the ``streams`` registry, and
the metric series of streams without a session for ``redis.stream_retention_s`` are
folded into ``stream="(retired)"``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.attributes.base import crop_face
from pipeline.bus import sample_holder
from pipeline.frames import decode_bgr, is_jpeg
from pipeline.identities import Identities
from pipeline.metrics import retire_idle_streams
from pipeline.names import check_stream
from pipeline.notify import for_sink as notifier_for_sink
from pipeline.record import FrameRecord, Merge, Observations, Samples, SinkMessage, track_uid
from pipeline.retry import REDIS_DOWN
from pipeline.runtime import Runtime
from pipeline.store import EventStore, GalleryCache, delete_snapshot_files
from workers.base import Stage, run_job

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0  # retention passes (store.retention_days) at most this often
REDIS_PRUNE_EVERY_S = 300.0  # Redis pruning passes (registry, idle streams' metrics)


@dataclass
class RedisPrune:
    """What one :func:`prune_redis` pass did."""

    sessions: list[str]  # stream/session entries removed from the registry
    retired_streams: list[str]  # streams whose metric series were folded into (retired)


def prune_redis(rt: Runtime, now: float | None = None) -> RedisPrune:
    """One pass of Redis pruning: finished sessions leave the ``streams`` registry (their
    own keys expired ``redis.session_ttl_s`` after their last write) and streams with no
    session for ``redis.stream_retention_s`` have their metric series folded into
    ``stream="(retired)"``. Safe to run in several sinks at once."""
    pruned = rt.bus.prune_sessions()
    after = rt.config.redis.stream_retention_s
    retired = (
        []
        if after is None
        else retire_idle_streams(rt.metrics, pruned.live_streams, after, now=now)
    )
    return RedisPrune(sessions=pruned.pruned, retired_streams=retired)


class SinkStage(Stage):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt)
        self.store = EventStore(rt.config.store_url)
        self.gallery = GalleryCache(self.store)
        self.identities = Identities.from_config(self.store, rt.config)
        self.snapshots = rt.config.snapshots_path
        self._next_prune = 0.0  # time.monotonic() of the next retention pass
        self.notifier = notifier_for_sink(rt, self.store)  # notify: section; off by default
        self._housekeeping: threading.Thread | None = None
        self._sessions: set[tuple[str, str]] = set()  # capture sessions recorded in the store

    def warmup(self) -> None:
        """Start the Redis pruning thread (the worker calls this once, before its loop)."""
        if self._housekeeping is None:
            self._housekeeping = threading.Thread(
                target=self._prune_redis_loop, name="facepipe-prune", daemon=True
            )
            self._housekeeping.start()

    def _prune_redis_loop(self) -> None:
        # as often as sessions can expire, at most every REDIS_PRUNE_EVERY_S
        period = float(min(REDIS_PRUNE_EVERY_S, self.rt.config.redis.session_ttl_s))
        bus = self.rt.bus  # thread-safe: each command takes a pooled connection
        while True:
            try:  # one sink per period does it (the others find the key taken)
                if bus.conn.set(bus.key("prune-lock"), 1, nx=True, px=int(period * 900)):
                    done = prune_redis(self.rt)
                    if done.sessions or done.retired_streams:
                        log.info(
                            "redis pruning: %d finished session(s) left the registry, "
                            "%d idle stream(s) retired from the metrics (%s)",
                            len(done.sessions), len(done.retired_streams),
                            ", ".join(done.retired_streams) or "-",
                        )  # fmt: skip
            except REDIS_DOWN:
                pass  # the worker loop waits for Redis; try again next period
            except Exception:
                log.exception("redis pruning pass failed")
            time.sleep(period)

    def process(self, message: SinkMessage) -> None:
        self.check_names(message)
        match message:
            case Observations(records=records):
                self.observations(records)
            case Samples(records=records) as msg:
                self.samples(records, msg.kinds)
            case Merge(stream=stream, session=session, from_id=from_id, into_id=into_id):
                self.merge(stream, session, from_id, into_id)
            case _:
                raise ValueError(f"the sink does not take {type(message).__name__}")
        self.notifier.after(message)  # what it changed, told once (never raises or blocks)
        self.maybe_prune()

    @staticmethod
    def check_names(message: SinkMessage) -> None:
        """Refuse (ValueError) a message whose stream or session name is not a valid one
        before anything is stored: names become paths under the snapshots directory."""
        match message:
            case Observations(records=records):
                pairs = {(r.stream, r.session) for r in records}
            case Samples(records=records):
                pairs = {(r.stream, r.session) for r in records}
            case Merge(stream=stream, session=session):
                pairs = {(stream, session)}
            case _:
                pairs = set()
        for stream, session in pairs:
            check_stream(stream)
            if session:  # records made outside a capture may have none
                check_stream(session)

    def maybe_prune(self) -> None:
        """Apply ``store.retention_days`` if the last pass is an hour old (or none ran)."""
        days = self.rt.config.store.retention_days
        if days is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        deleted = self.identities.prune(time.time() - days * 86400)
        files = delete_snapshot_files(deleted.snapshots, self.snapshots)
        if deleted.events or deleted.clusters:
            log.info(
                "retention (%g days): deleted %d event(s), %d sample(s), %d snapshot file(s)",
                days, deleted.events, deleted.samples, files,
            )  # fmt: skip

    def observations(self, records: list[FrameRecord]) -> None:
        """Count and store a batch of tracked frames, each frame once.

        The frames are accounted (by ``seq``) before their observations are stored: a
        batch retried after a crash skips the frames it counted, so a frame is never
        counted or observed twice (a crash between the two loses its observations, which
        the event's other frames usually cover).
        """
        bus, metrics = self.rt.bus, self.rt.metrics
        if not records:
            return
        stream, session = records[0].stream, records[0].session
        fields = {
            r.seq: "processed" if r.dropped is None else f"dropped:{r.dropped}" for r in records
        }
        # of the processed frames: detected, or tracked without detection (and why)
        how = {r.seq: detection_field(r) for r in records if r.dropped is None}
        new = bus.account_frames(stream, session, fields, how)  # first: before any store write
        self._session_seen(stream, session)
        fresh = [r for r in records if r.seq in new]
        touched = self.store.observe(r for r in fresh if r.dropped is None)
        now = time.time()
        for rec in fresh:
            labels = {"stream": rec.stream}
            if rec.dropped is not None:
                metrics.inc("facepipe_frames_dropped_total", {**labels, "reason": rec.dropped})
            else:
                metrics.inc("facepipe_frames_processed_total", labels)
                metrics.observe("facepipe_capture_to_event_seconds", labels, now - rec.ts)
                if not rec.detected:
                    reason = detection_field(rec).split(":", 1)[1]
                    metrics.inc("facepipe_frames_undetected_total", {**labels, "reason": reason})
        if len(fresh) < len(records):
            metrics.inc(
                "facepipe_frames_duplicate_total", {"stream": stream}, len(records) - len(fresh)
            )
        if touched:
            metrics.inc("facepipe_events_updated_total", {"stream": stream}, touched)
        # the web UI's live view (pipeline/web): the newest frame and its faces; the track
        # stage made its image's holder "latest" (a retried batch sets the same again)
        shown = [r for r in records if r.dropped is None and r.key]
        if shown:
            bus.set_latest(shown[-1], self.rt.config.redis.frame_ttl_s)

    def _session_seen(self, stream: str, session: str) -> None:
        """Record a capture session's kind and frame rate in the store, once per process
        (an event's frame numbers / a file's fps = its video position)."""
        if (stream, session) in self._sessions or not session:
            return
        info = self.rt.bus.stream_info(stream, session)
        if info is None:
            return  # made outside a capture (or pruned): nothing to record
        fps = info.get("fps")
        self.store.set_session(stream, session, bool(info.get("live")), float(fps) if fps else None)
        self._sessions.add((stream, session))

    def samples(self, records: list[FrameRecord], kinds: tuple[str, ...]) -> None:
        """Store the samples of ``kinds`` (identity, attributes or both) of one message's
        frames and re-fuse each touched event once.

        A retried message changes nothing it stored before (``EventStore.add_samples``
        skips the samples it has); its frames' images are let go once all is stored."""
        uids = self.store.add_samples(records, *kinds)  # one transaction for all
        for uid in uids:
            self._refuse(uid, cluster_if_unnamed="identity" in kinds)
        self.rt.metrics.inc(
            "facepipe_events_updated_total", {"stream": records[0].stream}, len(records)
        )
        if "identity" in kinds:
            for rec in records:
                self._snapshots(rec)
        # the samples' last stop: their frames' images may go (workers/track.py)
        release: dict[str, tuple[list[str], list[str]]] = {}
        for rec in records:
            if rec.key:
                release.setdefault(rec.key, ([], []))[1].append(sample_holder(rec))
        self.rt.bus.hold_frames(release)

    def merge(self, stream: str, session: str, from_id: int, into_id: int) -> None:
        res = self.store.merge_tracks(
            track_uid(stream, session, from_id), track_uid(stream, session, into_id)
        )
        self._refuse(res.into_uid, cluster_if_unnamed=True)
        self.identities.refresh_clusters(res.unknown_ids)
        self._remove_snapshot(res.orphan_snapshot)
        self._remove_snapshot(res.orphan_context)
        self.rt.metrics.inc("facepipe_events_updated_total", {"stream": stream})

    def _refuse(self, uid: str, cluster_if_unnamed: bool) -> None:
        """Re-fuse a track's event from all its samples; an unnamed one joins an unknown-N
        (when asked), and so does any track that lost its name to a nearer face."""
        cfg = self.rt.config
        values = self.store.refuse(
            uid,
            self.gallery.get(),
            threshold=cfg.recognition.rule,
            min_gender_confidence=cfg.attributes.min_gender_confidence,
            min_quality=cfg.recognition.min_name_quality,
        )
        if cluster_if_unnamed and values.get("person") is None:
            self.identities.assign_unknown(uid)
        for other in values.get("displaced", []):
            self.identities.assign_unknown(other)

    def _snapshots(self, rec: FrameRecord) -> None:
        image = None  # the frame, BGR (what the snapshot and context files are written from)
        data: bytes | None = None  # the frame as stored in Redis
        context: tuple[bytes, str] | None = None  # the frame as JPEG, its faces' boxes
        for face in rec.faces:
            if face.track_id is None or face.quality is None:
                continue
            uid = rec.track_uid(face.track_id)
            best = self.store.snapshot_quality(uid)
            if best is not None and best >= face.quality:
                continue
            if image is None:
                data = self.rt.frames.get_encoded(rec.key) if rec.key else None
                if not data:
                    return  # the frame left Redis
                image = decode_bgr(data)
            path = self.snapshot_path(rec, face.track_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), crop_face(image, face, 0.4))
            if not self.rt.config.store.context_images:
                self._remove_snapshot(self.store.set_snapshot(uid, str(path), face.quality))
                continue
            if context is None:  # the frame it was cut from, to match
                context = context_image(
                    image, rec, self.rt.config.store.context_max_width, encoded=data
                )
            cpath = self.context_path(rec, face.track_id)
            cpath.write_bytes(context[0])
            for old in self.store.set_snapshot_and_context(
                uid, str(path), face.quality, str(cpath), context[1]
            ):
                self._remove_snapshot(old)

    def snapshot_path(self, rec: FrameRecord, track_id: int) -> Path:
        """Where a track's snapshot goes: always inside the snapshots directory.

        The stream name was checked where the stream started; a message that reaches the
        queue some other way is checked again here, and the resolved path must stay under
        the snapshots directory (defence in depth: a refused job goes to the failed
        registry with the reason)."""
        return self._track_file(rec, f"{int(track_id)}.jpg")

    def context_path(self, rec: FrameRecord, track_id: int) -> Path:
        """Where a track's context image goes: beside its snapshot, checked the same way."""
        return self._track_file(rec, f"{int(track_id)}-context.jpg")

    def _track_file(self, rec: FrameRecord, filename: str) -> Path:
        self.check_names(Samples("identity", rec))
        root = self.snapshots.resolve()
        path = (root / rec.stream / rec.session / filename).resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"snapshot path {path} is outside {root}; refused")
        return path

    def _remove_snapshot(self, path: str | None) -> None:
        """Delete a snapshot file no event uses any more (only under the snapshots dir)."""
        delete_snapshot_files([path], self.snapshots)


def detection_field(rec: FrameRecord) -> str:
    """The stream count a processed frame adds to: ``detected``, or ``undetected:REASON``
    (``schedule``: detector.every_n_frames; ``load``: a live camera's detections in flight
    were at their bound)."""
    return "detected" if rec.detected else f"undetected:{rec.undetected or 'schedule'}"


def context_image(
    bgr: np.ndarray, rec: FrameRecord, max_width: int, encoded: bytes | None = None
) -> tuple[bytes, str]:
    """An event's context image: the whole frame (BGR) as JPEG, scaled down to
    ``max_width`` pixels wide, and its faces' boxes in those pixels as JSON
    ``[[x, y, w, h, track_id]]`` (drawn when it is shown, with the names the store holds
    then). ``encoded``: the frame as stored, a JPEG kept as it is when no scaling is
    needed (no second encoding, no second loss)."""
    h, w = bgr.shape[:2]
    scale = min(1.0, max_width / w) if w else 1.0
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    if scale == 1.0 and encoded is not None and is_jpeg(encoded):
        jpeg = encoded
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if not ok:
            raise ValueError("could not JPEG-encode the context image")
        jpeg = buf.tobytes()
    boxes = [
        [*(round(v * scale) for v in f.box), f.track_id]
        for f in rec.faces
        if f.track_id is not None
    ]
    return jpeg, json.dumps(boxes)


def handle(payload: dict[str, Any]) -> None:
    run_job(SinkStage, payload)
