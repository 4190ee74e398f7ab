"""Age/gender on video-like degraded faces: the shipped backends on the dev files' images
after :func:`training.agegender.video_features.degrade` (low resolution, blur, JPEG, noise,
light, roll; seeded per file, the same degradation the feature cache holds).

``scratch`` runs its real ``estimate`` on the degraded image (face-crop box); ``transfer``
and the ``ensemble`` get the dlib encoding of the degraded image from the feature cache
(what the recognize stage would compute on it) and run their real ``estimate`` with it.
The clean images go through the same path for comparison. Files: the "dev" files (no
model trained on them), or any side whose chunks are built (``--side``).

    python scripts/attributes_degraded.py --side dev
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OMP_NUM_THREADS", "1")


from pipeline import machine  # noqa: E402
from pipeline.agegender.framing import face_crop_box  # noqa: E402
from pipeline.agegender.images import read_rgb  # noqa: E402
from pipeline.attributes import registry  # noqa: E402
from pipeline.datasets import require  # noqa: E402
from pipeline.evaluation.attributes import abstention_curve, age_gender_metrics  # noqa: E402
from pipeline.record import Face  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from training.agegender import video_features as vf

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", default="dev", choices=["dev", "val", "train"])
    ap.add_argument("--backends", default="ensemble,scratch,transfer")
    args = ap.parse_args(argv)
    folder = require("utkface")
    d = vf.load(partial=True)
    m = d["sides"] == args.side
    names = [str(n) for n in d["names"][m]]
    feats = d["features"][m]
    ages, genders = d["ages"][m], d["genders"][m]
    out: dict = {
        "machine": machine.describe(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python scripts/attributes_degraded.py " + " ".join(argv or sys.argv[1:]),
        "side": args.side,
        "images": len(names),
        "results": {},
    }
    for name in args.backends.split(","):
        est = registry.create(name)
        res = {}
        for view, col in (("clean", 0), ("degraded", 2)):
            pa, pf = [], []
            for i, n in enumerate(names):
                im = read_rgb(folder / n)
                if view == "degraded":
                    im = vf.degrade(im, vf._rng(n))
                box = face_crop_box(*im.shape[:2]).box
                enc = [round(float(x), 6) for x in feats[i, 128 * col : 128 * (col + 1)]]
                (r,) = est.estimate(im, [Face(box=box, encoding=enc)])
                pa.append(r.age)
                pf.append(r.p_female)
            mt = age_gender_metrics(pa, pf, ages, genders)
            curve = abstention_curve(pf, ages, genders, thresholds=(0.7, 0.8))
            res[view] = {
                "age_mae": mt["age_mae"],
                "gender_accuracy": mt["gender_accuracy"],
                "gender_accuracy_13plus": mt["gender_accuracy_13plus"],
                "abstain_0.7": curve[0]["all"],
                "abstain_0.8": curve[1]["all"],
            }
        out["results"][name] = res
        print(name, json.dumps(res), flush=True)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
