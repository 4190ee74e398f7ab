"""A multi-face tracker: constant-velocity Kalman filter + IoU + appearance, JSON state.

Same interface as :class:`pipeline.tracking.iou.IoUTracker` (``update``, ``end_all``,
``get``, ``to_dict`` / ``from_dict``), so the track stage can keep it in Redis between
jobs and any worker can continue a stream. What it adds:

* **Motion model.** Each track carries a Kalman filter on ``(cx, cy, w, h)`` and their
  velocities (per frame). Before association every track is predicted to the frame's
  ``seq``; ``seq`` may jump by more than one (detection run on every n-th captured frame,
  or a frame whose detect result was lost) and the prediction covers the whole gap in one
  closed-form step. Noise scales with the face height (as in DeepSORT), so one set of
  parameters serves 20-px and 400-px faces.
* **Association.** A face may continue a track when it lies inside the filter's
  uncertainty around the *predicted* box (squared Mahalanobis distance of its
  ``(cx, cy, w, h)`` <= ``gate``); a tentative track also takes a face whose IoU with the
  predicted box reaches ``iou_threshold``. The gate is what stops a track at a shot cut
  (a different face in roughly the same place, at a different size, overlaps well enough
  for IoU but is far outside the filter's uncertainty); IoU is the cost. When the face
  carries ``face.encoding`` and the track has an appearance (the running mean of the
  encodings it was given, in ``update`` or through
  :meth:`KalmanTracker.observe_encoding`), their Euclidean distance must be at most
  ``appearance_threshold`` and is added to the cost. The assignment minimises the total
  cost (Hungarian, ``scipy.optimize.linear_sum_assignment``).
* **Lifecycle.** *tentative* (seen in fewer than ``min_hits`` detection runs; its faces
  keep ``track_id = None``; dropped after more than ``max_tentative_missed`` runs without
  a match, so a one-frame false detection never becomes a track) -> *confirmed* ->
  *lost* (confirmed, missed in the latest run(s); the prediction keeps moving) ->
  *ended* (not matched for more than ``max_missed`` frames).
* **Re-identification.** A confirmed track whose face turns up outside the motion gate
  (a jump cut, a face that left and came back elsewhere within ``max_missed`` frames)
  takes it back when the face's encoding is within ``reid_threshold`` of the track's
  appearance. When encodings arrive only after tracking (the pipeline's recognize stage
  runs after the track stage), :meth:`KalmanTracker.observe_encoding` does the same
  afterwards: a young track whose appearance matches a confirmed track last seen at most
  ``reid_window`` frames before the young one appeared is merged into it, and the
  surviving id is returned so the caller can relabel what it already emitted. Ended
  tracks stay available for that (``recent``, for ``reid_memory`` frames, at most
  ``recent_max``), since the encodings may come back after a track ended; merged ids
  become ``aliases`` of the survivor.

The whole state is plain JSON (ints, floats, lists): the filter's mean and covariance are
stored as lists of floats, so a tracker restored from ``to_dict()`` continues exactly as
the original would have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.boxes import iou_matrix_xywh
from pipeline.record import Box, Face
from pipeline.tracking.iou import Track, confirm

_DIM = 4  # measured: cx, cy, w, h
_INFEASIBLE = 1e6


@dataclass
class KalmanTrack(Track):
    """A :class:`Track` plus its filter state and appearance (all JSON-able).

    ``box`` is the filter's estimate (after the latest match, or the prediction for the
    latest frame while the track is lost); ``mean`` is ``[cx, cy, w, h, vcx, vcy, vw,
    vh]`` at frame ``kf_seq`` (velocities in pixels per frame) and ``cov`` its 8x8
    covariance, row-major. ``appearance`` is the mean of ``appearance_n`` encodings.
    """

    mean: list[float] = field(default_factory=list)
    cov: list[float] = field(default_factory=list)
    kf_seq: int = 0
    appearance: list[float] | None = None
    appearance_n: int = 0

    @property
    def state(self) -> str:
        """``tentative``, ``confirmed`` (matched in the latest run) or ``lost``."""
        if not self.confirmed:
            return "tentative"
        return "lost" if self.missed else "confirmed"


def box_to_z(box: Box) -> np.ndarray:
    """``(x, y, w, h)`` -> measurement ``[cx, cy, w, h]`` (floats)."""
    x, y, w, h = box
    return np.array([x + w / 2.0, y + h / 2.0, float(w), float(h)])


def z_to_box(z: np.ndarray | list[float]) -> Box:
    """``[cx, cy, w, h, ...]`` -> integer ``(x, y, w, h)`` with a size of at least 1 px."""
    cx, cy, w, h = (float(v) for v in z[:4])
    w, h = max(w, 1.0), max(h, 1.0)
    return (round(cx - w / 2.0), round(cy - h / 2.0), round(w), round(h))


@dataclass
class KalmanTracker:
    """Kalman + IoU + appearance multi-face tracker; see the module docstring.

    The first three fields are those of :class:`IoUTracker`, in the same order, so
    ``KalmanTracker(cfg.iou_threshold, cfg.max_missed, cfg.min_hits)`` works as before.
    ``max_missed`` counts *frames* (``seq`` steps), not detection runs, so it means the
    same time span whatever the detection rate.
    """

    iou_threshold: float = 0.3
    max_missed: int = 15
    min_hits: int = 3
    max_tentative_missed: int = 1
    gate: float = 13.2767  # chi-square, 4 degrees of freedom, 99 %
    appearance_threshold: float = 0.6  # dlib's operating point: surely another person
    reid_threshold: float = 0.5  # stricter: appearance alone, no motion support
    reid_merge: bool = True
    reid_margin: float = 0.1  # the match must beat tracks surely someone else by this
    reid_window: int = 60  # frames between a track's last sighting and a young track's first
    reid_memory: int = 300  # frames an ended track stays available to late encodings
    recent_max: int = 16  # ended tracks kept for re-identification, at most
    appearance_weight: float = 0.5
    appearance_window: int = 30
    std_position: float = 1.0 / 20.0
    std_velocity: float = 1.0 / 160.0
    next_id: int = 1
    seq: int | None = None
    tracks: list[KalmanTrack] = field(default_factory=list)
    # ended confirmed tracks, kept so that encodings arriving late can still merge
    recent: list[KalmanTrack] = field(default_factory=list)
    aliases: list[list[int]] = field(default_factory=list)  # [merged id, surviving id]

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1), got {self.iou_threshold}")
        if min(self.max_missed, self.max_tentative_missed, self.reid_window, self.reid_memory,
               self.recent_max) < 0:  # fmt: skip
            raise ValueError(
                "max_missed, max_tentative_missed, reid_window, reid_memory and recent_max "
                "must be >= 0"
            )
        if self.min_hits < 1:
            raise ValueError(f"min_hits must be >= 1, got {self.min_hits}")
        if self.reid_margin < 0:
            raise ValueError(f"reid_margin must be >= 0, got {self.reid_margin}")
        if min(self.gate, self.std_position, self.std_velocity, self.appearance_threshold) <= 0:
            raise ValueError("gate, std_position, std_velocity, appearance_threshold must be > 0")

    # ----- Kalman filter --------------------------------------------------------------
    def _initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = max(z[3], 1.0)
        mean = np.concatenate([z, np.zeros(_DIM)])
        sp, sv = 2.0 * self.std_position * h, 10.0 * self.std_velocity * h
        cov = np.diag(np.square([sp, sp, sp, sp, sv, sv, sv, sv]))
        return mean, cov

    def _predict(self, tracks: list[KalmanTrack], seq: int) -> _Predicted:
        """All tracks' states at frame ``seq``: ``dt = seq - kf_seq`` steps in closed form.

        Batched over tracks (one numpy call per step, not per track). Per axis, ``dt``
        steps of the discrete constant-velocity model with process noise ``diag(qp, qv)``
        per step give ``F(dt) P F(dt)^T`` plus ``[[dt qp + qv S2, qv S1], [qv S1, dt qv]]``
        with ``S1 = sum k``, ``S2 = sum k^2`` over ``k = 0 .. dt-1`` (exactly what
        stepping frame by frame would give); the noise scales with the track's height.
        """
        n, d = len(tracks), _DIM
        means = np.array([t.mean for t in tracks], dtype=np.float64).reshape(n, 2 * d)
        covs = np.array([t.cov for t in tracks], dtype=np.float64).reshape(n, 2 * d, 2 * d)
        dt = np.array([max(seq - t.kf_seq, 0) for t in tracks], dtype=np.float64)
        h = np.maximum(means[:, 3], 1.0)
        qp, qv = (self.std_position * h) ** 2, (self.std_velocity * h) ** 2
        s1, s2 = dt * (dt - 1) / 2.0, (dt - 1) * dt * (2 * dt - 1) / 6.0
        a, b = covs[:, :d, :d], covs[:, :d, d:]
        c, e = covs[:, d:, :d], covs[:, d:, d:]
        k = dt[:, None, None]
        cov = np.empty_like(covs)
        cov[:, :d, :d] = a + k * (b + c) + k * k * e
        cov[:, :d, d:] = b + k * e
        cov[:, d:, :d] = c + k * e
        cov[:, d:, d:] = e
        idx = np.arange(d)
        cov[:, idx, idx] += (dt * qp + qv * s2)[:, None]
        cov[:, idx, idx + d] += (qv * s1)[:, None]
        cov[:, idx + d, idx] += (qv * s1)[:, None]
        cov[:, idx + d, idx + d] += (dt * qv)[:, None]
        mean = means.copy()
        mean[:, :d] += dt[:, None] * means[:, d:]
        mean[:, 2:4] = np.maximum(mean[:, 2:4], 1.0)
        r = (self.std_position * mean[:, 3]) ** 2
        innov = cov[:, :d, :d] + r[:, None, None] * np.eye(d)
        return _Predicted(mean, cov, innov, _boxes(mean))

    # ----- public API -----------------------------------------------------------------
    def update(self, faces: list[Face], seq: int, ts: float = 0.0) -> tuple[list[Track], list[int]]:
        """Track one detection run's faces at frame ``seq``.

        Returns ``(tracks confirmed now, ids of confirmed tracks that ended)`` and sets
        each ``face.track_id`` (``None`` while its track is tentative). Call it for every
        frame the detector ran on, with or without faces, in increasing ``seq``; frames in
        between are predicted over. On the frame that confirms a track the track is
        returned once, with ``first_ts`` and ``hits`` covering its tentative frames.
        Faces that carry ``encoding`` are matched by appearance too and update their
        track's appearance.
        """
        seq = int(seq)
        if self.seq is not None and seq <= self.seq:
            raise ValueError(f"seq must increase: got {seq} after {self.seq}")
        # validate everything before the state changes, so bad input leaves it intact
        encodings = [_as_encoding(f.encoding) if f.encoding is not None else None for f in faces]
        sizes = {e.size for e in encodings if e is not None}
        sizes |= {len(t.appearance) for t in self.tracks if t.appearance is not None}
        if len(sizes) > 1:
            raise ValueError(f"face encodings and track appearances differ in length: {sizes}")
        self.seq = seq

        # tracks past their lifetime cannot take a face any more
        ended: list[int] = []
        alive = []
        for t in self.tracks:
            if seq - t.last_seq > self.max_missed + 1:
                if t.confirmed:
                    ended.append(t.id)
                    self._retire(t)
            else:
                alive.append(t)
        self.tracks = alive

        pred = self._predict(self.tracks, seq)
        matches = self._associate(faces, encodings, pred)

        assign: dict[int, KalmanTrack] = {}
        matched_t: set[int] = set()
        if matches:
            rows = np.array([ti for ti, _ in matches])
            zs = np.stack([box_to_z(faces[fi].box) for _, fi in matches])
            means, covs = _correct(pred, rows, zs)
            for (ti, fi), mean, cov in zip(matches, means, covs, strict=True):
                t = self.tracks[ti]
                t.mean, t.cov, t.kf_seq = mean.tolist(), cov.ravel().tolist(), seq
                t.box = z_to_box(mean)
                t.last_seq, t.hits, t.missed = seq, t.hits + 1, 0
                if encodings[fi] is not None:
                    self._add_appearance(t, encodings[fi])
                assign[fi] = t
                matched_t.add(ti)

        keep = []
        for ti, t in enumerate(self.tracks):
            if ti not in matched_t:
                t.missed += 1
                t.box = pred.boxes[ti]
                if not t.confirmed:
                    if t.missed > self.max_tentative_missed:
                        continue
                elif seq - t.last_seq > self.max_missed:
                    ended.append(t.id)
                    self._retire(t)
                    continue
            keep.append(t)
        self.tracks = keep
        self._prune_recent()

        for fi, f in enumerate(faces):
            if fi in assign:
                continue
            mean, cov = self._initiate(box_to_z(f.box))
            t = KalmanTrack(
                id=self.next_id,
                box=z_to_box(mean),
                first_seq=seq,
                last_seq=seq,
                first_ts=float(ts),
                mean=mean.tolist(),
                cov=cov.ravel().tolist(),
                kf_seq=seq,
            )
            if encodings[fi] is not None:
                self._add_appearance(t, encodings[fi])
            self.next_id += 1
            self.tracks.append(t)
            assign[fi] = t

        return confirm(faces, assign, self.min_hits), ended

    def predict(self, seq: int) -> dict[int, Box]:
        """Boxes of the confirmed tracks at frame ``seq`` (e.g. a frame detection skipped).

        Pure: the state does not change. Tracks that would have ended by ``seq`` are left
        out.
        """
        live = [t for t in self.tracks if t.confirmed and seq - t.last_seq <= self.max_missed]
        if not live:
            return {}
        pred = self._predict(live, seq)
        return {t.id: box for t, box in zip(live, pred.boxes, strict=True)}

    def observe_encoding(self, track_id: int, encoding: list[float] | np.ndarray) -> int | None:
        """Add one face encoding of ``track_id`` to its appearance (a running mean).

        For the recognize stage's results, which arrive after the frame was tracked (and
        possibly after the track ended: ended tracks stay available for ``reid_memory``
        frames). Returns the id the track has now: ``track_id``, or, with ``reid_merge``,
        the id of an earlier confirmed track it was merged into (re-identification: that
        track was last matched before this one first appeared, at most ``reid_window``
        frames before, and its appearance is within ``reid_threshold`` of this track's).
        The caller relabels ``track_id`` as the returned id in what it already emitted;
        the merged id is never reported as ended, and later calls with it are redirected
        to the survivor. Returns None when the track is unknown or long gone.
        """
        enc = _as_encoding(encoding)
        t = self._find(self.resolve(track_id))
        if t is None:
            return None
        self._add_appearance(t, enc)
        if not self.reid_merge:
            return t.id
        app = np.asarray(t.appearance)
        dists: list[tuple[float, KalmanTrack]] = [
            (float(np.linalg.norm(np.asarray(o.appearance) - app)), o)
            for o in self.tracks + self.recent
            if o is not t and o.appearance is not None and len(o.appearance) == app.size
        ]
        eligible = [
            (d, o)
            for d, o in dists
            if o.confirmed
            and o.last_seq < t.first_seq
            and t.first_seq - o.last_seq <= self.reid_window
            and d <= self.reid_threshold
        ]
        if not eligible:
            return t.id
        best = min(eligible, key=lambda x: x[0])
        # ambiguous: about as close to a track that is surely someone else (one seen in
        # the same frames as the young track or as the candidate) as to the candidate:
        # the encoding says little (a blurred face, or a false detection whose encoding
        # sits between people)
        rivals = [
            d for d, o in dists if o is not best[1] and (_overlap(o, t) or _overlap(o, best[1]))
        ]
        if rivals and min(rivals) - best[0] < self.reid_margin:
            return t.id
        self._merge(into=best[1], young=t)
        return best[1].id

    def resolve(self, track_id: int) -> int:
        """The id a (possibly merged) track id stands for now."""
        into = dict((a, b) for a, b in self.aliases)
        seen = {track_id}
        while track_id in into and into[track_id] not in seen:
            track_id = into[track_id]
            seen.add(track_id)
        return track_id

    def _find(self, track_id: int) -> KalmanTrack | None:
        return next((t for t in self.tracks + self.recent if t.id == track_id), None)

    def _retire(self, t: KalmanTrack) -> None:
        """An ended confirmed track: keep it a while for late re-identification."""
        if self.reid_merge and self.reid_memory > 0 and self.recent_max > 0:
            # its filter state is never used again (a merge takes the young track's), so
            # it is dropped: the state is saved on every frame
            t.mean, t.cov = [], []
            self.recent.append(t)

    def _prune_recent(self) -> None:
        now = self.seq if self.seq is not None else 0
        keep = [t for t in self.recent if now - t.last_seq <= self.reid_memory]
        self.recent = keep[-self.recent_max :] if self.recent_max else []

    def _merge(self, into: KalmanTrack, young: KalmanTrack) -> None:
        """``young`` continues ``into``: motion state from the young, counts summed.

        The survivor takes the young track's place (live, or ended and kept for
        re-identification), and the young id becomes an alias of it.
        """
        young_live = any(x is young for x in self.tracks)
        into.mean, into.cov, into.kf_seq, into.box = young.mean, young.cov, young.kf_seq, young.box
        into.last_seq, into.missed = young.last_seq, young.missed
        into.hits += young.hits
        into.samples += young.samples
        into.last_sample_seq = max(into.last_sample_seq, young.last_sample_seq)
        if young.appearance is not None and into.appearance is not None:
            n_i, n_y = into.appearance_n, young.appearance_n
            into.appearance = np.round(
                (np.asarray(into.appearance) * n_i + np.asarray(young.appearance) * n_y)
                / (n_i + n_y),
                6,
            ).tolist()
            into.appearance_n = n_i + n_y
        self.tracks = [x for x in self.tracks if x is not young and x is not into]
        self.recent = [x for x in self.recent if x is not young and x is not into]
        (self.tracks if young_live else self.recent).append(into)
        self.aliases = [*self.aliases, [young.id, into.id]][-64:]

    def end_all(self) -> list[int]:
        ended = []
        for t in self.tracks:
            if t.confirmed:
                ended.append(t.id)
                self._retire(t)
        self.tracks = []
        self._prune_recent()
        return ended

    def get(self, track_id: int) -> KalmanTrack | None:
        return next((t for t in self.tracks if t.id == track_id), None)

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON types only (boxes as lists)."""
        data = {name: getattr(self, name) for name in _TRACKER_FIELDS}
        data["tracks"] = [_track_dict(t) for t in self.tracks]
        data["recent"] = [_track_dict(t) for t in self.recent]
        data["aliases"] = [list(a) for a in self.aliases]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KalmanTracker:
        """Restore a tracker from :meth:`to_dict` output.

        Also accepts an :class:`IoUTracker` state (tracks without a filter state get one
        started from their last box), so a stream can switch trackers mid-way.
        """
        data = dict(data)
        raw_tracks = data.pop("tracks", [])
        raw_recent = data.pop("recent", [])
        known = set(cls.__dataclass_fields__) - {"tracks", "recent"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown KalmanTracker field(s): {sorted(unknown)}")
        tracker = cls(**data)
        track_fields = set(KalmanTrack.__dataclass_fields__)
        for raws, into in ((raw_tracks, tracker.tracks), (raw_recent, tracker.recent)):
            for raw in raws:
                unknown = set(raw) - track_fields
                if unknown:
                    raise ValueError(f"unknown track field(s): {sorted(unknown)}")
                t = KalmanTrack(**{**raw, "box": tuple(raw["box"])})
                if into is tracker.recent and not t.mean and not t.cov:
                    into.append(t)  # an ended track keeps no filter state
                    continue
                if not t.mean and not t.cov:  # an IoUTracker track: start its filter
                    mean, cov = tracker._initiate(box_to_z(t.box))
                    t.mean, t.cov, t.kf_seq = mean.tolist(), cov.ravel().tolist(), t.last_seq
                if len(t.mean) != 2 * _DIM or len(t.cov) != (2 * _DIM) ** 2:
                    raise ValueError(f"track {t.id}: mean must have 8 values and cov 64")
                into.append(t)
        return tracker

    # ----- internals ------------------------------------------------------------------
    def _add_appearance(self, t: KalmanTrack, enc: np.ndarray) -> None:
        if t.appearance is None:
            t.appearance, t.appearance_n = np.round(enc, 6).tolist(), 1
            return
        old = np.asarray(t.appearance)
        if old.shape != enc.shape:
            raise ValueError(f"encoding has {enc.shape[0]} values, track {t.id} has {old.shape[0]}")
        n = min(t.appearance_n, self.appearance_window - 1)
        t.appearance = np.round((old * n + enc) / (n + 1), 6).tolist()
        t.appearance_n = t.appearance_n + 1

    def _cost(
        self, faces: list[Face], encodings: list[np.ndarray | None], pred: _Predicted
    ) -> np.ndarray:
        """Cost of giving face j to track i; ``_INFEASIBLE`` where the gates forbid it.

        Motion: ``1 - IoU(predicted box, face box) + 0.1 * min(d2 / gate, 10)`` when ``d2``
        (squared Mahalanobis distance of the face's ``(cx, cy, w, h)`` from the prediction)
        is within ``gate``, or, for a tentative track (whose velocity is still a guess),
        when the IoU reaches ``iou_threshold``. Appearance (both sides
        known): the distance must be <= ``appearance_threshold`` and adds
        ``appearance_weight * distance / appearance_threshold``. A confirmed track outside
        the motion gate may still take the face by appearance alone (distance <=
        ``reid_threshold``), at a cost above every motion match.
        """
        n_t, n_f = len(self.tracks), len(faces)
        if not n_t or not n_f:
            return np.full((n_t, n_f), _INFEASIBLE)
        zs = np.stack([box_to_z(f.box) for f in faces])
        diff = zs[None, :, :] - pred.mean[:, None, :_DIM]  # (tracks, faces, 4)
        d2 = np.einsum("tfi,tij,tfj->tf", diff, np.linalg.inv(pred.innov), diff)
        overlap = iou_matrix_xywh(pred.boxes, [f.box for f in faces])
        tentative = np.array([not t.confirmed for t in self.tracks])[:, None]
        motion_ok = (d2 <= self.gate) | (tentative & (overlap >= self.iou_threshold))
        cost = 1.0 - overlap + 0.1 * np.minimum(d2 / self.gate, 10.0)

        dist = np.full((n_t, n_f), np.nan)
        ti = [i for i, t in enumerate(self.tracks) if t.appearance is not None]
        fi = [j for j, e in enumerate(encodings) if e is not None]
        if ti and fi:
            a = np.stack([np.asarray(self.tracks[i].appearance) for i in ti])
            e = np.stack([encodings[j] for j in fi])  # sizes checked in update()
            dist[np.ix_(ti, fi)] = np.linalg.norm(a[:, None, :] - e[None, :, :], axis=2)
        known = ~np.isnan(dist)
        dist0 = np.where(known, dist, 0.0)
        app_ok = ~known | (dist0 <= self.appearance_threshold)
        cost += np.where(known, self.appearance_weight * dist0 / self.appearance_threshold, 0.0)
        confirmed = np.array([t.confirmed for t in self.tracks])[:, None]
        reid = known & (dist0 <= self.reid_threshold) & confirmed & ~motion_ok
        out = np.where(motion_ok & app_ok, cost, _INFEASIBLE)
        return np.where(reid, 3.0 + dist0, out)

    def _associate(
        self, faces: list[Face], encodings: list[np.ndarray | None], pred: _Predicted
    ) -> list[tuple[int, int]]:
        cost = self._cost(faces, encodings, pred)
        if cost.size == 0:
            return []
        rows, cols = linear_sum_assignment(cost)
        return sorted((r, c) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
                      if cost[r, c] < _INFEASIBLE)  # fmt: skip


@dataclass
class _Predicted:
    """Predicted states of all tracks at one frame (arrays, first axis = track)."""

    mean: np.ndarray  # (n, 8)
    cov: np.ndarray  # (n, 8, 8)
    innov: np.ndarray  # (n, 4, 4): H P H^T + R
    boxes: list[Box]


def _correct(pred: _Predicted, rows: np.ndarray, zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kalman update of tracks ``rows`` with measurements ``zs`` (batched)."""
    mean, cov, s = pred.mean[rows], pred.cov[rows], pred.innov[rows]
    gain = cov[:, :, :_DIM] @ np.linalg.inv(s)  # P H^T S^-1, (k, 8, 4)
    mean = mean + np.einsum("kij,kj->ki", gain, zs - mean[:, :_DIM])
    cov = cov - gain @ s @ gain.transpose(0, 2, 1)
    return mean, 0.5 * (cov + cov.transpose(0, 2, 1))


def _boxes(mean: np.ndarray) -> list[Box]:
    """Integer ``(x, y, w, h)`` boxes of ``(n, >=4)`` states (as :func:`z_to_box`)."""
    if not len(mean):
        return []
    wh = np.maximum(mean[:, 2:4], 1.0)
    xy = mean[:, 0:2] - wh / 2.0
    return [tuple(int(v) for v in row) for row in np.round(np.hstack([xy, wh]))]


def _track_dict(t: KalmanTrack) -> dict[str, Any]:
    d = {name: getattr(t, name) for name in _TRACK_FIELDS}
    d["box"] = list(t.box)
    return d


_TRACK_FIELDS = tuple(KalmanTrack.__dataclass_fields__)
_TRACKER_FIELDS = tuple(
    f for f in KalmanTracker.__dataclass_fields__ if f not in ("tracks", "recent", "aliases")
)


def _overlap(a: Track, b: Track) -> bool:
    """Whether two tracks were seen in common frames (so they are two people)."""
    return a.first_seq <= b.last_seq and b.first_seq <= a.last_seq


def _as_encoding(value: Any) -> np.ndarray:
    enc = np.asarray(value, dtype=np.float64)
    if enc.ndim != 1 or enc.size == 0 or not np.all(np.isfinite(enc)):
        raise ValueError("a face encoding must be a non-empty 1-D list of finite numbers")
    return enc


__all__ = ["KalmanTrack", "KalmanTracker", "box_to_z", "z_to_box"]
