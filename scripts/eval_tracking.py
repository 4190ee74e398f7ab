#!/usr/bin/env python
"""Tracking on the YouTube Faces clips: IoUTracker vs KalmanTracker, identity and box accuracy.

For each clip folder under ``youtube-faces-clips/`` (a ``.avi``, its frames as JPEG and
``*.labeled_faces.txt`` with one ``PERSON\\CLIP\\CLIP.FRAME.jpg,0,CX,CY,W,H,0.0,1`` line
per frame, CX/CY the box centre):

1. a detector from ``pipeline.detectors.registry`` (default ``blazeface`` with
   ``{"tile_size": 384}``) runs on every frame (cached under ``runs/eval_tracking/``);
2. each tracker consumes the detections as the track stage would, in several regimes:
   detection on every frame, on every 2nd / 3rd frame (``update`` is called only on those
   frames, ``seq`` jumps; every phase of the skip pattern is run), and every frame with a
   random 30 % of the detections dropped (5 seeds);
3. on every labelled frame the *tracked box* is what the tracker would report there: the
   confirmed tracks' boxes after ``update`` (a lost track's box too), and on frames
   detection skipped the IoU tracker's last boxes or the Kalman tracker's
   ``predict(seq)``;
4. metrics: identity switches (the id of the track matched to the labelled face at IoU
   >= 0.5 changes between matched frames), confirmed track ids in the clip, and the share
   of labelled frames whose face is covered by a tracked box at IoU >= 0.5.

With ``--encodings`` the dlib 128-d encoding of every detected face is computed too
(cached) and two more Kalman runs use them: on the faces the track stage samples, given
to ``observe_encoding`` after ``update`` (the pipeline's order: recognition runs after
tracking), and on every face passed to ``update`` (the upper bound). The time of one
``update`` call (median / 99th percentile) is measured on the clip and on a synthetic
5-face stream, with and without the JSON round trip the track stage does per batch.

With ``--encodings`` (unless ``--no-video``) the trackers also run on the two-person
Hamilton clip (``video/short_hamilton_clip.mp4``, no box labels): the report counts the
tracks that continue across a shot cut (found from colour-histogram jumps; on that clip
every cut changes the people in view, so such a track mixes people) and names each
track's person by the nearest enrolment photo in ``video/known/``.

With ``--pipeline`` (or ``--pipeline-only``, which keeps the other results from
``docs/tracking-results.json``) identity is measured through the real pipeline: each
YouTube Faces clip and the Hamilton clip (both people of ``video/known/`` enrolled) go
through ``./facepipe run --json`` as a subprocess, in a fresh temporary ``FACEPIPE_HOME``,
with re-identification on (the defaults) and off (``FACEPIPE__TRACKER__REID_WINDOW=0``),
``--pipeline-runs`` times each; ``./facepipe events --json`` gives the events (tracks). The
report: events in total and per person (name, ``unknown-N`` or plain unknown), frames of
the longest event vs frames captured, merges (the run's ``track_aliases``), and on the
Hamilton clip each named event's frames and shots, names on events in a shot where that
person is not on screen, and named events per person vs the fewest the shot cuts allow.
Event frames come from the events' ``first_frame``/``last_frame`` when the store has
them, else they are bounded from the capture times (``frame_bounds``). Per-run summaries,
events and logs go to ``runs/eval_tracking/pipeline/``.

Results go to ``docs/tracking-results.json`` and between ``<!-- results:start -->`` and
``<!-- results:end -->`` of ``docs/tracking.md``. Run it niced on a shared machine::

    nice -n 10 python scripts/eval_tracking.py --encodings --pipeline \\
        > runs/eval_tracking.log 2>&1 &
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.datasets import require  # noqa: E402
from pipeline.machine import info as machine_info  # noqa: E402
from pipeline.record import Box, Face  # noqa: E402
from pipeline.reports import write_results  # noqa: E402
from pipeline.tracking.iou import IoUTracker, iou  # noqa: E402
from pipeline.tracking.kalman import KalmanTracker  # noqa: E402

DATASET = "youtube-faces-clips"
CACHE = REPO / "runs" / "eval_tracking"
DOCS_MD = REPO / "docs" / "tracking.md"
DOCS_JSON = REPO / "docs" / "tracking-results.json"
MATCH_IOU = 0.5
DROP_RATE, DROP_SEEDS = 0.3, 5
SAMPLE_MAX, SAMPLE_EVERY, SAMPLE_MIN_PX = 5, 5, 24  # the track stage's sampling defaults


# ----- data --------------------------------------------------------------------------
def read_labels(path: Path) -> list[tuple[str, Box]]:
    """``(jpg name, (x, y, w, h))`` per line; the file's CX, CY are the box centre."""
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(",")
        if len(parts) < 6:
            raise ValueError(f"{path}:{n}: expected NAME,0,CX,CY,W,H,..., got {line!r}")
        cx, cy, w, h = (float(v) for v in parts[2:6])
        name = parts[0].replace("\\", "/").rsplit("/", 1)[-1]
        out.append((name, (cx - w / 2.0, cy - h / 2.0, w, h)))
    return out


def read_frames(clip: Path, source: str, labels: list[tuple[str, Box]]) -> list[np.ndarray]:
    """RGB frames, one per label line: the .avi's frames in order, or the named JPEGs."""
    if source == "jpg":
        frames = []
        for name, _ in labels:
            hits = list(clip.glob(f"*/{name}"))
            if not hits:
                raise FileNotFoundError(f"{clip}: no frame image {name}")
            frames.append(cv2.cvtColor(cv2.imread(str(hits[0])), cv2.COLOR_BGR2RGB))
        return frames
    videos = sorted(clip.glob("*.avi"))
    if not videos:
        raise FileNotFoundError(f"{clip}: no .avi (use --source jpg)")
    cap = cv2.VideoCapture(str(videos[0]))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    if len(frames) != len(labels):
        raise ValueError(
            f"{videos[0].name}: {len(frames)} frames but {len(labels)} label lines; "
            "use --source jpg"
        )
    return frames


def detections(
    clip: Path,
    source: str,
    detector: str,
    options: dict[str, Any],
    with_encodings: bool,
) -> tuple[list[list[dict[str, Any]]], list[tuple[str, Box]], dict[str, float]]:
    """Per-frame detections (``{"box", "score", "encoding"?}``), cached per clip/setting."""
    labels = read_labels(next(clip.glob("*.labeled_faces.txt")))
    key = hashlib.sha1(
        json.dumps([clip.name, source, detector, options], sort_keys=True).encode()
    ).hexdigest()[:12]
    path = CACHE / f"{clip.name}-{detector}-{key}.json"
    cached = json.loads(path.read_text()) if path.exists() else None
    if cached and (not with_encodings or cached.get("encodings")):
        return cached["frames"], labels, cached["timing"]

    from pipeline.detectors import registry

    det = registry.create(detector, options)
    frames = read_frames(clip, source, labels)
    out, ms = [], []
    for img in frames:
        t0 = time.perf_counter()
        faces = det.detect(img)
        ms.append((time.perf_counter() - t0) * 1000.0)
        out.append([{"box": list(f.box), "score": f.score} for f in faces])
    if with_encodings:
        from pipeline.recognition.encoder import DlibEncoder

        enc = DlibEncoder()
        for img, faces in zip(frames, out, strict=True):
            rows = enc.encode(img, [Face(box=tuple(f["box"])) for f in faces])
            for f, row in zip(faces, rows, strict=True):
                f["encoding"] = [round(float(v), 6) for v in row]
    timing = {"detector_ms_median": statistics.median(ms), "frame_size": list(frames[0].shape)}
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"frames": out, "timing": timing, "encodings": with_encodings}))
    return out, labels, timing


# ----- tracking ----------------------------------------------------------------------
TrackerFactory = Callable[[], Any]


def run_tracker(
    make: TrackerFactory,
    frames: list[list[dict[str, Any]]],
    run_on: list[bool],
    encodings: str,
    drop: set[int] | None = None,
) -> tuple[list[dict[int, Box]], list[float]]:
    """Tracked boxes per frame ``{track id: box}`` and the time of each ``update`` (µs).

    ``encodings``: ``"none"``; ``"faces"`` (every face carries its encoding into
    ``update``); ``"observe"`` (as in the pipeline, where recognition runs after tracking:
    faces the track stage would sample, at confirmation then every 5th frame up to 5 per
    track, >= 24 px, give their encoding to ``observe_encoding`` after ``update``; a track
    merged into an earlier one is relabelled in all frames, as the event store would).
    """
    tracker = make()
    boxes: list[dict[int, Box]] = []
    times: list[float] = []
    held: dict[int, Box] = {}
    merged: dict[int, int] = {}
    for seq, (dets, ran) in enumerate(zip(frames, run_on, strict=True)):
        if not ran:  # detection skipped this frame: the tracker's prediction (or last boxes)
            if isinstance(tracker, KalmanTracker):
                boxes.append(tracker.predict(seq))
            else:
                boxes.append(dict(held))
            continue
        faces = []
        if drop is None or seq not in drop:
            for d in dets:
                enc = d.get("encoding") if encodings == "faces" else None
                faces.append(Face(box=tuple(d["box"]), score=d["score"], encoding=enc))
        t0 = time.perf_counter()
        tracker.update(faces, seq, float(seq) / 30.0)
        times.append((time.perf_counter() - t0) * 1e6)
        if encodings == "observe":
            kept = [d for d in dets] if drop is None or seq not in drop else []
            for f, d in zip(faces, kept, strict=True):
                t = tracker.get(f.track_id) if f.track_id is not None else None
                if t is None or min(f.box[2:]) < SAMPLE_MIN_PX or t.samples >= SAMPLE_MAX:
                    continue
                if seq - t.last_sample_seq >= SAMPLE_EVERY:
                    t.samples, t.last_sample_seq = t.samples + 1, seq
                    now = tracker.observe_encoding(t.id, d["encoding"])
                    if now is not None and now != t.id:
                        merged[t.id] = now
        held = {t.id: tuple(t.box) for t in tracker.tracks if t.confirmed}
        boxes.append(dict(held))

    def final(i: int) -> int:
        while i in merged:
            i = merged[i]
        return i

    if merged:
        boxes = [{final(i): b for i, b in fr.items()} for fr in boxes]
    return boxes, times


def score(tracked: list[dict[int, Box]], labels: list[tuple[str, Box]]) -> dict[str, Any]:
    """Identity switches, track ids, and share of frames covered at IoU >= 0.5."""
    matched: list[int | None] = []
    for boxes, (_, truth) in zip(tracked, labels, strict=True):
        best = max(boxes.items(), key=lambda kv: iou(kv[1], truth), default=None)
        ok = best is not None and iou(best[1], truth) >= MATCH_IOU
        matched.append(best[0] if ok else None)
    seq_ids = [m for m in matched if m is not None]
    switches = sum(1 for a, b in zip(seq_ids, seq_ids[1:], strict=False) if a != b)
    all_ids = {i for boxes in tracked for i in boxes}
    main = Counter(seq_ids).most_common(1)[0][0] if seq_ids else None
    return {
        "frames": len(labels),
        "id_switches": switches,
        "track_ids": len(all_ids),
        "false_track_ids": len(all_ids - set(seq_ids)),
        "coverage": len(seq_ids) / len(labels),
        "main_id_coverage": sum(1 for m in matched if m == main) / len(labels),
    }


def mean_scores(rows: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("id_switches", "track_ids", "false_track_ids", "coverage", "main_id_coverage")
    out: dict[str, Any] = {k: statistics.mean(r[k] for r in rows) for k in keys}
    out["worst_coverage"] = min(r["coverage"] for r in rows)
    out["max_id_switches"] = max(r["id_switches"] for r in rows)
    out["runs"] = len(rows)
    return out


def detector_only(frames: list[list[dict[str, Any]]], labels, run_on) -> float:
    """Share of labelled frames with a raw detection at IoU >= 0.5 (no tracking)."""
    hit = 0
    for dets, (_, truth), ran in zip(frames, labels, run_on, strict=True):
        if ran and any(iou(tuple(d["box"]), truth) >= MATCH_IOU for d in dets):
            hit += 1
    return hit / len(labels)


def regimes(n: int) -> list[tuple[str, list[bool], set[int] | None]]:
    """(name, detection ran on frame i, dropped frames) for each simulated regime."""
    out: list[tuple[str, list[bool], set[int] | None]] = [("every frame", [True] * n, None)]
    for k in (2, 3):
        for phase in range(k):
            out.append(
                (
                    f"every {k}nd frame" if k == 2 else f"every {k}rd frame",
                    [(i - phase) % k == 0 for i in range(n)],
                    None,
                )
            )
    for seed in range(DROP_SEEDS):
        rng = random.Random(seed)
        drop = {i for i in range(n) if rng.random() < DROP_RATE}
        out.append((f"{int(DROP_RATE * 100)} % detections dropped", [True] * n, drop))
    return out


VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("min_hits=1", {"min_hits": 1}),
    ("min_hits=2", {"min_hits": 2}),
    ("max_missed=30", {"max_missed": 30}),
    ("gate=9.49 (95 %)", {"gate": 9.4877}),
    ("std_position=1/14", {"std_position": 1 / 14}),
    ("std_position=1/10", {"std_position": 1 / 10}),
    ("std_velocity=1/80", {"std_velocity": 1 / 80}),
    ("std_velocity=1/40", {"std_velocity": 1 / 40}),
]


def sensitivity(
    frames: list[list[dict[str, Any]]],
    labels: list[tuple[str, Box]],
    mode: str,
    base: dict[str, Any],
    video: tuple[list[list[dict[str, Any]]], list[int]] | None,
) -> list[dict[str, Any]]:
    """KalmanTracker with one parameter changed: mean over each regime's runs, and (when
    the Hamilton clip is there) its tracks across shot cuts without encodings."""
    rows = []
    by_name: dict[str, list[tuple[list[bool], set[int] | None]]] = {}
    for name, run_on, drop in regimes(len(frames)):
        by_name.setdefault(name, []).append((run_on, drop))
    for label, change in VARIANTS:
        params = {**base, **change}

        def make(p: dict[str, Any] = params) -> KalmanTracker:
            return KalmanTracker(**p)

        row: dict[str, Any] = {"variant": label, "params": params, "mode": mode}
        for name, runs in by_name.items():
            row[name] = mean_scores(
                [
                    score(run_tracker(make, frames, run_on, mode, drop)[0], labels)
                    for run_on, drop in runs
                ]
            )
        if video is not None:
            row["cut_crossings"] = [cross_cut_tracks(make, *video, every) for every in (1, 3)]
        rows.append(row)
    return rows


def cross_cut_tracks(
    make: TrackerFactory, frames: list[list[dict[str, Any]]], cuts: list[int], every: int
) -> int:
    """Confirmed tracks (no encodings) with faces on both sides of a shot cut."""
    tracker = make()
    seen: dict[int, list[int]] = {}
    for seq, dets in enumerate(frames):
        if seq % every:
            continue
        faces = [Face(box=tuple(d["box"]), score=d["score"]) for d in dets]
        tracker.update(faces, seq)
        for f in faces:
            if f.track_id is not None:
                seen.setdefault(f.track_id, []).append(seq)
    return sum(1 for v in seen.values() if any(min(v) < c <= max(v) for c in cuts))


# ----- two people, no box labels: the Hamilton clip -----------------------------------
def video_detections(
    video: Path, detector: str, options: dict[str, Any]
) -> tuple[list[list[dict[str, Any]]], list[list[float]], list[str], dict[str, Any]]:
    """Detections + encodings on every frame of ``video`` and the encodings of the
    enrolment photos in ``known/`` (cached)."""
    key = hashlib.sha1(json.dumps([video.name, detector, options]).encode()).hexdigest()[:12]
    path = CACHE / f"{video.stem}-{detector}-{key}.json"
    if path.exists():
        c = json.loads(path.read_text())
        return c["frames"], c["known"], c["names"], c["info"]
    from pipeline.commands.detect import load_rgb
    from pipeline.detectors import registry
    from pipeline.recognition.encoder import DlibEncoder

    det, enc = registry.create(detector, options), DlibEncoder()
    known, names = [], []
    for photo in sorted((video.parent / "known").glob("*.png")):
        img = load_rgb(photo)
        faces = det.detect(img)
        if not faces:
            raise RuntimeError(f"{detector} finds no face in {photo}")
        face = max(faces, key=lambda f: f.box[2] * f.box[3])
        known.append([float(v) for v in enc.encode(img, [face])[0]])
        names.append(photo.stem)
    cap = cv2.VideoCapture(str(video))
    frames: list[list[dict[str, Any]]] = []
    size: list[int] = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        img = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        size = list(img.shape)
        faces = det.detect(img)
        rows = enc.encode(img, faces)
        frames.append(
            [
                {"box": list(f.box), "score": f.score, "encoding": [round(float(v), 6) for v in r]}
                for f, r in zip(faces, rows, strict=True)
            ]
        )
    cap.release()
    info = {"frames": len(frames), "frame_size": size}
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"frames": frames, "known": known, "names": names, "info": info}))
    return frames, known, names, info


def shot_cuts(video: Path, threshold: float = 0.4) -> list[int]:
    """Frames that start a new shot: Bhattacharyya distance of consecutive frames'
    hue/saturation histograms above ``threshold`` (cuts score ~0.5-0.6 on the Hamilton
    clip, everything else < 0.2)."""
    cap = cv2.VideoCapture(str(video))
    cuts, prev, i = [], None, 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [32, 32], [0, 180, 0, 256])
        cv2.normalize(hist, hist)
        if prev is not None and cv2.compareHist(prev, hist, cv2.HISTCMP_BHATTACHARYYA) > threshold:
            cuts.append(i)
        prev, i = hist, i + 1
    cap.release()
    return cuts


def two_people(
    frames: list[list[dict[str, Any]]],
    known: list[list[float]],
    names: list[str],
    trackers: dict[str, tuple[TrackerFactory, str]],
    cuts: list[int],
) -> list[dict[str, Any]]:
    """Tracks across shot cuts; tracks per person, named by the nearest enrolment photo.

    A track with faces on both sides of a shot cut has followed one face into another
    shot; on this clip every cut changes the people in view, so each such track mixes two
    people (checked by eye).

    Each detection gets a pseudo-label: the enrolled person whose photo encoding is
    nearest, if within 0.6 (dlib's operating point), else none. A track's person is its
    faces' majority label; a *mixed* track has faces labelled as another person too (an
    identity switch, or a recognition error on one frame: counted as faces).
    """
    gallery = np.asarray(known)
    labels = []
    for dets in frames:
        row = []
        for d in dets:
            dist = np.linalg.norm(gallery - np.asarray(d["encoding"]), axis=1)
            row.append(names[int(np.argmin(dist))] if dist.min() <= 0.6 else None)
        labels.append(row)
    out = []
    for regime, every in (("every frame", 1), ("every 3rd frame", 3)):
        for tname, (make, mode) in trackers.items():
            tracker = make()
            merged: dict[int, int] = {}
            per_track: dict[int, Counter[str | None]] = {}
            seen: dict[int, list[int]] = {}
            for seq, dets in enumerate(frames):
                if seq % every:
                    continue
                faces = [
                    Face(
                        box=tuple(d["box"]),
                        score=d["score"],
                        encoding=d["encoding"] if mode == "faces" else None,
                    )
                    for d in dets
                ]
                tracker.update(faces, seq, seq / 30.0)
                for f, d, lab in zip(faces, dets, labels[seq], strict=True):
                    if f.track_id is None:
                        continue
                    tid = f.track_id
                    t = tracker.get(tid)
                    if mode == "observe" and t is not None and min(f.box[2:]) >= SAMPLE_MIN_PX:
                        if t.samples < SAMPLE_MAX and seq - t.last_sample_seq >= SAMPLE_EVERY:
                            t.samples, t.last_sample_seq = t.samples + 1, seq
                            now = tracker.observe_encoding(tid, d["encoding"])
                            if now is not None and now != tid:
                                merged[tid] = now
                                tid = now
                    per_track.setdefault(tid, Counter())[lab] += 1
                    seen.setdefault(tid, []).append(seq)
            final: dict[int, Counter[str | None]] = {}
            spans: dict[int, list[int]] = {}
            for tid, counts in per_track.items():
                seqs = seen[tid]
                while tid in merged:
                    tid = merged[tid]
                final.setdefault(tid, Counter()).update(counts)
                spans.setdefault(tid, []).extend(seqs)
            cross = sum(1 for v in spans.values() if any(min(v) < c <= max(v) for c in cuts))
            by_person: Counter[str] = Counter()
            mixed_tracks = mixed_faces = unnamed = 0
            for counts in final.values():
                named = Counter({k: v for k, v in counts.items() if k is not None})
                if not named:
                    unnamed += 1
                    continue
                person, n = named.most_common(1)[0]
                by_person[person] += 1
                if len(named) > 1:
                    mixed_tracks += 1
                    mixed_faces += sum(named.values()) - n
            out.append(
                {
                    "regime": regime,
                    "tracker": tname,
                    "tracks": len(final),
                    "tracks_across_cuts": cross,
                    "tracks_per_person": {n: by_person.get(n, 0) for n in names},
                    "unnamed_tracks": unnamed,
                    "mixed_tracks": mixed_tracks,
                    "minority_faces_in_mixed": mixed_faces,
                }
            )
    return out


# ----- identity through the pipeline: `facepipe run` ---------------------------------
HAMILTON = "short_hamilton_clip.mp4"
HAMILTON_CUTS = [20, 82, 211]  # what shot_cuts() finds; each checked by eye
# who is on screen in each shot, by eye: Lin-Manuel Miranda (standing) and Alex Lacamoire
# (piano); Alex in profile close-up (curly hair and beard as in his enrolment photo) and
# the audience; Lin alone; the audience
HAMILTON_CAST: list[set[str]] = [
    {"lin-manuel-miranda", "alex-lacamoire"},
    {"alex-lacamoire"},
    {"lin-manuel-miranda"},
    set(),
]
PIPELINE_TIMEOUT_S = 1800


def facepipe_env(home: Path, reid: bool) -> dict[str, str]:
    """The environment of one run: a fresh data directory, a private Redis (no
    ``REDIS_URL``), the default configuration, no metrics port (other runs on the machine
    may hold 9108); ``reid=False`` sets ``tracker.reid_window`` to 0 (no merges)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FACEPIPE_CONFIG", "FACEPIPE_HOME", "REDIS_URL")
        and not k.startswith("FACEPIPE__")
    }
    env["FACEPIPE_HOME"] = str(home)
    env["FACEPIPE__METRICS__PORT"] = "0"
    if not reid:
        env["FACEPIPE__TRACKER__REID_WINDOW"] = "0"
    return env


def iso_ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO time as ``facepipe events --json`` prints it."""
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def store_extras(db: Path, stream: str, session: str) -> tuple[dict[str, list[list[int]]], dict]:
    """From the run's event store (read only): the frames (``seq``) and capture times (ms,
    as the events print them) of each track's samples, and the merges
    (``track_aliases``: merged track uid -> surviving uid). ``facepipe events`` shows
    neither."""
    import sqlalchemy as sa

    from pipeline.commands.events import iso
    from pipeline.store import make_engine, samples, track_aliases

    prefix = f"{stream}/{session}/"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(samples.c.track_uid, samples.c.seq, samples.c.ts)
                .where(samples.c.track_uid.startswith(prefix, autoescape=True))
                .distinct()
            ).all()
            aliases = conn.execute(
                sa.select(track_aliases.c.from_uid, track_aliases.c.into_uid).where(
                    track_aliases.c.from_uid.startswith(prefix, autoescape=True)
                )
            ).all()
    finally:
        engine.dispose()
    by_uid: dict[str, list[list[int]]] = {}
    for uid, seq, ts in rows:
        by_uid.setdefault(uid, []).append([int(seq), iso_ms(iso(ts))])
    for v in by_uid.values():
        v.sort()
    return by_uid, {a.from_uid: a.into_uid for a in aliases}


def facepipe_run(
    video: Path, stream: str, enroll: list[tuple[str, Path]], reid: bool, tag: str
) -> dict[str, Any]:
    """``facepipe run VIDEO --json`` in a fresh ``FACEPIPE_HOME``, then ``facepipe events
    --json`` there; the run's summary, events, samples and merges. stderr goes to
    ``runs/eval_tracking/pipeline/TAG.log``."""
    logs = CACHE / "pipeline"
    logs.mkdir(parents=True, exist_ok=True)
    facepipe = str(REPO / "facepipe")
    with tempfile.TemporaryDirectory(prefix="facepipe-eval-") as tmp:
        home = Path(tmp)
        env = facepipe_env(home, reid)
        cmd = [facepipe, "run", str(video), "--stream", stream, "--json"]
        for name, photo in enroll:
            cmd += ["--enroll", f"{name}={photo}"]
        log_path = logs / f"{tag}.log"
        t0 = time.monotonic()
        with open(log_path, "w") as log:
            proc = subprocess.run(
                cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
                timeout=PIPELINE_TIMEOUT_S, check=False,
            )  # fmt: skip
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"facepipe run exited with {proc.returncode}; see {log_path}")
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        out = subprocess.run(
            [facepipe, "events", "--json", "--stream", stream],
            cwd=REPO, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        events = [json.loads(ln) for ln in out.stdout.splitlines() if ln.strip()]
        session = summary["streams"][stream]["session"]
        samples, aliases = store_extras(home / "events.db", stream, session)
    (logs / f"{tag}.events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (logs / f"{tag}.summary.json").write_text(json.dumps(summary) + "\n")
    (logs / f"{tag}.store.json").write_text(json.dumps({"samples": samples, "aliases": aliases}))
    return {
        "summary": summary,
        "events": [e for e in events if e["session"] == session],
        "samples": samples,
        "aliases": aliases,
        "wall_s": wall,
    }


def frame_bounds(
    evs: list[dict[str, Any]], samples: dict[str, list[list[int]]], n_frames: int, gap: int
) -> dict[str, list[int]]:
    """``[first_lo, first_hi, last_lo, last_hi]`` per event: bounds on its first and last
    frame, sound and exact where they meet.

    Events carry capture times, not frame numbers, and a file is captured as fast as the
    detect queue allows, so times do not map linearly to frames. What is exact: each
    sample's frame and time; capture times increase with the frame; an event's first
    and last seen are the times of its first and last frame; it has ``frames`` distinct
    frames; its first sample is ``gap`` (min_hits - 1) frames or more after its first
    frame (a track is sampled from its confirmation on). A time later than a frame known
    to be at or after frame ``s`` lies after ``s``, and so on: the bounds are narrowed
    with every known time (samples, and events' first and last frames) until nothing
    changes. Times are compared in whole milliseconds (as printed), strictly.
    """
    exact = sorted({(s, ms) for rows in samples.values() for s, ms in rows})
    b: dict[str, list[int]] = {}
    for e in evs:
        seqs = [s for s, _ in samples.get(e["uid"], [])]
        b[e["uid"]] = [
            0,
            min(seqs) - gap if seqs else n_frames - 1,
            max(seqs) if seqs else 0,
            n_frames - 1,
        ]
    changed = True
    while changed:
        changed = False
        # (s, t): a frame at or after s (lo) / at or before s (hi) was captured at t
        lo_at = (
            exact
            + [(b[e["uid"]][0], e["F"]) for e in evs]
            + [(b[e["uid"]][2], e["L"]) for e in evs]
        )
        hi_at = (
            exact
            + [(b[e["uid"]][1], e["F"]) for e in evs]
            + [(b[e["uid"]][3], e["L"]) for e in evs]
        )
        for e in evs:
            cur = b[e["uid"]]
            new = list(cur)
            for k, t in ((0, e["F"]), (2, e["L"])):
                new[k] = max(new[k], max((s + 1 for s, a in lo_at if a < t), default=0))
                new[k + 1] = min(
                    new[k + 1], min((s - 1 for s, a in hi_at if a > t), default=n_frames - 1)
                )
            new[2] = max(new[2], new[0] + e["frames"] - 1)
            new[1] = min(new[1], new[3] - e["frames"] + 1)
            if new != cur:
                b[e["uid"]], changed = new, True
    for uid, (f0, f1, l0, l1) in b.items():
        if f0 > f1 or l0 > l1:
            raise ValueError(f"{uid}: inconsistent frame bounds {b[uid]} (times not monotonic?)")
    return b


def shots_of(lo: int, hi: int, cuts: list[int]) -> set[int]:
    """Indices of the shots that frames ``lo..hi`` touch."""
    if lo > hi:
        return set()
    return set(range(bisect.bisect_right(cuts, lo), bisect.bisect_right(cuts, hi) + 1))


def min_tracks(cast: list[set[str]], person: str) -> int:
    """Runs of consecutive shots with ``person`` on screen: no track continues across a
    cut, so the fewest tracks (events) the person can have."""
    on = [person in c for c in cast]
    return sum(1 for i, x in enumerate(on) if x and (i == 0 or not on[i - 1]))


def analyze_run(
    run: dict[str, Any],
    stream: str,
    gap: int,
    cuts: list[int] | None = None,
    cast: list[set[str]] | None = None,
) -> dict[str, Any]:
    """Events, events per person, merges, the longest event; with ``cuts``/``cast``: each
    event's frames and shots, and names on events in shots without that person."""
    summary = run["summary"]
    st = summary["streams"][stream]
    captured = st.get("captured", 0)
    session = st["session"]
    into: dict[str, list[int]] = {}
    for frm, to in run["aliases"].items():
        into.setdefault(to, []).append(int(frm.rsplit("/", 1)[1]))
    evs = []
    for e in run["events"]:
        uid = f"{stream}/{session}/{e['track']}"
        evs.append(
            {
                "id": e["id"],
                "uid": uid,
                "track": e["track"],
                "label": e["person"] if e["person"] != "unknown" else e["unknown_id"] or "unknown",
                "named": e["person"] != "unknown",
                "frames": e["frames"],
                "identity_samples": e["identity_samples"],
                "F": iso_ms(e["first_seen"]),
                "L": iso_ms(e["last_seen"]),
                "sample_frames": sorted({s for s, _ in run["samples"].get(uid, [])}),
                "merged_from": sorted(into.get(uid, [])),
                "exact": [e.get("first_frame"), e.get("last_frame")],
            }
        )
    # frame numbers: the events' own first_frame/last_frame when the store has them, else
    # bounds from the capture times (checked against the exact ones when both exist)
    bounds = frame_bounds(evs, run["samples"], captured, gap)
    violations = 0
    for e in evs:
        f, last = e["exact"]
        if f is None or last is None:
            continue
        f0, f1, l0, l1 = bounds[e["uid"]]
        violations += not (f0 <= f <= f1 and l0 <= last <= l1)
        bounds[e["uid"]] = [f, f, last, last]
    exact_frames = all(None not in e["exact"] for e in evs)
    out: dict[str, Any] = {
        "session": session,
        "captured": captured,
        "processed": st.get("processed", 0),
        "seconds": summary["seconds"],
        "failed_jobs": summary["failed_jobs"],
        "events": len(evs),
        "per_person": dict(Counter(e["label"] for e in evs).most_common()),
        "merges": len(run["aliases"]),
        "longest_event_frames": max((e["frames"] for e in evs), default=0),
        "summary_people": summary["people"],
        "frames_from": "events (first_frame, last_frame)" if exact_frames else "capture times",
        "time_bounds_violations": violations,
    }
    detail = []
    for e in evs:
        f0, f1, l0, l1 = bounds[e["uid"]]
        row = {k: e[k] for k in ("id", "track", "label", "frames", "identity_samples")}
        row |= {
            "sample_frames": e["sample_frames"],
            "merged_from": e["merged_from"],
            "first_frame": [f0, f1],
            "last_frame": [l0, l1],
        }
        if cuts is not None and cast is not None:
            sure = {bisect.bisect_right(cuts, s) for s in e["sample_frames"]}
            for lo, hi in ((f0, f1), (l0, l1)):
                if len(shots_of(lo, hi, cuts)) == 1:
                    sure |= shots_of(lo, hi, cuts)
            possible = sure | shots_of(f0, f1, cuts) | shots_of(l0, l1, cuts)
            if not e["merged_from"]:  # one track: every frame between first and last
                sure |= shots_of(f1, l0, cuts)
                possible |= shots_of(f0, l1, cuts)
            row["shots"], row["shots_possible"] = sorted(sure), sorted(possible)
            wrong = None
            if e["named"]:
                if any(e["label"] not in cast[i] for i in sure):
                    wrong = "certain"
                elif any(e["label"] not in cast[i] for i in possible):
                    wrong = "possible"
            row["wrong_name"] = wrong
        detail.append(row)
    out["event_detail"] = detail
    if cuts is not None and cast is not None:
        people = sorted(set().union(*cast))
        out["wrong_names"] = {
            k: sum(1 for r in detail if r["wrong_name"] == k) for k in ("certain", "possible")
        }
        out["named_events"] = {p: sum(1 for e in evs if e["label"] == p) for p in people}
        out["min_events"] = {p: min_tracks(cast, p) for p in people}
    return out


def pipeline_eval(clips: list[Path], root: Path, runs: int) -> dict[str, Any]:
    """Each YouTube Faces clip and the Hamilton clip (both people enrolled) through
    ``facepipe run``, re-identification on (defaults) and off, ``runs`` times each."""
    from pipeline.config import TrackerConfig

    gap = TrackerConfig().min_hits - 1  # at detection on every frame (the default)
    jobs: list[tuple[str, Path, list[tuple[str, Path]], list[int] | None]] = []
    for clip in clips:
        videos = sorted(clip.glob("*.avi"))
        if videos:
            jobs.append((clip.name, videos[0], [], None))
    video = root.parent / "video" / HAMILTON
    if video.exists():
        cuts = shot_cuts(video)
        if cuts != HAMILTON_CUTS:
            raise RuntimeError(f"{video.name}: shot cuts {cuts}, expected {HAMILTON_CUTS}")
        known = sorted((video.parent / "known").glob("*.png"))
        jobs.append(("hamilton", video, [(p.stem, p) for p in known], cuts))
    result: dict[str, Any] = {
        "command": "python scripts/eval_tracking.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "uncommitted": subprocess.run(
            ["git", "status", "--porcelain", "--", "pipeline", "workers", "config"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.splitlines(),
        "runs_per_setting": runs,
        "clips": [],
    }
    for stream, path, enroll, cuts in jobs:
        entry: dict[str, Any] = {
            "clip": stream,
            "video": path.name,
            "enrolled": [n for n, _ in enroll],
            "runs": [],
        }
        if cuts is not None:
            entry["cuts"] = cuts
            entry["cast"] = [sorted(c) for c in HAMILTON_CAST]
        for reid in (True, False):
            for i in range(1, runs + 1):
                tag = f"{stream}-reid-{'on' if reid else 'off'}-{i}"
                print(f"facepipe run: {tag}", flush=True)
                raw = facepipe_run(path, stream, enroll, reid, tag)
                res = analyze_run(raw, stream, gap, cuts, HAMILTON_CAST if cuts else None)
                entry["runs"].append({"reid": reid, "run": i, "wall_s": raw["wall_s"], **res})
        result["clips"].append(entry)
    return result


def fmt_frames(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}~{hi}"


def render_pipeline(p: dict[str, Any]) -> list[str]:
    lines = [
        "### Identity through the pipeline: `facepipe run`",
        "",
        f"Command: `{p['command']}` (commit {p['git']}"
        + (
            ", uncommitted changes to "
            + ", ".join(f"`{ln[3:]}`" for ln in p["uncommitted"])
            + " in the tree"
            if p.get("uncommitted")
            else ""
        )
        + f"), {p['date']}; load average at start "
        f"{p['loadavg_start']}. Each run: `./facepipe run VIDEO --stream NAME --json` "
        "(default configuration, fresh `FACEPIPE_HOME`, private Redis, metrics port off), "
        "then `./facepipe events --json`; re-identification on = defaults "
        "(`tracker.reid_window` 60, `reid_threshold` 0.5), off = "
        f"`FACEPIPE__TRACKER__REID_WINDOW=0`; {p['runs_per_setting']} run(s) per setting. "
        "Merges are read from the run's `track_aliases` table.",
        "",
        "| clip | re-identification | run | events | events per person | merges "
        "| longest event / frames captured | wrong names (certain / possible) "
        "| named events per person (minimum) | run time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in p["clips"]:
        for r in c["runs"]:
            per = ", ".join(f"{k} {v}" for k, v in r["per_person"].items())
            wrong = (
                f"{r['wrong_names']['certain']} / {r['wrong_names']['possible']}"
                if "wrong_names" in r
                else "-"
            )
            named = (
                ", ".join(f"{k} {v} ({r['min_events'][k]})" for k, v in r["named_events"].items())
                if "named_events" in r
                else "-"
            )
            lines.append(
                f"| {c['clip']} | {'on' if r['reid'] else 'off'} | {r['run']} | {r['events']} "
                f"| {per} | {r['merges']} | {r['longest_event_frames']} / {r['captured']} "
                f"| {wrong} | {named} | {r['seconds']:.0f} s |"
            )
    for c in p["clips"]:
        if "cuts" not in c:
            continue
        starts = [0, *c["cuts"]]
        ends = [s - 1 for s in c["cuts"]] + [None]
        shot = [f"{a}-{b}" if b is not None else f"{a}-" for a, b in zip(starts, ends, strict=True)]
        lines += [
            "",
            f"Named events on `{c['video']}` (enrolled: {', '.join(c['enrolled'])}); shots "
            + "; ".join(
                f"{s}: {', '.join(who) or 'neither'}"
                for s, who in zip(shot, c["cast"], strict=True)
            )
            + ". Frames: first..last, `a~b` where the capture times only bound it "
            "(events carry times, not frame numbers; see the text).",
            "",
            "| re-identification | run | event (track) | person | frames | first..last frame "
            "| shots | sampled frames | merged tracks | wrong name |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in c["runs"]:
            for e in r["event_detail"]:
                if e["label"] not in set().union(*map(set, c["cast"])):
                    continue
                sh = ", ".join(shot[i] for i in e["shots"])
                extra = [shot[i] for i in e["shots_possible"] if i not in e["shots"]]
                if extra:
                    sh += " (maybe " + ", ".join(extra) + ")"
                lines.append(
                    f"| {'on' if r['reid'] else 'off'} | {r['run']} | {e['id']} ({e['track']}) "
                    f"| {e['label']} | {e['frames']} "
                    f"| {fmt_frames(*e['first_frame'])}..{fmt_frames(*e['last_frame'])} "
                    f"| {sh} | {', '.join(map(str, e['sample_frames']))} "
                    f"| {', '.join(map(str, e['merged_from'])) or '-'} "
                    f"| {e['wrong_name'] or 'no'} |"
                )
    lines.append("")
    return lines


# ----- speed -------------------------------------------------------------------------
def synthetic_speed(n_faces: int = 5, n_frames: int = 600) -> dict[str, Any]:
    """µs per update on 5 moving faces; also with a JSON round trip per call."""
    rng = np.random.default_rng(0)
    starts = rng.uniform(50, 500, (n_faces, 2))
    vel = rng.uniform(-3, 3, (n_faces, 2))
    encs = rng.normal(0, 0.09, (n_faces, 128))
    result: dict[str, Any] = {"faces": n_faces, "frames": n_frames}
    for name, use_enc, roundtrip in (
        ("iou", False, False),
        ("kalman", False, False),
        ("kalman+appearance", True, False),
        ("kalman, with JSON round trip", False, True),
    ):
        tracker: Any = IoUTracker(min_hits=3) if name == "iou" else KalmanTracker(min_hits=3)
        times = []
        for seq in range(n_frames):
            faces = []
            for k in range(n_faces):
                x, y = starts[k] + vel[k] * (seq % 100)
                e = (encs[k] + rng.normal(0, 0.01, 128)).tolist() if use_enc else None
                faces.append(Face(box=(x, y, 60, 60), encoding=e))
            t0 = time.perf_counter()
            if roundtrip:
                tracker = KalmanTracker.from_dict(json.loads(json.dumps(tracker.to_dict())))
            tracker.update(faces, seq)
            times.append((time.perf_counter() - t0) * 1e6)
        result[name] = {
            **percentiles(times),
            "tracks": len(tracker.tracks),
            "state_bytes": len(json.dumps(tracker.to_dict())),
        }
    return result


def percentiles(times: list[float]) -> dict[str, float]:
    arr = np.asarray(times)
    return {"median_us": float(np.median(arr)), "p99_us": float(np.percentile(arr, 99))}


# ----- report ------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    return machine_info(numpy=np.__version__, opencv=cv2.__version__)


def render(report: dict[str, Any]) -> str:
    lines = (
        []
        if "clips" not in report
        else [
            f"Command: `{report['command']}`  ",
            f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, no GPU, "
            f"Python {report['machine']['python']}, numpy {report['machine']['numpy']}; "
            f"load average at start {report['machine']['loadavg_start']}.  ",
            f"Detector: `{report['detector']}` {json.dumps(report['options'])}; trackers: "
            f"min_hits={report['params']['min_hits']}, max_missed={report['params']['max_missed']}"
            f" frames, other parameters at their defaults. Date: {report['date']}.",
            "",
        ]
    )
    for clip in report.get("clips", []):
        lines += [
            f"### {clip['clip']} ({clip['frames']} labelled frames, "
            f"{clip['frame_size'][1]}x{clip['frame_size'][0]}, detector "
            f"{clip['detector_ms_median']:.1f} ms/frame)",
            "",
            "| regime | tracker | id switches | track ids | false ids | frames covered "
            "(IoU >= 0.5) | worst run | by the main id |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for reg in clip["regimes"]:
            lines.append(
                f"| {reg['regime']} | detector alone | - | - | - | {reg['detector_only']:.1%} | | |"
            )
            for name, s in reg["trackers"].items():
                runs = f" ({s['runs']} runs)" if s["runs"] > 1 else ""
                lines.append(
                    f"| {reg['regime']}{runs} | {name} | {s['id_switches']:.2g} "
                    f"(max {s['max_id_switches']}) | {s['track_ids']:.2g} | "
                    f"{s['false_track_ids']:.2g} | {s['coverage']:.1%} | "
                    f"{s['worst_coverage']:.1%} | {s['main_id_coverage']:.1%} |"
                )
        sens = clip["sensitivity"]
        names = [k for k, v in sens[0].items() if isinstance(v, dict) and "coverage" in v]
        cuts = "cut_crossings" in sens[0]
        lines += [
            "",
            f"Sensitivity (KalmanTracker, encodings: {sens[0]['mode']}; one parameter changed; "
            "frames covered / mean id switches, averaged over each regime's runs"
            + (
                "; last column: Hamilton-clip tracks across a shot cut without encodings, "
                "detection every frame / every 3rd frame"
                if cuts
                else ""
            )
            + "):",
            "",
            "| variant | " + " | ".join(names) + (" | tracks across a cut |" if cuts else " |"),
            "|---|" + "---|" * (len(names) + int(cuts)),
        ]
        for row in sens:
            lines.append(
                f"| {row['variant']} | "
                + " | ".join(
                    f"{row[n]['coverage']:.1%} / {row[n]['id_switches']:.2g}" for n in names
                )
                + (f" | {row['cut_crossings'][0]} / {row['cut_crossings'][1]} |" if cuts else " |")
            )
        lines += [
            "",
            "update() time on this clip (every frame, µs): "
            + ", ".join(
                f"{k} median {v['median_us']:.0f} / p99 {v['p99_us']:.0f}"
                for k, v in clip["update_us"].items()
            ),
            "",
        ]
    if report.get("two_people"):
        tp = report["two_people"]
        names = list(tp["rows"][0]["tracks_per_person"])
        lines += [
            f"### Two people: `{tp['video']}` ({tp['info']['frames']} frames, "
            f"{tp['info']['frame_size'][1]}x{tp['info']['frame_size'][0]}; no box labels, "
            "faces named by the nearest enrolment photo within 0.6)",
            "",
            f"Shot cuts (frames starting a new shot): {tp['cuts']}.",
            "",
            "| regime | tracker | tracks | tracks across a cut | "
            + " | ".join(f"tracks of {n}" for n in names)
            + " | unnamed tracks | mixed tracks (minority faces) |",
            "|---|---|---|---|" + "---|" * len(names) + "---|---|",
        ]
        for r in tp["rows"]:
            lines.append(
                f"| {r['regime']} | {r['tracker']} | {r['tracks']} | {r['tracks_across_cuts']} | "
                + " | ".join(str(r["tracks_per_person"][n]) for n in names)
                + f" | {r['unnamed_tracks']} | {r['mixed_tracks']} "
                f"({r['minority_faces_in_mixed']}) |"
            )
        lines.append("")
    sp = report.get("synthetic_speed")
    if sp:
        lines += [
            f"update() time, synthetic stream of {sp['faces']} moving faces x {sp['frames']} "
            "frames (µs):",
            "",
            "| tracker | median | p99 | JSON state at the end |",
            "|---|---|---|---|",
        ]
        for k, v in sp.items():
            if isinstance(v, dict):
                lines.append(
                    f"| {k} | {v['median_us']:.0f} | {v['p99_us']:.0f} | "
                    f"{v['state_bytes'] / 1024:.1f} KiB ({v['tracks']} tracks) |"
                )
        lines.append("")
    if report.get("pipeline"):
        lines += render_pipeline(report["pipeline"])
    return "\n".join(lines).rstrip("\n")


def write_docs(report: dict[str, Any]) -> None:
    write_results(DOCS_JSON, DOCS_MD, report, render(report), "Tracking")
    print(f"wrote {DOCS_MD.relative_to(REPO)} and {DOCS_JSON.relative_to(REPO)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", default="blazeface")
    ap.add_argument("--options", default='{"tile_size": 384}', help="detector options, JSON")
    ap.add_argument("--source", choices=("avi", "jpg"), default="avi")
    ap.add_argument("--clips", help="comma-separated clip folder names (default: all)")
    ap.add_argument("--encodings", action="store_true", help="also track with dlib encodings")
    ap.add_argument("--min-hits", type=int, default=3)
    ap.add_argument("--max-missed", type=int, default=15)
    ap.add_argument(
        "--no-video", action="store_true", help="skip the two-person Hamilton clip section"
    )
    ap.add_argument(
        "--pipeline",
        action="store_true",
        help="also run each clip through `facepipe run` (re-identification on and off) "
        "and report events, merges and, on the Hamilton clip, wrong names",
    )
    ap.add_argument(
        "--pipeline-only",
        action="store_true",
        help="only the --pipeline part; the other results stay as in docs/tracking-results.json",
    )
    ap.add_argument(
        "--pipeline-runs", type=int, default=3, help="runs per clip and setting (default 3)"
    )
    ap.add_argument("--no-docs", action="store_true", help="print, do not write docs/")
    args = ap.parse_args(argv)
    try:
        options = json.loads(args.options)
        root = require(DATASET)
    except (json.JSONDecodeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    clips = sorted(p for p in root.iterdir() if p.is_dir())
    if args.clips:
        wanted = set(args.clips.split(","))
        clips = [c for c in clips if c.name in wanted]
    if not clips:
        print("error: no clips", file=sys.stderr)
        return 2

    if args.pipeline_only:
        report = json.loads(DOCS_JSON.read_text()) if DOCS_JSON.exists() else {}
        report["pipeline"] = pipeline_eval(clips, root, args.pipeline_runs)
        print(render(report))
        if not args.no_docs:
            write_docs(report)
        return 0

    mh, mm = args.min_hits, args.max_missed
    trackers: dict[str, tuple[TrackerFactory, str]] = {
        "iou": (lambda: IoUTracker(iou_threshold=0.3, max_missed=mm, min_hits=mh), "none"),
        "kalman": (lambda: KalmanTracker(max_missed=mm, min_hits=mh), "none"),
    }
    if args.encodings:
        trackers["kalman, encodings on samples"] = (
            lambda: KalmanTracker(max_missed=mm, min_hits=mh),
            "observe",
        )
        trackers["kalman, encodings on all faces"] = (
            lambda: KalmanTracker(max_missed=mm, min_hits=mh),
            "faces",
        )

    report: dict[str, Any] = {
        "command": "python scripts/eval_tracking.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "detector": args.detector,
        "options": options,
        "params": {"min_hits": mh, "max_missed": mm},
        "clips": [],
    }
    video_data = None
    if args.encodings and not args.no_video:
        video = root.parent / "video" / "short_hamilton_clip.mp4"
        if video.exists():
            print(f"{video.name}: detecting and encoding", flush=True)
            vframes, known, names, info = video_detections(video, args.detector, options)
            cuts = shot_cuts(video)
            video_data = (vframes, cuts)
            report["two_people"] = {
                "video": video.name,
                "info": info,
                "cuts": cuts,
                "rows": two_people(vframes, known, names, trackers, cuts),
            }
    for clip in clips:
        print(f"{clip.name}: detecting", flush=True)
        frames, labels, timing = detections(
            clip, args.source, args.detector, options, args.encodings
        )
        entry: dict[str, Any] = {"clip": clip.name, "frames": len(labels), **timing}
        by_regime: dict[str, dict[str, Any]] = {}
        for name, run_on, drop in regimes(len(frames)):
            reg = by_regime.setdefault(
                name, {"regime": name, "detector_only": [], "runs": {k: [] for k in trackers}}
            )
            reg["detector_only"].append(
                detector_only(
                    frames, labels, [r and not (drop and i in drop) for i, r in enumerate(run_on)]
                )
            )
            for tname, (make, mode) in trackers.items():
                tracked, _ = run_tracker(make, frames, run_on, mode, drop)
                reg["runs"][tname].append(score(tracked, labels))
        entry["regimes"] = [
            {
                "regime": r["regime"],
                "detector_only": statistics.mean(r["detector_only"]),
                "trackers": {k: mean_scores(v) for k, v in r["runs"].items()},
                "per_run": r["runs"],
            }
            for r in by_regime.values()
        ]
        entry["sensitivity"] = sensitivity(
            frames,
            labels,
            "observe" if args.encodings else "none",
            {"min_hits": mh, "max_missed": mm},
            video_data,
        )
        entry["update_us"] = {
            tname: percentiles(run_tracker(make, frames, [True] * len(frames), mode)[1])
            for tname, (make, mode) in trackers.items()
        }
        report["clips"].append(entry)
    report["synthetic_speed"] = synthetic_speed()
    if args.pipeline:
        report["pipeline"] = pipeline_eval(clips, root, args.pipeline_runs)
    print(render(report))
    if not args.no_docs:
        write_docs(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
