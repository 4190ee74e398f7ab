"""Compare scratch CNN files on clean and video-like degraded UTKFace faces.

Each face of a side of the fixed split (``val`` by default: never trained on) is run
through the ``scratch`` backend's ``estimate`` with the face-crop box twice: as it is and
after :func:`training.agegender.video_features.degrade` (face at 20-72 px, blur, JPEG
12-60, noise, light, roll; seeded by the file name, the same degradation as
``scripts/attributes_degraded.py``, which needs the encoding cache; this needs none).
Reports age MAE, gender accuracy, the worst adult race x gender x age-band group, and
gender with the pipeline's abstention threshold, per model file::

    python -m training.agegender.degraded_eval --side val \\
        --model shipped=pipeline/models/age_gender/scratch.tflite \\
        --model v2=pipeline/models/age_gender/scratch-v2.tflite [--raw]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np


def predictions(
    model: str, names: list[str], degraded: bool, calibrate: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(age, p_female) of the scratch backend with ``model`` on UTKFace files."""
    from pipeline.agegender.framing import face_crop_box
    from pipeline.agegender.images import read_rgb
    from pipeline.attributes import registry
    from pipeline.datasets import require
    from training.agegender import video_features as vf

    folder = require("utkface")
    est = registry.create("scratch", {"model": model, "calibrate": calibrate})
    ages, pf = [], []
    for n in names:
        im = read_rgb(folder / n)
        if degraded:
            im = vf.degrade(im, vf._rng(n))
        (r,) = est.estimate(im, [face_crop_box(*im.shape[:2])])
        ages.append(r.age)
        pf.append(r.p_female)
    return np.array(ages), np.array(pf)


def summary(preds: tuple[np.ndarray, np.ndarray], samples: list) -> dict[str, Any]:
    """Overall, by-age-group, worst-adult-group and abstention figures of predictions."""
    from pipeline.evaluation.attributes import age_gender_metrics, detail_metrics

    ages = [s.age for s in samples]
    genders = [s.gender for s in samples]
    m = age_gender_metrics(preds[0], preds[1], ages, genders)
    d = detail_metrics(preds, samples)
    g = d["by_group"]
    out = {k: m[k] for k in ("n", "age_mae", "gender_accuracy", "gender_accuracy_13plus")}
    out["by_age_group"] = m["by_age_group"]
    out["worst_adult_group"] = g.get("worst_adult_gender")
    out["worst_adult_group_answered"] = g.get("worst_adult_gender_answered")
    out["adult_groups_below_93"] = g.get("adult_groups_below_93")
    out["abstain_0.8"] = next(c for c in d["abstention"] if abs(c["threshold"] - 0.8) < 1e-9)
    return out


def main(argv: list[str] | None = None) -> int:
    from pipeline import machine
    from pipeline.agegender.split import list_samples, sides_of
    from pipeline.datasets import require

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", default="val", choices=["dev", "val"])
    ap.add_argument("--model", action="append", required=True, help="LABEL=PATH.tflite")
    ap.add_argument("--raw", action="store_true", help="calibrations off (raw model outputs)")
    ap.add_argument("--limit", type=int, default=None, help="first N files of the side")
    args = ap.parse_args(argv)
    samples = list_samples(require("utkface"))
    side = sides_of(np.array([s.name for s in samples]))
    chosen = [s for s, x in zip(samples, side, strict=True) if x == args.side][: args.limit]
    names = [s.name for s in chosen]
    out: dict[str, Any] = {
        "machine": machine.describe(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m training.agegender.degraded_eval "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "side": args.side,
        "images": len(names),
        "results": {},
    }
    for spec in args.model:
        label, _, path = spec.partition("=")
        res = {}
        for view in ("clean", "degraded"):
            preds = predictions(path, names, view == "degraded", calibrate=not args.raw)
            res[view] = summary(preds, chosen)
            s = res[view]
            print(
                f"{label} {view}: MAE {s['age_mae']:.3f} gender {s['gender_accuracy']:.4f} "
                f"worst adult {json.dumps(s['worst_adult_group'])}",
                flush=True,
            )
        out["results"][label] = res
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
