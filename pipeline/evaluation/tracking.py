"""Tracking evaluation: the track stage's code on labelled clips, and its metrics.

Every run goes through the product: detections from a detector of the registry, shot
cuts from :class:`pipeline.shots.CutDetector` on every frame as the capture marks them
(``capture.shot_cut_threshold``, with its downscale), frames handed one by one to
:class:`pipeline.tracking.stream.StreamTracker` (the track stage's per-stream logic:
ids, ends at cuts, predicted boxes on frames detection skipped, sampling by quality)
with the configured ``tracker`` and ``sampling`` sections. The boxes a frame reports are
the faces of the frame record that carry a track id after the step (what the sink
records). With encodings, the faces the track stage samples are encoded as the recognize
stage encodes them (its encoder, the face's full quality) and given back with
:meth:`StreamTracker.observe` right after the frame (re-identification); merged tracks
are relabelled in every frame, as the event store folds their events.

Metrics per clip (:func:`score`): identity switches (the id of the track matched to the
labelled face at IoU >= 0.5 changes between matched frames), confirmed track ids, false
ids, and the share of labelled frames whose face is covered by a reported box at IoU >=
0.5 (overall and by the main id).
"""

from __future__ import annotations

import hashlib
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.boxes import iou_xywh as iou
from pipeline.config import SamplingConfig, TrackerConfig
from pipeline.record import Box, Face, FrameRecord
from pipeline.tracking.kalman import KalmanTracker
from pipeline.tracking.stream import StreamState, StreamTracker

MATCH_IOU = 0.5
DROP_RATE, DROP_SEEDS = 0.3, 5
FPS = 30.0
Detections = list[list[dict[str, Any]]]  # per frame: Face.to_dict() rows (+ "quality")


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
        out.append((name, (cx - w / 2.0, cy - h / 2.0, w, h)))  # type: ignore[arg-type]
    return out


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, BGR as the capture reads them."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def shot_cuts(frames_bgr: Sequence[np.ndarray], threshold: float | None) -> list[int]:
    """Frames the capture marks as a shot's first (``FrameRecord.cut``): the product's
    :class:`pipeline.shots.CutDetector` fed every frame; ``threshold`` None: never."""
    from pipeline.shots import CutDetector

    if threshold is None:
        return []
    det = CutDetector(threshold)
    return [i for i, bgr in enumerate(frames_bgr) if det.update(bgr)]


def detect_frames(
    frames_bgr: Sequence[np.ndarray],
    detector: Any,
    encoder: Any | None = None,
) -> tuple[Detections, list[float]]:
    """Faces of every frame (``Face.to_dict()`` rows) and the detector's ms per frame.

    With ``encoder`` (the recognize stage's) each face also gets its ``encoding`` and its
    full ``quality`` (size x sharpness x frontal pose), as the recognize stage computes
    them for a sampled face.
    """
    import cv2

    from pipeline.recognition.quality import face_quality

    out: Detections = []
    ms = []
    for bgr in frames_bgr:
        rgb = np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        t0 = time.perf_counter()
        faces = detector.detect(rgb)
        ms.append((time.perf_counter() - t0) * 1000.0)
        rows = [f.to_dict() for f in faces]
        if encoder is not None and faces:
            vectors, marks = encoder.encode_with_landmarks(rgb, faces)
            for row, f, vec, lm in zip(rows, faces, vectors, marks, strict=True):
                row["encoding"] = [round(float(x), 6) for x in vec]
                row["quality"] = round(face_quality(rgb, f, lm), 4)
        out.append(rows)
    return out, ms


def cached(path: Path, compute: Any) -> Any:
    """JSON at ``path``, or ``compute()`` written there."""
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return value


def cache_key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ----- running the track stage's code ------------------------------------------------
@dataclass
class StreamRun:
    """What one pass of a clip through :class:`StreamTracker` reported."""

    boxes: list[dict[int, Box]]  # per frame: final track id -> reported box
    faces: list[list[tuple[int, int]]]  # per frame: (detection index, final track id)
    times_us: list[float] = field(default_factory=list)  # step() (+ observe) per frame
    samples: int = 0  # faces sent to recognition
    merges: int = 0


def run_stream(
    frames: Detections,
    tracker: TrackerConfig,
    sampling: SamplingConfig,
    run_on: Sequence[bool] | None = None,
    drop: set[int] | None = None,
    cuts: Sequence[int] = (),
    encodings: str = "none",
    make_tracker: Any = None,
    min_quality: float = 0.0,
) -> StreamRun:
    """Feed a clip's detections frame by frame to the track stage's :class:`StreamTracker`.

    ``run_on[i]`` False: detection skipped frame ``i`` (the capture's
    ``detector.every_n_frames``); ``drop``: frames whose detection ran but found nothing;
    ``cuts``: frames the capture marks as a new shot. ``encodings``: ``"none"``;
    ``"observe"`` (the pipeline: the sampled faces' encodings come back through
    :meth:`StreamTracker.observe`); ``"faces"`` (every face carries its encoding into the
    tracker's update: an upper bound, not the product). ``make_tracker``: a tracker
    object to use instead of the configured one (parameter studies).
    """
    n = len(frames)
    run_on = [True] * n if run_on is None else list(run_on)
    state = StreamState(make_tracker()) if make_tracker is not None else None
    st = StreamTracker(tracker, sampling, state=state, min_quality=min_quality)
    cut_set = set(cuts)
    out = StreamRun(boxes=[], faces=[])
    merged: dict[int, int] = {}
    for seq, (dets, ran) in enumerate(zip(frames, run_on, strict=True)):
        rec = FrameRecord(
            stream="eval", session="eval", seq=seq, ts=seq / FPS, detected=ran,
            cut=seq in cut_set, last=seq == n - 1,
        )  # fmt: skip
        index: dict[tuple[int, ...], int] = {}
        if ran and not (drop and seq in drop):
            for i, d in enumerate(dets):
                face = Face.from_dict({k: v for k, v in d.items() if k != "quality"})
                if encodings != "faces":
                    face.encoding = None
                face.quality = None
                index[tuple(face.box)] = i
                rec.faces.append(face)
        t0 = time.perf_counter()
        rec, samples = st.step(rec)
        if encodings == "observe":
            for sample in samples:
                faces = []
                for f in sample.faces:
                    row = frames[sample.seq][_find(frames[sample.seq], f.box)]
                    faces.append(
                        Face(
                            box=f.box, track_id=f.track_id, encoding=row["encoding"],
                            quality=row.get("quality"),
                        )
                    )  # fmt: skip
                for old, into in st.observe(faces).merged:
                    merged[old] = into
        if ran:
            out.times_us.append((time.perf_counter() - t0) * 1e6)
        out.samples += sum(len(s.faces) for s in samples)
        out.boxes.append({f.track_id: f.box for f in rec.faces if f.track_id is not None})
        out.faces.append(
            [(index[tuple(f.box)], f.track_id) for f in rec.faces if f.track_id is not None]
            if rec.detected
            else []
        )

    def final(i: int) -> int:
        while i in merged:
            i = merged[i]
        return i

    out.merges = len(merged)
    if merged:
        out.boxes = [{final(i): b for i, b in fr.items()} for fr in out.boxes]
        out.faces = [[(d, final(i)) for d, i in fr] for fr in out.faces]
    return out


def _find(rows: list[dict[str, Any]], box: Sequence[int]) -> int:
    for i, r in enumerate(rows):
        if tuple(r["box"]) == tuple(box):
            return i
    raise KeyError(f"no detection with box {box}")


# ----- metrics -----------------------------------------------------------------------
def score(tracked: list[dict[int, Box]], labels: list[tuple[str, Box]]) -> dict[str, Any]:
    """Identity switches, track ids, and share of frames covered at IoU >= 0.5."""
    matched: list[int | None] = []
    for boxes, (_, truth) in zip(tracked, labels, strict=True):
        best = max(boxes.items(), key=lambda kv: iou(kv[1], truth), default=None)
        ok = best is not None and iou(best[1], truth) >= MATCH_IOU
        matched.append(best[0] if ok else None)  # type: ignore[index]
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


def detector_only(frames: Detections, labels: list[tuple[str, Box]], run_on: list[bool]) -> float:
    """Share of labelled frames with a raw detection at IoU >= 0.5 (no tracking)."""
    hit = 0
    for dets, (_, truth), ran in zip(frames, labels, run_on, strict=True):
        if ran and any(iou(d["box"], truth) >= MATCH_IOU for d in dets):
            hit += 1
    return hit / len(labels)


def regimes(n: int) -> list[tuple[str, list[bool], set[int] | None]]:
    """(name, detection ran on frame i, dropped frames) for each regime: every frame; every
    2nd / 3rd frame, each phase (phase 0 is the capture's ``detector.every_n_frames``
    schedule); every frame with a random 30 % of the detections dropped (5 seeds)."""
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


def tracks_across_cuts(run: StreamRun, cuts: Sequence[int]) -> int:
    """Tracks (after merges) with faces on both sides of a shot cut."""
    seen: dict[int, list[int]] = {}
    for seq, faces in enumerate(run.faces):
        for _, tid in faces:
            seen.setdefault(tid, []).append(seq)
    return sum(1 for v in seen.values() if any(min(v) < c <= max(v) for c in cuts))


def name_faces(
    frames: Detections, known: list[list[float]], names: list[str], within: float = 0.6
) -> list[list[str | None]]:
    """Each detection's pseudo-label: the enrolled person whose photo encoding is nearest,
    if within ``within`` (dlib's operating point), else None."""
    gallery = np.asarray(known)
    out = []
    for dets in frames:
        row = []
        for d in dets:
            dist = np.linalg.norm(gallery - np.asarray(d["encoding"]), axis=1)
            row.append(names[int(np.argmin(dist))] if dist.min() <= within else None)
        out.append(row)
    return out


def people_per_track(
    run: StreamRun, labels: list[list[str | None]], names: list[str]
) -> dict[str, Any]:
    """Tracks, tracks per person (a track's majority label), unnamed tracks, and mixed
    tracks (faces labelled as another person too) with their minority faces."""
    per_track: dict[int, Counter[str | None]] = {}
    for seq, faces in enumerate(run.faces):
        for d, tid in faces:
            per_track.setdefault(tid, Counter())[labels[seq][d]] += 1
    by_person: Counter[str] = Counter()
    mixed_tracks = mixed_faces = unnamed = 0
    for counts in per_track.values():
        named = Counter({k: v for k, v in counts.items() if k is not None})
        if not named:
            unnamed += 1
            continue
        person, n = named.most_common(1)[0]
        by_person[person] += 1  # type: ignore[index]
        if len(named) > 1:
            mixed_tracks += 1
            mixed_faces += sum(named.values()) - n
    return {
        "tracks": len(per_track),
        "tracks_per_person": {n: by_person.get(n, 0) for n in names},
        "unnamed_tracks": unnamed,
        "mixed_tracks": mixed_tracks,
        "minority_faces_in_mixed": mixed_faces,
    }


def percentiles(times: list[float]) -> dict[str, float]:
    arr = np.asarray(times)
    return {"median_us": float(np.median(arr)), "p99_us": float(np.percentile(arr, 99))}


# ----- parameter study ---------------------------------------------------------------
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


def kalman_params(cfg: TrackerConfig) -> dict[str, Any]:
    """The configured KalmanTracker's constructor arguments (what the stage builds)."""
    from pipeline.tracking.stream import new_tracker

    t = new_tracker(cfg.model_copy(update={"model": "kalman"}))
    assert isinstance(t, KalmanTracker)
    names = (
        "iou_threshold", "max_missed", "min_hits", "max_tentative_missed",
        "reid_threshold", "reid_merge", "reid_window", "reid_margin",
    )  # fmt: skip
    return {k: getattr(t, k) for k in names}


# ----- speed -------------------------------------------------------------------------
def synthetic_speed(
    tracker: TrackerConfig, sampling: SamplingConfig, n_faces: int = 5, n_frames: int = 600
) -> dict[str, Any]:
    """µs per frame (StreamTracker.step) on 5 moving faces; also with the JSON round trip
    of the stream state the track stage does per hold of the stream."""
    rng = np.random.default_rng(0)
    starts = rng.uniform(50, 500, (n_faces, 2))
    vel = rng.uniform(-3, 3, (n_faces, 2))
    encs = rng.normal(0, 0.09, (n_faces, 128))
    result: dict[str, Any] = {"faces": n_faces, "frames": n_frames}
    for name, model, use_enc, roundtrip in (
        ("iou", "iou", False, False),
        ("kalman", "kalman", False, False),
        ("kalman+appearance", "kalman", True, False),
        ("kalman, with JSON round trip", "kalman", False, True),
    ):
        cfg = tracker.model_copy(update={"model": model})
        st = StreamTracker(cfg, sampling)
        times = []
        for seq in range(n_frames):
            faces = []
            for k in range(n_faces):
                x, y = starts[k] + vel[k] * (seq % 100)
                e = (encs[k] + rng.normal(0, 0.01, 128)).tolist() if use_enc else None
                faces.append(Face(box=(x, y, 60, 60), encoding=e))
            rec = FrameRecord(stream="s", session="s", seq=seq, ts=seq / FPS, faces=faces)
            t0 = time.perf_counter()
            if roundtrip:
                state = StreamState.from_dict(json.loads(json.dumps(st.state.to_dict())), cfg)
                st = StreamTracker(cfg, sampling, state=state)
            st.step(rec)
            times.append((time.perf_counter() - t0) * 1e6)
        result[name] = {
            **percentiles(times),
            "tracks": len(st.tracker.tracks),
            "state_bytes": len(json.dumps(st.state.to_dict())),
        }
    return result


# ----- report ------------------------------------------------------------------------
def _params(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items())


def render(report: dict[str, Any]) -> str:
    lines = (
        []
        if "clips" not in report
        else [
            f"Command: `{report['command']}`  ",
            f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, no GPU, "
            f"Python {report['machine']['python']}, numpy {report['machine']['numpy']}; "
            f"load average at start {report['machine']['loadavg_start']}.  ",
            f"Detector: `{report['detector']}` {json.dumps(report['options'])}; the track "
            "stage's StreamTracker with the configured tracker section "
            f"({_params(report['params'])}, other Kalman parameters at their defaults), "
            f"sampling {_params(report.get('sampling', {}))}, shot cuts by the capture's "
            f"CutDetector (threshold {report.get('shot_cut_threshold')}). "
            f"Date: {report['date']}.",
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
            "Time per frame on this clip (StreamTracker.step incl. sampling, + observe with "
            "encodings on samples; detection every frame, µs): "
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
            f"StreamTracker.step time, synthetic stream of {sp['faces']} moving faces x "
            f"{sp['frames']} "
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
        from pipeline.evaluation.tracking_pipeline import render_pipeline

        lines += render_pipeline(report["pipeline"])
    return "\n".join(lines).rstrip("\n")


# ----- the evaluation ----------------------------------------------------------------
TRACKERS: dict[str, tuple[str, str]] = {  # name -> (tracker.model, encodings mode)
    "iou": ("iou", "none"),
    "kalman": ("kalman", "none"),
    "kalman, encodings on samples": ("kalman", "observe"),
    "kalman, encodings on all faces": ("kalman", "faces"),
}


@dataclass
class Setup:
    """What the product is configured with, and what to run."""

    tracker: TrackerConfig
    sampling: SamplingConfig
    cut_threshold: float | None
    min_quality: float = 0.0  # recognition.min_unknown_quality (observe ignores less)
    encodings: bool = False

    def trackers(self) -> dict[str, tuple[str, str]]:
        return {k: v for k, v in TRACKERS.items() if self.encodings or v[1] == "none"}

    def run(self, frames: Detections, name: str, **kw: Any) -> StreamRun:
        model, mode = TRACKERS[name]
        cfg = self.tracker.model_copy(update={"model": model})
        return run_stream(
            frames, cfg, self.sampling, encodings=mode, min_quality=self.min_quality, **kw
        )


def evaluate_clip(
    setup: Setup,
    frames: Detections,
    labels: list[tuple[str, Box]],
    cuts: list[int],
    video: tuple[Detections, list[int]] | None = None,
) -> dict[str, Any]:
    """Every tracker in every regime, the parameter study and the time per frame."""
    trackers = setup.trackers()
    by_regime: dict[str, dict[str, Any]] = {}
    for name, run_on, drop in regimes(len(frames)):
        reg = by_regime.setdefault(
            name, {"regime": name, "detector_only": [], "runs": {k: [] for k in trackers}}
        )
        ran = [r and not (drop and i in drop) for i, r in enumerate(run_on)]
        reg["detector_only"].append(detector_only(frames, labels, ran))
        for tname in trackers:
            run = setup.run(frames, tname, run_on=run_on, drop=drop, cuts=cuts)
            reg["runs"][tname].append(score(run.boxes, labels))
    entry: dict[str, Any] = {"cuts": cuts}
    entry["regimes"] = [
        {
            "regime": r["regime"],
            "detector_only": statistics.mean(r["detector_only"]),
            "trackers": {k: mean_scores(v) for k, v in r["runs"].items()},
            "per_run": r["runs"],
        }
        for r in by_regime.values()
    ]
    entry["sensitivity"] = sensitivity(setup, frames, labels, cuts, video)
    entry["update_us"] = {
        tname: percentiles(setup.run(frames, tname, cuts=cuts).times_us) for tname in trackers
    }
    return entry


def sensitivity(
    setup: Setup,
    frames: Detections,
    labels: list[tuple[str, Box]],
    cuts: list[int],
    video: tuple[Detections, list[int]] | None,
) -> list[dict[str, Any]]:
    """The Kalman tracker (encodings on samples when there are encodings) with one
    parameter changed: mean over each regime's runs, and (with the Hamilton clip) its
    tracks across shot cuts without encodings at detection every frame / every 3rd."""
    mode = "kalman, encodings on samples" if setup.encodings else "kalman"
    base = kalman_params(setup.tracker)
    by_name: dict[str, list[tuple[list[bool], set[int] | None]]] = {}
    for name, run_on, drop in regimes(len(frames)):
        by_name.setdefault(name, []).append((run_on, drop))
    rows = []
    for label, change in VARIANTS:
        params = {**base, **change}

        def make(p: dict[str, Any] = params) -> KalmanTracker:
            return KalmanTracker(**p)

        row: dict[str, Any] = {"variant": label, "params": params, "mode": TRACKERS[mode][1]}
        for name, runs in by_name.items():
            row[name] = mean_scores(
                [
                    score(
                        setup.run(
                            frames, mode, run_on=r, drop=d, cuts=cuts, make_tracker=make
                        ).boxes,
                        labels,
                    )
                    for r, d in runs
                ]
            )
        if video is not None:
            vframes, vcuts = video
            row["cut_crossings"] = [
                tracks_across_cuts(
                    setup.run(
                        vframes,
                        "kalman",
                        run_on=[i % every == 0 for i in range(len(vframes))],
                        cuts=vcuts,
                        make_tracker=make,
                    ),
                    vcuts,
                )
                for every in (1, 3)
            ]
        rows.append(row)
    return rows


def two_people(
    setup: Setup,
    frames: Detections,
    known: list[list[float]],
    names: list[str],
    cuts: list[int],
) -> list[dict[str, Any]]:
    """Each tracker on a clip without box labels: tracks across shot cuts (the capture
    marks the cuts, the track stage ends every track there, so this should be 0) and
    tracks per person, faces named by the nearest enrolment photo."""
    labels = name_faces(frames, known, names)
    out = []
    for regime, every in (("every frame", 1), ("every 3rd frame", 3)):
        run_on = [i % every == 0 for i in range(len(frames))]
        for tname in setup.trackers():
            run = setup.run(frames, tname, run_on=run_on, cuts=cuts)
            out.append(
                {
                    "regime": regime,
                    "tracker": tname,
                    "tracks_across_cuts": tracks_across_cuts(run, cuts),
                    "merges": run.merges,
                    **people_per_track(run, labels, names),
                }
            )
    return out
