"""One stream's tracking, frame by frame, without Redis: what the track stage runs.

:class:`StreamTracker` holds a :class:`StreamState` (the tracker and where the stream
is) and does everything the track stage decides about a stream:

* :meth:`StreamTracker.step`: one frame, in sequence order. Assigns track ids; at a shot
  cut (``FrameRecord.cut``) ends every track first; on a frame detection skipped
  (``detected`` False) reports the predicted boxes of the tracks matched in the latest
  detection run; on the last frame of a finite source ends every track. Then chooses the
  faces to sample for recognition, by quality, up to ``sampling.max_samples`` per track:
  the first when the track is confirmed (so it gets a name quickly), then the best face
  of each window of ``sampling.every_n_frames`` frames by what the detector tells (size x
  frontal pose from its keypoints x confidence:
  :func:`pipeline.recognition.quality.detection_quality`). A window's best face waits in
  the state until the window closes or the track ends.
* :meth:`StreamTracker.observe`: the encodings the recognize stage computed for sampled
  faces (re-identification, ``tracker.model: kalman``): each is added to its track's
  appearance, and a young track that continues one lost or ended shortly before is
  merged into it. Faces below ``min_quality`` (``recognition.min_unknown_quality``)
  are not used: their encodings sit between people. Each sample's name is counted: a
  track given one name ``sampling.settle_after`` times is settled and not sampled again.

The state is plain JSON (:meth:`StreamState.to_dict`), so the track stage keeps it in
Redis between jobs (``pipeline/tracking/state.py``) and any worker continues any stream;
an evaluation runs the same class over a video in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.config import SamplingConfig, TrackerConfig
from pipeline.recognition.quality import detection_quality
from pipeline.record import Face, FrameRecord
from pipeline.tracking.iou import IoUTracker
from pipeline.tracking.kalman import KalmanTracker

Tracker = IoUTracker | KalmanTracker


def new_tracker(cfg: TrackerConfig) -> Tracker:
    """A fresh tracker of the configured model."""
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


@dataclass
class StreamState:
    """A stream's tracker and where the track stage is in the stream."""

    tracker: Tracker
    next_seq: int = 0  # the next frame the track stage will consume
    waiting_since: float | None = None  # since when it waits for a missing frame
    # per track: the best face of the current sampling window, not yet sent to recognition
    # ({"seq", "ts", "key", "width", "height", "live", "face"}; the face carries its quality)
    candidates: dict[int, dict[str, Any]] = field(default_factory=dict)
    # per live track: how many of its recognized samples were given each name
    names: dict[int, dict[str, int]] = field(default_factory=dict)
    # per live track: how many of its samples the recognize stage answered (named or not)
    answered: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracker": self.tracker.to_dict(),
            "next_seq": self.next_seq,
            "waiting_since": self.waiting_since,
            "candidates": self.candidates,
            "names": self.names,
            "answered": self.answered,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], cfg: TrackerConfig) -> StreamState:
        """Restore a state saved by :meth:`to_dict`; the tracker model is ``cfg.model``."""
        model = KalmanTracker if cfg.model == "kalman" else IoUTracker
        return cls(
            model.from_dict(data["tracker"]),
            data["next_seq"],
            data.get("waiting_since"),
            {int(k): v for k, v in data.get("candidates", {}).items()},
            {int(k): v for k, v in data.get("names", {}).items()},
            {int(k): v for k, v in data.get("answered", {}).items()},
        )


@dataclass
class Observed:
    """What :meth:`StreamTracker.observe` found: ``(merged id, surviving id)`` pairs."""

    merged: list[tuple[int, int]] = field(default_factory=list)  # merges made now
    # ids merged earlier that the faces still carried (the sink is told again: harmless
    # if it folded the track already, and it completes a merge whose message was lost)
    aliased: list[tuple[int, int]] = field(default_factory=list)

    def all(self) -> list[tuple[int, int]]:
        return self.merged + [a for a in self.aliased if a not in self.merged]


class StreamTracker:
    """The track stage's per-stream logic on an in-memory :class:`StreamState`."""

    def __init__(
        self,
        tracker: TrackerConfig,
        sampling: SamplingConfig,
        state: StreamState | None = None,
        min_quality: float = 0.0,
    ) -> None:
        self.tracker_config = tracker
        self.sampling = sampling
        self.state = state if state is not None else StreamState(new_tracker(tracker))
        self.min_quality = min_quality

    @property
    def tracker(self) -> Tracker:
        return self.state.tracker

    # ----- frames ---------------------------------------------------------------------
    def step(self, rec: FrameRecord) -> tuple[FrameRecord, list[FrameRecord]]:
        """Track frame ``rec`` (the next in sequence; labels it in place) and return it
        with the sample records (one per frame the chosen faces come from) to recognize.

        A dropped frame (``rec.dropped``) only moves the stream on.
        """
        if rec.seq < self.state.next_seq:
            raise ValueError(f"frame {rec.seq} comes after frame {self.state.next_seq - 1}")
        self._track(rec)
        samples = self._choose_samples(rec)
        self.state.next_seq = rec.seq + 1
        return rec, samples

    def _track(self, rec: FrameRecord) -> None:
        tracker = self.tracker
        cut_ended = tracker.end_all() if rec.cut else []  # a new shot: motion says nothing
        if rec.dropped is None and not rec.detected:  # detection skipped: predict
            # tracks matched in the latest detection run only: a lost track's face is
            # not reported where nobody saw it
            rec.faces = [
                Face(box=box, score=0.0, track_id=tid)
                for tid, box in tracker.predict(rec.seq).items()
                if tracker.get(tid).missed == 0  # type: ignore[union-attr]
            ]
        elif rec.dropped is None:
            confirmed, ended = tracker.update(rec.faces, rec.seq, rec.ts)
            if confirmed:
                rec.track_starts = {t.id: [t.first_ts, t.hits, t.first_seq] for t in confirmed}
            rec.ended_tracks = ended
        rec.ended_tracks = cut_ended + rec.ended_tracks
        if rec.last:
            rec.ended_tracks = rec.ended_tracks + tracker.end_all()

    def _choose_samples(self, rec: FrameRecord) -> list[FrameRecord]:
        """Faces of this frame (or the best of a window that closes now) to recognize."""
        cfg, tracker, state = self.sampling, self.tracker, self.state
        chosen: list[dict[str, Any]] = []
        if rec.dropped is None and rec.detected:  # samples only from detected faces
            for face in rec.faces:
                t = tracker.get(face.track_id) if face.track_id is not None else None
                if (
                    t is None
                    or t.samples >= cfg.max_samples
                    or min(face.box[2], face.box[3]) < cfg.min_face_px
                ):
                    continue
                if self.settled(t.id):  # its name is settled: no more samples
                    state.candidates.pop(t.id, None)
                    continue
                cand = _candidate(rec, face)
                if t.samples == 0:  # just confirmed: a name as soon as possible
                    chosen.append(cand)
                else:  # the best face of the window so far waits for the window's end
                    best = state.candidates.get(t.id)
                    if best is None or cand["face"]["quality"] > best["face"]["quality"]:
                        state.candidates[t.id] = cand
                if t.samples > 0 and rec.seq - t.last_sample_seq < cfg.every_n_frames:
                    continue
                limit = cfg.max_in_flight
                if t.samples > 0 and limit is not None and self.in_flight(t.id, t.samples) >= limit:
                    continue  # answers pending: the window's best face waits (and improves)
                if t.samples > 0:
                    chosen.append(state.candidates.pop(t.id))
                t.samples += 1
                t.last_sample_seq = rec.seq
        # a track that ended (or was merged away) sends the best face it was holding
        for tid in [tid for tid in state.candidates if tracker.get(tid) is None]:
            cand = state.candidates.pop(tid)
            if not self.settled(tid):
                chosen.append(cand)
        for votes in (state.names, state.answered):
            for tid in [tid for tid in votes if tracker.get(tid) is None]:
                del votes[tid]
        return _sample_records(rec, chosen)

    def in_flight(self, track_id: int, samples: int) -> int:
        """Samples of the track sent and not yet answered (0 when answers never come
        back: without the kalman tracker, or without ``sampling.max_in_flight``)."""
        if self.sampling.max_in_flight is None or not isinstance(self.tracker, KalmanTracker):
            return 0
        return samples - self.state.answered.get(track_id, 0)

    def settled(self, track_id: int) -> bool:
        """True once ``sampling.settle_after`` recognized samples of the track were given
        one name (a named track only: an unknown one may still be named by a better face)."""
        after = self.sampling.settle_after
        votes = self.state.names.get(track_id)
        return after is not None and bool(votes) and max(votes.values()) >= after

    # ----- encodings (re-identification) ------------------------------------------------
    def observe(self, faces: list[Face]) -> Observed:
        """Feed the encodings of recognized faces (``track_id``, ``encoding``,
        ``quality``) to the tracker; see :class:`Observed` for what it returns.

        Only the ``kalman`` model learns appearances; with ``iou`` nothing happens.
        """
        out = Observed()
        tracker = self.tracker
        if not isinstance(tracker, KalmanTracker):
            return out
        for face in faces:
            if face.track_id is None:
                continue
            tid = tracker.resolve(face.track_id)  # merged earlier?
            if tid != face.track_id and (face.track_id, tid) not in out.aliased:
                out.aliased.append((face.track_id, tid))
            if tracker.get(tid) is not None:
                self.state.answered[tid] = self.state.answered.get(tid, 0) + 1
                if face.name is not None:
                    votes = self.state.names.setdefault(tid, {})
                    votes[face.name] = votes.get(face.name, 0) + 1
            if face.encoding is None or (face.quality or 0.0) < self.min_quality:
                continue
            now = tracker.observe_encoding(tid, face.encoding)
            if now is not None and now != tid:  # merged now: its answers and names too
                out.merged.append((tid, now))
                self.state.answered[now] = self.state.answered.get(now, 0) + (
                    self.state.answered.pop(tid, 0)
                )
                into = self.state.names.setdefault(now, {})
                for name, n in self.state.names.pop(tid, {}).items():
                    into[name] = into.get(name, 0) + n
        return out


def _candidate(rec: FrameRecord, face: Face) -> dict[str, Any]:
    """A face to sample, with what the recognize stage needs of its frame (JSON)."""
    sampled = Face.from_dict(face.to_dict())
    # detection quality: picks the window's best face; recognize replaces it with the full one
    sampled.quality = round(detection_quality(face), 4)
    return {
        "seq": rec.seq, "ts": rec.ts, "key": rec.key, "width": rec.width,
        "height": rec.height, "live": rec.live, "face": sampled.to_dict(),
    }  # fmt: skip


def _sample_records(rec: FrameRecord, chosen: list[dict[str, Any]]) -> list[FrameRecord]:
    """One sample record per frame the chosen faces come from (the track stage sends a
    hold's samples to recognize as one job: ``workers.track.by_frame``)."""
    by_seq: dict[int, FrameRecord] = {}
    for c in chosen:
        sample = by_seq.get(c["seq"])
        if sample is None:
            sample = by_seq[c["seq"]] = FrameRecord(
                stream=rec.stream, session=rec.session, seq=c["seq"], ts=c["ts"],
                key=c["key"], width=c["width"], height=c["height"], live=c["live"],
            )  # fmt: skip
        sample.faces.append(Face.from_dict(c["face"]))
    return [by_seq[k] for k in sorted(by_seq)]
