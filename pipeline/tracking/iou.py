"""A greedy IoU tracker with JSON-serialisable state.

Each frame's faces are matched to live tracks by IoU (highest first, at least
``iou_threshold``); unmatched faces start new tracks; a track not matched for more than
``max_missed`` frames ends. The state is a plain dict so the track stage can keep it in
Redis and any worker can continue a stream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.boxes import iou_matrix_xywh
from pipeline.boxes import iou_xywh as iou  # noqa: F401  (re-exported by pipeline.tracking)
from pipeline.record import Box, Face


def confirm(faces: list[Face], assign: dict[int, Track], min_hits: int) -> list[Track]:
    """Label each face with its track's id (None while the track is tentative) and
    confirm the tracks that reached ``min_hits``; returns those confirmed now.
    ``assign`` maps a face's index to its track."""
    confirmed = []
    for fi, f in enumerate(faces):
        t = assign[fi]
        if not t.confirmed and t.hits >= min_hits:
            t.confirmed = True
            confirmed.append(t)
        f.track_id = t.id if t.confirmed else None
    return confirmed


@dataclass
class Track:
    id: int
    box: Box
    first_seq: int
    last_seq: int
    first_ts: float = 0.0
    hits: int = 1
    confirmed: bool = False
    missed: int = 0
    samples: int = 0
    last_sample_seq: int = -(10**9)


@dataclass
class IoUTracker:
    iou_threshold: float = 0.3
    max_missed: int = 15
    min_hits: int = 1
    next_id: int = 1
    tracks: list[Track] = field(default_factory=list)

    def update(self, faces: list[Face], seq: int, ts: float = 0.0) -> tuple[list[Track], list[int]]:
        """Track one frame's faces; returns (tracks confirmed now, ids of ended tracks).

        A track is *tentative* until it has been matched in ``min_hits`` frames: its faces
        keep ``track_id = None`` (they are not reported as a person yet, which filters
        one-frame false detections). On the frame that confirms it, the face gets its
        ``track_id`` and the track is returned, with ``first_ts`` and ``hits`` covering
        its tentative frames too. Ended tentative tracks are dropped silently.
        """
        overlap = iou_matrix_xywh([t.box for t in self.tracks], [f.box for f in faces])
        pairs = sorted(
            ((float(overlap[ti, fi]), ti, fi) for ti, fi in np.ndindex(overlap.shape)),
            reverse=True,
        )
        used_t: set[int] = set()
        used_f: set[int] = set()
        assign: dict[int, Track] = {}
        for score, ti, fi in pairs:
            if score < self.iou_threshold:
                break
            if ti in used_t or fi in used_f:
                continue
            used_t.add(ti)
            used_f.add(fi)
            t = self.tracks[ti]
            t.box, t.last_seq, t.hits, t.missed = faces[fi].box, seq, t.hits + 1, 0
            assign[fi] = t
        ended, gone = [], set()
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:
                t.missed += 1
                if t.missed > self.max_missed or (not t.confirmed and t.missed > 1):
                    gone.add(t.id)
                    if t.confirmed:
                        ended.append(t.id)
        self.tracks = [t for t in self.tracks if t.id not in gone]
        for fi, f in enumerate(faces):
            if fi not in used_f:
                t = Track(id=self.next_id, box=f.box, first_seq=seq, last_seq=seq, first_ts=ts)
                self.next_id += 1
                self.tracks.append(t)
                assign[fi] = t
        return confirm(faces, assign, self.min_hits), ended

    def predict(self, seq: int) -> dict[int, Box]:
        """Boxes of the confirmed tracks at a frame detection skipped: their last boxes."""
        return {t.id: t.box for t in self.tracks if t.confirmed}

    def end_all(self) -> list[int]:
        ended = [t.id for t in self.tracks if t.confirmed]
        self.tracks = []
        return ended

    def get(self, track_id: int) -> Track | None:
        return next((t for t in self.tracks if t.id == track_id), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IoUTracker:
        data = dict(data)
        data["tracks"] = [Track(**{**t, "box": tuple(t["box"])}) for t in data.get("tracks", [])]
        return cls(**data)
