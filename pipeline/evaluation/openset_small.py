"""Small faces in open-set identification: can a 26-px face be named among many?

The Hamilton clip's pianist (alex-lacamoire) is a 26-px face in a dark shot; enrolled from
one photo his track's mean encoding is 0.56 from it, where the open-set rule among 500
people names a face within a score of 0.37 (docs/openset.md, video). This study measures
the principled ways to bring such a face nearer its enrolment, on LFW, where identities
are known, so that any gain is weighed against the strangers it would also name:

* LFW folds 1-3 rendered small: every image scaled (``cv2.INTER_AREA``) so that its face
  (the verification protocol's box) is ``face_px`` tall, then encoded as the recognize
  stage encodes a small face (upscaled to ``recognition.upscale_below_px``, 1 jitter):
  what a face that small in a video frame gives the encoder;
* probes sharp (S: the plain LFW encodings) or small (L), galleries of the sharp photo
  (S: enrolment today) or of the sharp photo *and* its small rendering as a second
  template of the same person (S+L: multi-resolution enrolment, the person's distance
  the nearer of the two);
* per configuration, the genuine distances (each person's other photos to their first)
  and, per gallery size, the product's rule at its defaults (``fuse_identity``, 10 draws as
  in docs/openset.md): enrolled people named right (DIR), strangers named (FPIR), wrong
  names.

And on the clip itself: the distance of Alex's (and Lin's) samples to their enrolment under
the probe-encoding variants (upscaling size and interpolation, contrast, jitters, flip) and
enrolment variants (jitters, flip, the photo rendered at the probe's face size).

``scripts/eval_openset.py --small-faces`` is the command line; the section of
docs/openset.md is :func:`markdown`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.evaluation.common import log

CONFIGS = {  # label -> (probe set, gallery sets)
    "S->S": ("S", ("S",)),
    "S->S+L": ("S", ("S", "L")),
    "L->S": ("L", ("S",)),
    "L->S+L": ("L", ("S", "L")),
    "Lc->S": ("Lc", ("S",)),
}
CONFIG_TEXT = {
    "S->S": "sharp probes, sharp gallery (LFW as in the table above)",
    "S->S+L": "sharp probes, gallery + small renderings",
    "L->S": "small probes, sharp gallery (a small video face today)",
    "L->S+L": "small probes, gallery + small renderings (multi-resolution enrolment)",
    "Lc->S": "small probes contrast-stretched, sharp gallery",
}
# frames of the Hamilton clip where the pipeline samples the pianist's track (0-19; the
# identity samples of docs/tracking.md's hamilton table)
HAMILTON_SAMPLE_FRAMES = (2, 3, 8, 13, 18)


def render_small(image: np.ndarray, box: Sequence[int], face_px: int) -> tuple[np.ndarray, tuple]:
    """``image`` scaled so that the face ``box`` is ``face_px`` tall, and the scaled box."""
    import cv2

    s = face_px / max(int(box[3]), 1)
    small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return small, tuple(int(round(v * s)) for v in box)


def small_encodings(
    data: Path,
    runs: Path,
    keys: list[str],
    face_px: int,
    min_face_px: int = 80,
    stretch: bool = False,
) -> dict[str, np.ndarray]:
    """The recognize stage's encoding (1 jitter, small faces upscaled to ``min_face_px``) of
    each LFW image rendered with its face ``face_px`` tall (``stretch``: the upscaled crop
    contrast-stretched first); cached under ``runs/cache-5pt-jitter1-face<face_px>``
    (``-stretch``)."""
    from pipeline.evaluation.verification import V, detect_faces
    from pipeline.recognition.encoder import DlibEncoder
    from pipeline.record import Face

    root = data / "images"
    base = V.EncodingCache(runs / "cache-5pt-jitter1")
    sizes, hog = detect_faces(keys, root, base, runs)
    boxes = {k: hog[k] if k in hog else V.fallback_box(*sizes[k]) for k in keys}
    suffix = "-stretch" if stretch else ""
    cache = V.EncodingCache(runs / f"cache-5pt-jitter1-face{face_px}{suffix}")
    encoder = _stretched(min_face_px) if stretch else DlibEncoder(1, min_face_px=min_face_px)
    out: dict[str, np.ndarray] = {}
    for i, k in enumerate(keys, 1):
        enc = cache.get(k, boxes[k])
        if enc is None:
            small, box = render_small(V.load_rgb(root / k), boxes[k], face_px)
            enc = encoder.encode(small, [Face(box=box)])[0]
            cache.put(k, boxes[k], enc)
            if i % 50 == 0:
                cache.flush()
        out[k] = np.asarray(enc, dtype=np.float64)
        if i % 500 == 0:
            log(f"face {face_px} px: {i}/{len(keys)}")
    cache.flush()
    return out


def _names(
    probe: dict[str, np.ndarray], gallery_sets: list[dict[str, np.ndarray]], d: Any, rule: Any
) -> dict[str, float]:
    from pipeline.evaluation.openset import person_of, product_names

    names = [person_of(k) for _ in gallery_sets for k in d.gallery]
    gal = np.stack([g[k] for g in gallery_sets for k in d.gallery])
    m = product_names(np.stack([probe[k] for k in d.mated]), names, gal, rule)
    n = product_names(np.stack([probe[k] for k in d.non_mated]), names, gal, rule)
    truth = [person_of(k) for k in d.mated]
    right = sum(a == b for a, b in zip(m, truth, strict=True))
    wrong = sum(a is not None and a != b for a, b in zip(m, truth, strict=True))
    named = sum(a is not None for a in n)
    return {
        "dir": right / len(m),
        "fpir": named / len(n),
        "wrong_names": (wrong + named) / (len(m) + len(n)),
    }


def genuine_distances(
    probe: dict[str, np.ndarray], gallery_sets: list[dict[str, np.ndarray]]
) -> np.ndarray:
    """Each photo but the first of every person with 2+, to the nearest of the first
    photo's templates (one per gallery set)."""
    from pipeline.evaluation.openset import people_of

    out = []
    for ims in people_of(probe).values():
        for k in ims[1:]:
            out.append(min(float(np.linalg.norm(probe[k] - g[ims[0]])) for g in gallery_sets))
    return np.array(out)


def evaluate_lfw_small(
    sets: dict[str, dict[str, np.ndarray]],
    rule: Any,
    sizes: Sequence[int],
    draws: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Per configuration of :data:`CONFIGS`: genuine distance quantiles, and per gallery
    size the mean DIR, FPIR and wrong-name rate of the rule over ``draws`` draws (the
    draws of docs/openset.md's LFW table)."""
    from pipeline.evaluation.openset import draw, people_of

    people = people_of(sets["S"])
    out: dict[str, Any] = {}
    for label, (p, gs) in CONFIGS.items():
        if p not in sets or any(g not in sets for g in gs):
            continue
        gal = [sets[g] for g in gs]
        gen = genuine_distances(sets[p], gal)
        row: dict[str, Any] = {
            "genuine_quantiles": {
                f"{q}": round(float(np.percentile(gen, q)), 4) for q in (10, 50, 90)
            },
            "sizes": {},
        }
        for n in sizes:
            got = [
                _names(sets[p], gal, draw(people, n, np.random.default_rng([seed, n, i])), rule)
                for i in range(draws)
            ]
            row["sizes"][str(n)] = {k: float(np.mean([g[k] for g in got])) for k in got[0]}
            log(f"{label} N={n}: {row['sizes'][str(n)]}")
        out[label] = row
    return out


def hamilton_variants(datasets: Path) -> dict[str, Any]:
    """Distances of the two people's sampled faces in the Hamilton clip's first shot to
    their enrolment photos, under probe and enrolment encoding variants (the mean of the
    samples' encodings, as the track's vote uses; per variant: to their own photo and to
    the other person's)."""
    import cv2

    from pipeline.config import load_config
    from pipeline.detectors import registry
    from pipeline.recognition.encoder import DlibEncoder
    from pipeline.recognition.enroll import find_one_face, read_rgb
    from pipeline.record import Face

    video = datasets / "video" / "short_hamilton_clip.mp4"
    known = {p.stem: p for p in sorted((datasets / "video" / "known").glob("*.png"))}
    cfg = load_config()
    detector = registry.from_config(cfg.detector)
    cap = cv2.VideoCapture(str(video))
    frames: dict[int, np.ndarray] = {}
    i = 0
    while i <= max(HAMILTON_SAMPLE_FRAMES):
        ok, f = cap.read()
        if not ok:
            break
        if i in HAMILTON_SAMPLE_FRAMES:
            frames[i] = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()
    # the pianist sits left (x < 160 of 640), the singer right
    faces: dict[str, list[tuple[int, Face]]] = {"alex-lacamoire": [], "lin-manuel-miranda": []}
    for k, im in frames.items():
        for f in detector.detect(im):
            who = "alex-lacamoire" if f.box[0] < im.shape[1] / 4 else "lin-manuel-miranda"
            faces[who].append((k, Face(box=tuple(int(v) for v in f.box))))
    photos = {n: read_rgb(p) for n, p in known.items()}
    boxes = {n: find_one_face(im, n) for n, im in photos.items()}

    def template(enc: DlibEncoder, name: str, face_px: int | None = None) -> np.ndarray:
        im, face = photos[name], boxes[name]
        if face_px:
            im, box = render_small(im, face.box, face_px)
            face = Face(box=box)
        return enc.encode(im, [face])[0]

    def probe(enc: DlibEncoder, name: str) -> np.ndarray:
        return np.mean([enc.encode(frames[k], [f])[0] for k, f in faces[name]], axis=0)

    enrol = DlibEncoder(num_jitters=cfg.recognition.enroll_jitters)
    stage = DlibEncoder.from_config(cfg.recognition)
    out: dict[str, Any] = {
        "face_heights": {n: [f.box[3] for _, f in v] for n, v in faces.items()},
        "frames": list(HAMILTON_SAMPLE_FRAMES),
        "probe_variants": {},
        "enrolment_variants": {},
    }
    t10 = {n: template(enrol, n) for n in photos}

    def dists(p: dict[str, np.ndarray], t: dict[str, np.ndarray]) -> dict[str, Any]:
        return {n: {m: round(float(np.linalg.norm(p[n] - t[m])), 4) for m in t} for n in p}

    probes_today = {n: probe(stage, n) for n in faces}
    variants: dict[str, DlibEncoder] = {
        "today (1 jitter, upscaled to 80 px, bicubic)": stage,
        "upscaled to 150 px": DlibEncoder(1, 150),
        "upscaled to 40 px": DlibEncoder(1, 40),
        "10 jitters": DlibEncoder(10, 80),
        "flip-averaged": DlibEncoder(1, 80, flip=True),
        "contrast stretched (1st-99th percentile of the upscaled crop)": _stretched(),
    }
    t0 = time.monotonic()
    for label, enc in variants.items():
        p = probes_today if enc is stage else {n: probe(enc, n) for n in faces}
        out["probe_variants"][label] = dists(p, t10)
    enrol_variants = {
        f"today ({cfg.recognition.enroll_jitters} jitters)": t10,
        "1 jitter": {n: template(DlibEncoder(1), n) for n in photos},
        "1 jitter, flip-averaged": {n: template(DlibEncoder(1, flip=True), n) for n in photos},
        "photo rendered with a 26-px face, 10 jitters": {n: template(enrol, n, 26) for n in photos},
        "photo rendered with a 44-px face, 10 jitters": {n: template(enrol, n, 44) for n in photos},
    }
    for label, t in enrol_variants.items():
        out["enrolment_variants"][label] = dists(probes_today, t)
    log(f"hamilton variants: {time.monotonic() - t0:.0f} s")
    return out


def _stretched(min_face_px: int = 80) -> Any:
    """The recognize stage's encoder with the upscaled crop of a small face
    contrast-stretched (its 1st-99th percentile to 0-255) before landmarks and encoding."""
    from pipeline.recognition.encoder import DlibEncoder

    class Stretched(DlibEncoder):
        def _upscaled(self, image: np.ndarray, face: Any) -> Any:
            img, box, where = super()._upscaled(image, face)
            if where[2] == 1.0:
                return img, box, where
            lo, hi = np.percentile(img, [1, 99])
            out = np.clip((img.astype(float) - lo) * 255.0 / max(hi - lo, 1.0), 0, 255)
            return np.ascontiguousarray(out.astype(np.uint8)), box, where

    return Stretched(1, min_face_px)


def evaluate(
    data: Path,
    datasets: Path,
    runs: Path,
    recognition: Any,
    face_px: int,
    sizes: Sequence[int],
    draws: int,
    seed: int = 0,
    command: str = "",
    hamilton: bool = True,
) -> dict[str, Any]:
    """The whole study (module docstring): LFW rendered small, and the Hamilton clip's
    variants (``hamilton``; needs the ``video`` dataset)."""
    from datetime import UTC, datetime

    from pipeline import machine
    from pipeline.evaluation.openset import people_of
    from pipeline.evaluation.verification import _dlib_version, lfw_encodings
    from pipeline.recognition.verify import load_pairs

    started = machine.info(dlib=_dlib_version(), numpy=np.__version__)
    pairs = load_pairs(data / "pairs.tsv")
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    sharp = lfw_encodings(data, runs, recognition.num_jitters, keys)
    small = small_encodings(data, runs, keys, face_px, recognition.upscale_below_px)
    stretched = small_encodings(data, runs, keys, face_px, recognition.upscale_below_px, True)
    people = people_of(sharp)
    return {
        "name": f"small-faces-{face_px}px",
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": started,
        "face_px": face_px,
        "images": len(keys),
        "people": len(people),
        "draws": draws,
        "seed": seed,
        "lfw": evaluate_lfw_small(
            {"S": sharp, "L": small, "Lc": stretched}, recognition.rule, sizes, draws, seed
        ),
        "hamilton": hamilton_variants(datasets) if hamilton else None,
    }


def _lfw_findings(lfw: dict[str, Any]) -> list[str]:
    """What the LFW table says about multi-resolution enrolment, from its figures."""
    out: list[str] = []
    worse = False
    for probe, base, multi in (("sharp", "S->S", "S->S+L"), ("small", "L->S", "L->S+L")):
        if base not in lfw or multi not in lfw:
            continue
        b, m = lfw[base]["sizes"], lfw[multi]["sizes"]
        more = [n for n in b if m[n]["fpir"] > b[n]["fpir"]]
        worse = worse or bool(more)
        if out:
            out.append("")
        out.append(
            f"With {probe} probes, adding the small renderings to the gallery changes the "
            "strangers named "
            + ", ".join(f"{_pct(b[n]['fpir'])} -> {_pct(m[n]['fpir'])} at N={n}" for n in b)
            + " and the enrolled named right "
            + ", ".join(f"{_pct(b[n]['dir'])} -> {_pct(m[n]['dir'])}" for n in b)
            + f": more strangers named at {len(more)} of {len(b)} gallery sizes."
        )
    if worse:
        out += [
            "",
            "A small template is nearer the middle of face space: it brings a small face "
            "nearer its own person, and strangers' faces nearer someone. Against the "
            "rule's calibrated thresholds that names more strangers, so multi-resolution "
            "enrolment is not adopted (a wrong name is worse than no name); using it would "
            "mean re-measuring the threshold table with such templates, which takes the "
            "small faces' gain back.",
        ]
    elif out:
        out += ["", "Multi-resolution enrolment names no more strangers at any size here."]
    if "Lc->S" in lfw and "L->S" in lfw:
        b, c = lfw["L->S"]["sizes"], lfw["Lc->S"]["sizes"]
        better = [n for n in b if c[n]["dir"] > b[n]["dir"] and c[n]["fpir"] <= b[n]["fpir"]]
        out += [
            "",
            "Small probes contrast-stretched (the upscaled crop's 1st-99th percentile to "
            "0-255) against the plain small probes: named right "
            + ", ".join(f"{_pct(b[n]['dir'])} -> {_pct(c[n]['dir'])}" for n in b)
            + ", strangers named "
            + ", ".join(f"{_pct(b[n]['fpir'])} -> {_pct(c[n]['fpir'])}" for n in b)
            + f" (N = {', '.join(b)}): more named right and no more strangers at "
            f"{len(better)} of {len(b)} sizes"
            + (
                "; LFW's faces are well lit, so this says little for dark ones, and one "
                "dark face (below) is no basis to change every small face's encoding: "
                "not adopted."
                if len(better) < len(b)
                else "."
            ),
        ]
    return out


def _hamilton_finding(ham: dict[str, Any], who: str = "alex-lacamoire") -> str:
    """The nearest any variant brings ``who`` to his photo, against the rule's thresholds."""
    from pipeline.recognition.openset import OpenSetRule

    rule = OpenSetRule()
    rows = [
        (d[who][who], f"{kind.split('_')[0]}: {label}")
        for kind in ("probe_variants", "enrolment_variants")
        for label, d in ham[kind].items()
        if who in d
    ]
    if not rows:
        return ""
    best, label = min(rows)
    today = rows[0][0]
    t = rule.gallery_threshold(502)
    return (
        f"{who}: {today:.3f} from his photo today, {best:.3f} at best ({label}). The "
        f"default rule names a face among 2 people within {rule.gallery_threshold(2):.3f} "
        f"(the distance alone) and among 502 within a score of {t:.3f} (the distance "
        f"minus the margin to the next person): the best variant leaves him {best - t:.3f} "
        "above that, a margin over the next of 500 people that a 26-px face does not "
        "have (the video run above: the per-event margins); and the enrolment rendered "
        "small names more strangers on LFW (above)."
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def markdown(rec: dict[str, Any]) -> list[str]:
    """The small-faces section of docs/openset.md."""
    m = rec["machine"]
    px = rec["face_px"]
    lfw = rec["lfw"]
    sizes = list(next(iter(lfw.values()))["sizes"])
    lines = [
        f"## Small faces: a {px}-px face among many",
        "",
        f"Command: `{rec['command']}`; run {rec['date']} on {m.get('cpu', '?')} "
        f"({m.get('cores', '?')} cores, shared; load average {m.get('loadavg_start', ['?'])[0]} at "
        f"the start), Python {m.get('python', '?')}, dlib {m.get('dlib', '?')}. Library: "
        "`pipeline/evaluation/openset_small.py` (its docstring has the protocol).",
        "",
        f"Data: the {rec['images']:,} LFW images of the table above, each also rendered "
        f"small (scaled so that its face is {px} px tall, as the pianist's in the Hamilton "
        "clip, then encoded as the recognize stage encodes a small face: upscaled to 80 px, "
        "1 jitter). S: the plain encodings; L: the small renderings. Probes S or L; a "
        "gallery of each enrolled person's first photo (S), or of that photo and its small "
        "rendering as a second template (S+L, multi-resolution enrolment). The product's "
        f"rule at its defaults, {rec['draws']} draws per size as above; mean over draws.",
        "",
        "| configuration | genuine distance (10th / 50th / 90th percentile) | "
        + " | ".join(f"N={n}: named right / strangers named / wrong names" for n in sizes)
        + " |",
        "|---|---|" + "---:|" * len(sizes),
    ]
    for label, row in lfw.items():
        g = row["genuine_quantiles"]
        cells = [
            f"{_pct(s['dir'])} / {_pct(s['fpir'])} / {_pct(s['wrong_names'])}"
            for s in row["sizes"].values()
        ]
        lines.append(
            f"| {label}: {CONFIG_TEXT.get(label, label)} | {g['10']:.3f} / {g['50']:.3f} / "
            f"{g['90']:.3f} | " + " | ".join(cells) + " |"
        )
    lines += ["", *_lfw_findings(lfw)]
    ham = rec.get("hamilton")
    if ham:
        heights = ", ".join(
            f"{n} {min(v)}-{max(v)} px" for n, v in ham["face_heights"].items() if v
        )
        lines += [
            "",
            "The Hamilton clip's first shot (frames "
            + ", ".join(map(str, ham["frames"]))
            + f", the track's identity samples; faces {heights}): the distance of the mean "
            "of each person's sampled encodings to their own enrolment photo and to the "
            "other person's.",
            "",
            "| variant | alex-lacamoire: own / other | lin-manuel-miranda: own / other |",
            "|---|---:|---:|",
        ]
        for kind, title in (("probe_variants", "probe"), ("enrolment_variants", "enrolment")):
            for label, d in ham[kind].items():
                cells = []
                for n in ("alex-lacamoire", "lin-manuel-miranda"):
                    own = d[n][n]
                    other = min(v for k, v in d[n].items() if k != n)
                    cells.append(f"{own:.3f} / {other:.3f}")
                lines.append(f"| {title}: {label} | " + " | ".join(cells) + " |")
        lines += ["", _hamilton_finding(ham)]
    return lines
