#!/usr/bin/env python
"""Tracking on the YouTube Faces clips: the track stage's code, identity and box accuracy.

For each clip folder under ``youtube-faces-clips/`` (a ``.avi``, its frames as JPEG and
``*.labeled_faces.txt`` with one ``PERSON\\CLIP\\CLIP.FRAME.jpg,0,CX,CY,W,H,0.0,1`` line
per frame, CX/CY the box centre):

1. the configured detector (``detector.backend`` and its options; ``--detector`` /
   ``--options`` to change) runs on every frame, cached under ``runs/eval_tracking/``;
   the shot cuts are what the capture marks (:class:`pipeline.shots.CutDetector`,
   ``capture.shot_cut_threshold``);
2. the frames go one by one through the track stage's
   :class:`pipeline.tracking.stream.StreamTracker` with the configured ``tracker`` and
   ``sampling`` sections (``tracker.model`` iou and kalman), in several regimes:
   detection on every frame, on every 2nd / 3rd frame (each phase), and every frame with
   a random 30 % of the detections dropped (5 seeds);
3. metrics on every labelled frame: identity switches, confirmed track ids, and the share
   of labelled frames covered by a reported box at IoU >= 0.5.

With ``--encodings`` every detected face is also encoded as the recognize stage encodes
it (its encoder and face quality), and two more Kalman runs use the encodings: the faces
the track stage samples are given back through ``StreamTracker.observe`` (the pipeline's
re-identification), and every face carries its encoding into the tracker (an upper
bound). Then (unless ``--no-video``) the trackers also run on the two-person Hamilton
clip. With ``--pipeline`` (or ``--pipeline-only``) identity is also measured through
the real pipeline: each clip goes through ``facepipe run`` as a subprocess
(:mod:`pipeline.evaluation.tracking_pipeline`); without it, the last such results in
``docs/tracking-results.json`` are kept (they state their own command and date).

The evaluation is :mod:`pipeline.evaluation.tracking`; this is its command line. Results
go to ``docs/tracking-results.json`` and between ``<!-- results:start -->`` and
``<!-- results:end -->`` of ``docs/tracking.md``. Run it niced on a shared machine::

    nice -n 10 python scripts/eval_tracking.py --encodings --pipeline \\
        > runs/eval_tracking.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline import machine  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.datasets import REPO_ROOT, require  # noqa: E402
from pipeline.evaluation import tracking as ev  # noqa: E402
from pipeline.evaluation.common import log  # noqa: E402
from pipeline.reports import write_results  # noqa: E402

DATASET = "youtube-faces-clips"
CACHE = REPO_ROOT / "runs" / "eval_tracking"
DOCS_MD = REPO_ROOT / "docs" / "tracking.md"
DOCS_JSON = REPO_ROOT / "docs" / "tracking-results.json"


def clip_frames(clip: Path, source: str, labels: list[tuple[str, Any]]) -> list[np.ndarray]:
    """BGR frames, one per label line: the .avi's frames in order, or the named JPEGs."""
    if source == "jpg":
        frames = []
        for name, _ in labels:
            hits = list(clip.glob(f"*/{name}"))
            if not hits:
                raise FileNotFoundError(f"{clip}: no frame image {name}")
            frames.append(cv2.imread(str(hits[0])))
        return frames
    videos = sorted(clip.glob("*.avi"))
    if not videos:
        raise FileNotFoundError(f"{clip}: no .avi (use --source jpg)")
    frames = ev.read_video(videos[0])
    if len(frames) != len(labels):
        raise ValueError(
            f"{videos[0].name}: {len(frames)} frames but {len(labels)} label lines; "
            "use --source jpg"
        )
    return frames


def detections(
    name: str, frames: list[np.ndarray], detector: tuple[str, dict], encoder: Any, enc_key: Any
) -> dict[str, Any]:
    """Detections (+ encodings), frame size and detector time of a clip, cached."""
    from pipeline.detectors import registry

    key = ev.cache_key(name, len(frames), detector, enc_key)

    def compute() -> dict[str, Any]:
        log(f"{name}: detecting{' and encoding' if encoder else ''} {len(frames)} frames")
        det = registry.create(*detector)
        det.warmup()
        dets, ms = ev.detect_frames(frames, det, encoder)
        return {"frames": dets, "ms": statistics.median(ms), "size": list(frames[0].shape)}

    return ev.cached(CACHE / f"{name}-{detector[0]}-{key}.json", compute)


def known_encodings(photos: list[Path], detector: tuple[str, dict], encoder: Any) -> list:
    """One encoding per enrolment photo (its largest face), cached."""
    from pipeline.detectors import registry
    from pipeline.images import read_image

    def compute() -> list[list[float]]:
        det = registry.create(*detector)
        out = []
        for photo in photos:
            img = read_image(photo)
            faces = det.detect(img)
            if not faces:
                raise RuntimeError(f"{detector[0]} finds no face in {photo}")
            face = max(faces, key=lambda f: f.box[2] * f.box[3])
            out.append([float(v) for v in encoder.encode(img, [face])[0]])
        return out

    key = ev.cache_key([p.name for p in photos], detector)
    return ev.cached(CACHE / f"known-{key}.json", compute)


def render(report: dict[str, Any]) -> str:
    return ev.render(report)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", help="detector backend (default: the configured one)")
    ap.add_argument("--options", help="detector options, JSON (default: the configured ones)")
    ap.add_argument("--source", choices=("avi", "jpg"), default="avi")
    ap.add_argument("--clips", help="comma-separated clip folder names (default: all)")
    ap.add_argument("--encodings", action="store_true", help="also track with dlib encodings")
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
    cfg = load_config()
    command = "python scripts/eval_tracking.py " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        options = json.loads(args.options) if args.options else None
        root = require(DATASET)
    except (json.JSONDecodeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.detector:
        detector = (args.detector, options or {})
    else:
        detector = (cfg.detector.backend, options or dict(cfg.detector.options))
    clips = sorted(p for p in root.iterdir() if p.is_dir())
    if args.clips:
        wanted = set(args.clips.split(","))
        clips = [c for c in clips if c.name in wanted]
    if not clips:
        print("error: no clips", file=sys.stderr)
        return 2
    cut_threshold = cfg.capture.shot_cut_threshold

    if args.pipeline_only:
        from pipeline.evaluation.tracking_pipeline import pipeline_eval

        report = json.loads(DOCS_JSON.read_text()) if DOCS_JSON.exists() else {}
        report["pipeline"] = pipeline_eval(
            clips, root, args.pipeline_runs, CACHE, command, cut_threshold
        )
        print(render(report))
        if not args.no_docs:
            write_docs(report)
        return 0

    setup = ev.Setup(
        tracker=cfg.tracker,
        sampling=cfg.sampling,
        cut_threshold=cut_threshold,
        min_quality=cfg.recognition.min_unknown_quality,
        encodings=args.encodings,
    )
    encoder = enc_key = None
    if args.encodings:
        from pipeline.evaluation.attributes import recognition_encoder

        encoder = recognition_encoder(cfg.recognition)
        r = cfg.recognition
        enc_key = [r.num_jitters, r.upscale_below_px, r.flip]
    report: dict[str, Any] = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine.info(numpy=np.__version__, opencv=cv2.__version__),
        "detector": detector[0],
        "options": detector[1],
        "params": ev.kalman_params(cfg.tracker),
        "sampling": cfg.sampling.model_dump(),
        "shot_cut_threshold": cut_threshold,
        "clips": [],
    }
    video_data = None
    if args.encodings and not args.no_video:
        video = root.parent / "video" / "short_hamilton_clip.mp4"
        if video.exists():
            vbgr = ev.read_video(video)
            vcuts = ev.shot_cuts(vbgr, cut_threshold)
            d = detections(video.stem, vbgr, detector, encoder, enc_key)
            del vbgr
            photos = sorted((video.parent / "known").glob("*.png"))
            known = known_encodings(photos, detector, encoder)
            names = [p.stem for p in photos]
            video_data = (d["frames"], vcuts)
            report["two_people"] = {
                "video": video.name,
                "info": {"frames": len(d["frames"]), "frame_size": d["size"]},
                "cuts": vcuts,
                "rows": ev.two_people(setup, d["frames"], known, names, vcuts),
            }
    for clip in clips:
        labels = ev.read_labels(next(clip.glob("*.labeled_faces.txt")))
        bgr = clip_frames(clip, args.source, labels)
        cuts = ev.shot_cuts(bgr, cut_threshold)
        d = detections(f"{clip.name}-{args.source}", bgr, detector, encoder, enc_key)
        del bgr
        log(f"{clip.name}: tracking")
        entry = {
            "clip": clip.name,
            "frames": len(labels),
            "detector_ms_median": d["ms"],
            "frame_size": d["size"],
            **ev.evaluate_clip(setup, d["frames"], labels, cuts, video_data),
        }
        report["clips"].append(entry)
    report["synthetic_speed"] = ev.synthetic_speed(cfg.tracker, cfg.sampling)
    if args.pipeline:
        from pipeline.evaluation.tracking_pipeline import pipeline_eval

        report["pipeline"] = pipeline_eval(
            clips, root, args.pipeline_runs, CACHE, command, cut_threshold
        )
    elif DOCS_JSON.exists():  # keep the last `facepipe run` results (they carry their date)
        previous = json.loads(DOCS_JSON.read_text()).get("pipeline")
        if previous:
            report["pipeline"] = previous
    print(render(report))
    if not args.no_docs:
        write_docs(report)
    return 0


def write_docs(report: dict[str, Any]) -> None:
    write_results(DOCS_JSON, DOCS_MD, report, render(report), "Tracking")
    log(f"wrote {DOCS_MD.relative_to(REPO_ROOT)} and {DOCS_JSON.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    raise SystemExit(main())
