"""Age/gender evaluation: the product's estimators on labelled face crops, and the metrics.

A face goes through the product as the attributes stage handles it: the estimator the
registry builds for the backend (``registry.create(name, options)``, with the config's
options for the configured backend) and one ``estimate(image, faces)`` call. Its box is
where ``facepipe analyze --face-crop`` puts it on a face crop (:func:`face_crop_box`), or
the box HOG finds (``boxes="hog"``). In the pipeline the recognize stage has encoded the
face before the attributes stage sees it, and the backends that use dlib encodings
(``transfer``, ``ensemble``) reuse that encoding: with ``encodings`` given, each face
carries the encoding made by the recognize stage's encoder (:func:`recognition_encoder`,
built from the config's ``recognition`` section, rounded like the stage rounds it).

Metrics (:func:`age_gender_metrics`): age mean absolute error in years and gender
accuracy (p(female) >= 0.5), overall, for ages >= 13 and by true age group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.evaluation.common import log, median_ms
from pipeline.record import Face

CANVAS = 200  # grey border around an image when HOG looks for its face
ENCODING_DIGITS = 6  # the recognize stage rounds encodings to this many decimals


class Labelled(Protocol):
    name: str
    age: int
    gender: int


def age_gender_metrics(
    pred_age: Sequence[float],
    p_female: Sequence[float],
    ages: Sequence[float],
    genders: Sequence[int],
) -> dict[str, Any]:
    """Age MAE (overall and by true age group, ``pipeline.agegender.split.AGE_GROUPS``) and
    gender accuracy (1 = female)."""
    from pipeline.agegender.split import AGE_GROUPS, age_group

    pred = np.asarray(pred_age, dtype=np.float64)
    true = np.asarray(ages, dtype=np.float64)
    err = np.abs(pred - true)
    correct = (np.asarray(p_female, dtype=np.float64) >= 0.5) == (np.asarray(genders) == 1)
    labels = np.array([age_group(a) for a in true])
    by_group: dict[str, dict[str, float]] = {}
    for lo, _hi in AGE_GROUPS:
        g = age_group(lo)
        m = labels == g
        if m.any():
            by_group[g] = {
                "n": int(m.sum()),
                "age_mae": round(float(err[m].mean()), 3),
                "gender_accuracy": round(float(correct[m].mean()), 4),
            }
    adult = true >= 13
    return {
        "n": int(len(true)),
        "age_mae": round(float(err.mean()), 3) if len(true) else float("nan"),
        "gender_accuracy": round(float(correct.mean()), 4) if len(true) else float("nan"),
        # children's gender is hard for every model (and often for people): report adults
        # and teenagers separately, as most cameras see them
        "gender_accuracy_13plus": round(float(correct[adult].mean()), 4)
        if adult.any()
        else float("nan"),
        "by_age_group": by_group,
    }


def wilson_low(correct: int, n: int, z: float = 1.96) -> float:
    """Lower end of the 95 % Wilson interval of a proportion ``correct / n``."""
    if n == 0:
        return float("nan")
    p = correct / n
    d = 1 + z * z / n
    c = p + z * z / (2 * n)
    r = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((c - r) / d)


def group_metrics(
    pred_age: Sequence[float],
    p_female: Sequence[float],
    ages: Sequence[float],
    genders: Sequence[int],
    races: Sequence[int],
    min_n: int = 30,
    min_confidence: float | None = None,
) -> dict[str, Any]:
    """Age MAE and gender accuracy per race x gender x age-band group
    (:func:`pipeline.agegender.split.group_of`), with the 95 % Wilson lower bound of each
    gender accuracy, and the worst adult group (age band from ``ADULT_FROM``) among the
    groups with at least ``min_n`` faces (smaller groups are listed, not ranked).

    With ``min_confidence`` (the pipeline's ``attributes.min_gender_confidence``) each
    group also gets the share of its faces given a gender at that threshold (``coverage``)
    and the accuracy on those (``gender_accuracy_answered``), and the worst adult group by
    that accuracy: what a user of the pipeline sees, since below it the gender is
    "unknown"."""
    from pipeline.agegender.split import ADULT_FROM, AGE_BANDS, RACES, age_band, group_of

    pred = np.asarray(pred_age, dtype=np.float64)
    true = np.asarray(ages, dtype=np.float64)
    err = np.abs(pred - true)
    pf = np.asarray(p_female, dtype=np.float64)
    correct = (pf >= 0.5) == (np.asarray(genders) == 1)
    answered = (
        np.maximum(pf, 1.0 - pf) >= min_confidence
        if min_confidence is not None
        else np.ones(len(pf), bool)
    )
    labels = np.array([group_of(a, g, r) for a, g, r in zip(true, genders, races, strict=True)])
    groups: dict[str, dict[str, Any]] = {}
    order = [
        f"{r}/{g}/{age_band(lo)}" for r in RACES for g in ("male", "female") for lo, _ in AGE_BANDS
    ]
    for name in order:
        m = labels == name
        if not m.any():
            continue
        n, k = int(m.sum()), int(correct[m].sum())
        groups[name] = {
            "n": n,
            "age_mae": round(float(err[m].mean()), 3),
            "gender_accuracy": round(k / n, 4),
            "gender_accuracy_low95": round(wilson_low(k, n), 4),
        }
        if min_confidence is not None:
            a = m & answered
            na = int(a.sum())
            groups[name]["coverage"] = round(na / n, 4)
            groups[name]["gender_accuracy_answered"] = (
                round(float(correct[a].mean()), 4) if na else None
            )
    adult_bands = {age_band(lo) for lo, _ in AGE_BANDS if lo >= ADULT_FROM}
    ranked = {k: v for k, v in groups.items() if k.split("/")[2] in adult_bands and v["n"] >= min_n}
    worst = min(ranked, key=lambda k: ranked[k]["gender_accuracy"]) if ranked else None
    worst_age = max(ranked, key=lambda k: ranked[k]["age_mae"]) if ranked else None
    abstaining: dict[str, Any] = {}
    if min_confidence is not None:
        scored = {k: v for k, v in ranked.items() if v["gender_accuracy_answered"] is not None}
        w = min(scored, key=lambda k: scored[k]["gender_accuracy_answered"]) if scored else None
        abstaining = {
            "min_confidence": min_confidence,
            "worst_adult_gender_answered": {"group": w, **scored[w]} if w else None,
            "adult_groups_answered_below_93": sorted(
                k for k, v in scored.items() if v["gender_accuracy_answered"] < 0.93
            ),
        }
    return {
        **abstaining,
        "groups": groups,
        "min_n": min_n,
        "adult_from": ADULT_FROM,
        "worst_adult_gender": {"group": worst, **ranked[worst]} if worst else None,
        "worst_adult_age": {"group": worst_age, **ranked[worst_age]} if worst_age else None,
        "adult_groups_ranked": len(ranked),
        "adult_groups_below_93": sorted(
            k for k, v in ranked.items() if v["gender_accuracy"] < 0.93
        ),
    }


ABSTAIN_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)


def abstention_curve(
    p_female: Sequence[float],
    ages: Sequence[float],
    genders: Sequence[int],
    thresholds: Sequence[float] = ABSTAIN_THRESHOLDS,
) -> list[dict[str, Any]]:
    """Gender with abstention: "unknown" when the probability of the chosen gender is
    below a threshold. Per threshold: coverage (share of faces given a gender) and the
    accuracy on those faces, overall, for children (0-12) and for ages >= 13."""
    p = np.asarray(p_female, dtype=np.float64)
    true = np.asarray(ages, dtype=np.float64)
    conf = np.maximum(p, 1.0 - p)
    correct = (p >= 0.5) == (np.asarray(genders) == 1)
    parts = {"all": np.ones(len(p), bool), "0-12": true < 13, "13+": true >= 13}
    out = []
    for t in thresholds:
        row: dict[str, Any] = {"threshold": t}
        for name, m in parts.items():
            kept = m & (conf >= t)
            row[name] = {
                "coverage": round(float(kept.sum() / max(1, m.sum())), 4),
                "accuracy": round(float(correct[kept].mean()), 4) if kept.any() else None,
            }
        out.append(row)
    return out


def combine(
    predictions: dict[str, tuple[np.ndarray, np.ndarray]], min_members: int = 2
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Plain means (age, p(female)) of backends' predictions: all of them (when more than
    two) and every pair. Nothing is fitted, so nothing is tuned to the evaluation split."""
    names = list(predictions)
    combos = [names] if len(names) > min_members else []
    combos += [[a, b] for i, a in enumerate(names) for b in names[i + 1 :]]
    out = {}
    for combo in combos:
        age = np.mean([predictions[n][0] for n in combo], axis=0)
        pf = np.mean([predictions[n][1] for n in combo], axis=0)
        out["mean(" + " + ".join(combo) + ")"] = (age, pf)
    return out


# ----- the product's path ---------------------------------------------------------------


def face_crop_box(image: np.ndarray) -> Face:
    """The box ``facepipe analyze --face-crop`` gives a face crop."""
    from pipeline.agegender.framing import face_crop_box as box

    h, w = image.shape[:2]
    return box(h, w)


def hog_box(detector: Any, image: np.ndarray) -> Face | None:
    """The detector's box of the central face of a face crop placed in a grey canvas."""
    import cv2

    h, w = image.shape[:2]
    canvas = cv2.copyMakeBorder(
        image, CANVAS, CANVAS, CANVAS, CANVAS, cv2.BORDER_CONSTANT, value=(120, 120, 120)
    )
    faces = detector.detect(canvas)
    if not faces:
        return None
    cx, cy = CANVAS + w / 2, CANVAS + h / 2
    best = min(
        faces, key=lambda f: abs(f.box[0] + f.box[2] / 2 - cx) + abs(f.box[1] + f.box[3] / 2 - cy)
    )
    x, y, bw, bh = best.box
    return Face(box=(x - CANVAS, y - CANVAS, bw, bh))


def recognition_encoder(recognition: Any) -> Any:
    """The recognize stage's encoder for a config's ``recognition`` section."""
    from pipeline.recognition.encoder import DlibEncoder

    return DlibEncoder.from_config(recognition)


def uses_encodings(estimator: Any) -> bool:
    """Whether the estimator (or a member of an ensemble) reuses ``Face.encoding``."""
    members = getattr(estimator, "members", None) or [estimator]
    return any(
        getattr(getattr(m, "options", None), "reuse_encoding", False)
        and getattr(m, "_encoder", None) is not None
        for m in members
    )


class StageEncodings:
    """Encodings of evaluation faces as the recognize stage makes them, cached on disk.

    ``cache_dir`` is an :class:`pipeline.recognition.verify.EncodingCache` directory; its
    name should carry the encoder settings (:func:`encoding_cache_name`).
    """

    def __init__(self, encoder: Any, cache_dir: Path) -> None:
        from pipeline.recognition.verify import EncodingCache

        self.encoder = encoder
        self.cache = EncodingCache(cache_dir)
        self.computed = 0

    def __call__(self, key: str, image: np.ndarray, face: Face) -> list[float]:
        box = tuple(int(round(v)) for v in face.box)
        vec = self.cache.get(key, box)  # type: ignore[arg-type]
        if vec is None:
            vec = self.encoder.encode(np.ascontiguousarray(image), [face])[0]
            self.cache.put(key, box, vec)  # type: ignore[arg-type]
            self.computed += 1
            if self.computed % 100 == 0:
                self.cache.flush()
        return [round(float(x), ENCODING_DIGITS) for x in vec]

    def flush(self) -> None:
        self.cache.flush()


def encoding_cache_name(recognition: Any) -> str:
    """A cache directory name for the recognize stage's encoder settings."""
    flip = "-flip" if recognition.flip else ""
    return f"encodings-jitter{recognition.num_jitters}-up{recognition.upscale_below_px}{flip}"


def evaluate_estimator(
    estimator: Any,
    samples: Sequence[Labelled],
    read: Callable[[str], np.ndarray],
    detector: Any | None = None,
    encodings: Callable[[str, np.ndarray, Face], list[float]] | None = None,
    time_n: int = 200,
    label: str = "",
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Metrics of one estimator on ``samples`` and its predictions (age, p(female)).

    Each face is estimated with one ``estimator.estimate(image, [face])`` call, as the
    attributes stage does; with ``encodings`` the face carries the recognize stage's
    encoding. ``detector``: find the box with it (its misses fall back to the face-crop
    box and are counted). Timing: the median wall time of that call on the first
    ``time_n`` faces, and - with ``encodings`` - of the same call without the encoding (the
    ``facepipe analyze`` path, where the backend encodes the face itself).
    """
    pred_age, p_female = [], []
    reused_s: list[float] = []
    alone_s: list[float] = []
    missed = 0
    for k, s in enumerate(samples):
        image = read(s.name)
        box = hog_box(detector, image) if detector is not None else None
        missed += detector is not None and box is None
        face = box or face_crop_box(image)
        if encodings is not None:
            face = Face(box=face.box, encoding=encodings(s.name, image, face))
        t0 = time.perf_counter()
        result = estimator.estimate(image, [face])[0]
        if k < time_n:
            reused_s.append(time.perf_counter() - t0)
            if encodings is not None:
                t0 = time.perf_counter()
                estimator.estimate(image, [Face(box=face.box)])
                alone_s.append(time.perf_counter() - t0)
        pred_age.append(result.age)
        p_female.append(result.p_female)
        if (k + 1) % 500 == 0:
            log(f"{label}: {k + 1}/{len(samples)}")
    if encodings is not None and hasattr(encodings, "flush"):
        encodings.flush()
    preds = (np.array(pred_age, dtype=np.float64), np.array(p_female, dtype=np.float64))
    m = age_gender_metrics(*preds, [s.age for s in samples], [s.gender for s in samples])
    m.update(detail_metrics(preds, samples))
    if encodings is not None:
        m["ms_per_face_median"] = median_ms(alone_s)
        m["ms_per_face_reusing_encoding"] = median_ms(reused_s)
    else:
        m["ms_per_face_median"] = median_ms(reused_s)
    m["ms_timed_faces"] = len(reused_s)
    m["crop_margin"] = getattr(estimator, "crop_margin", None)
    if detector is not None:
        m["hog_missed"] = int(missed)
    return m, preds


def pipeline_gender_threshold() -> float:
    """The default of ``attributes.min_gender_confidence``: below it the pipeline says
    gender "unknown"."""
    from pipeline.config import AttributesConfig

    return float(AttributesConfig.model_fields["min_gender_confidence"].default)


def detail_metrics(
    preds: tuple[np.ndarray, np.ndarray],
    samples: Sequence[Labelled],
    min_confidence: float | None = None,
) -> dict[str, Any]:
    """Per-group figures (when the samples carry ``race``), also at the gender threshold
    ``min_confidence`` (default: the pipeline's), and the abstention curve."""
    ages = [s.age for s in samples]
    genders = [s.gender for s in samples]
    out: dict[str, Any] = {"abstention": abstention_curve(preds[1], ages, genders)}
    races = [getattr(s, "race", None) for s in samples]
    if samples and all(r is not None for r in races):
        threshold = pipeline_gender_threshold() if min_confidence is None else min_confidence
        out["by_group"] = group_metrics(
            *preds, ages, genders, races, min_confidence=threshold  # type: ignore[arg-type]
        )
    return out


def measure_framing(detector: Any, images: Iterable[np.ndarray], seed: int = 0) -> dict[str, Any]:
    """The detector's box side / image side on face crops shown at random sizes (110-320
    px): the margin that turns its box into a UTKFace-like crop."""
    import cv2

    rng = np.random.default_rng(seed)
    rel, centres, missed = [], [], 0
    for im in images:
        side = int(rng.integers(110, 321))
        im = cv2.resize(im, (side, side), interpolation=cv2.INTER_AREA)
        f = hog_box(detector, im)
        if f is None:
            missed += 1
            continue
        x, y, w, h = f.box
        rel.append(w / side)
        centres.append(((x + w / 2) / side, (y + h / 2) / side))
    rel_a = np.array(rel)
    c = np.array(centres)
    margins = (1.0 / rel_a - 1.0) / 2.0
    return {
        "images": len(rel) + missed,
        "missed": missed,
        "box_side_median": round(float(np.median(rel_a)), 3),
        "box_side_p10_p90": [round(float(v), 3) for v in np.percentile(rel_a, [10, 90])],
        "margin_median": round(float(np.median(margins)), 3),
        "centre_median": [round(float(v), 3) for v in np.median(c, axis=0)],
    }


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    """The results page (``docs/attributes_eval*.md``)."""
    lines = [
        "# Age/gender backends on the UTKFace validation split",
        "",
        f"- machine: {meta['machine']}"
        + (f"; load average at start {meta['loadavg_start']}" if "loadavg_start" in meta else ""),
        f"- command: `{meta['command']}`",
        f"- images: {meta['images']} (validation split, never trained on); boxes: {meta['boxes']}",
        f"- encodings: {meta.get('encodings', 'computed by each backend')}",
        f"- date: {meta['date']}",
        "",
        "| backend | age MAE (years) | gender accuracy | gender, age >= 13 "
        "| worst adult group, gender | ms / face (median) "
        "| ms / face, encoding reused | crop_margin |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results.items():
        if "error" in m:
            lines.append(f"| {name} | error: {m['error']} | | | | | |")
            continue
        ms = f"{m['ms_per_face_median']:.1f}" if m.get("ms_per_face_median") else "n/a"
        reuse = m.get("ms_per_face_reusing_encoding")
        worst = (m.get("by_group") or {}).get("worst_adult_gender")
        worst_s = (
            f"{worst['gender_accuracy']:.1%} ({worst['group']}, n={worst['n']})" if worst else "-"
        )
        lines.append(
            f"| {name} | {m['age_mae']:.2f} | {m['gender_accuracy']:.1%} | "
            f"{m['gender_accuracy_13plus']:.1%} | {worst_s} | {ms} | "
            f"{reuse if reuse is not None else '-'} | {m['crop_margin']} |"
        )
    groups = [g for m in results.values() if "by_age_group" in m for g in m["by_age_group"]]
    groups = list(dict.fromkeys(groups))
    if groups:
        ok = [n for n, m in results.items() if "by_age_group" in m]
        lines += ["", "Age MAE (years) / gender accuracy by true age group:", ""]
        lines.append("| age | n | " + " | ".join(ok) + " |")
        lines.append("|---|---|" + "---|" * len(ok))
        for g in groups:
            n = next(
                results[b]["by_age_group"][g]["n"] for b in ok if g in results[b]["by_age_group"]
            )
            cells = []
            for b in ok:
                v = results[b]["by_age_group"].get(g)
                cells.append(f"{v['age_mae']:.1f} / {v['gender_accuracy']:.0%}" if v else "")
            lines.append(f"| {g} | {n} | " + " | ".join(cells) + " |")
    for name in meta.get("detail", []):
        if name in results and "by_group" in results[name]:
            lines += group_markdown(name, results[name])
    if meta.get("framing"):
        f = meta["framing"]
        lines += [
            "",
            f"HOG framing on {f['images']} validation images shown at 110-320 px "
            f"({f['missed']} missed): box side = {f['box_side_median']} of the image side "
            f"(p10-p90 {f['box_side_p10_p90']}), centre {f['centre_median']}, so a margin of "
            f"{f['margin_median']} per side turns a HOG box into a UTKFace-like crop "
            f"(pipeline uses {meta.get('utkface_box_fraction')}).",
        ]
    return "\n".join(lines) + "\n"


def group_markdown(name: str, m: dict[str, Any]) -> list[str]:
    """Per-group table and abstention curve of one backend."""
    g = m["by_group"]
    lines = [
        "",
        f"### `{name}`: race x gender x age band",
        "",
        f"UTKFace's race labels; adult groups are the bands from {g['adult_from']} on. "
        f"Worst adult group (n >= {g['min_n']}): "
        + (
            f"{g['worst_adult_gender']['group']} {g['worst_adult_gender']['gender_accuracy']:.1%}"
            f" gender (n={g['worst_adult_gender']['n']})"
            if g["worst_adult_gender"]
            else "-"
        )
        + f"; adult groups below 93 % gender: {', '.join(g['adult_groups_below_93']) or 'none'}. "
        "`low95`: lower end of the 95 % Wilson interval (small groups are uncertain).",
    ]
    t = g.get("min_confidence")
    if t is not None:
        w = g["worst_adult_gender_answered"]
        lines.append(
            f"With the pipeline's abstention (gender \"unknown\" below {t} on the chosen "
            "gender's probability; here per image, the pipeline per track): worst adult "
            "group (n >= "
            f"{g['min_n']}) "
            + (
                f"{w['group']} {w['gender_accuracy_answered']:.1%} of the {w['coverage']:.1%} "
                "given a gender"
                if w
                else "-"
            )
            + "; adult groups below 93 %: "
            f"{', '.join(g['adult_groups_answered_below_93']) or 'none'}."
        )
    lines += [
        "",
        "| group | n | age MAE | gender | low95 |"
        + (f" coverage at {t} | gender at {t} |" if t is not None else ""),
        "|---|---|---|---|---|" + ("---|---|" if t is not None else ""),
    ]

    def pct(v: float | None) -> str:
        return f"{v:.1%}" if v is not None else "-"

    for k, v in g["groups"].items():
        lines.append(
            f"| {k} | {v['n']} | {v['age_mae']:.1f} | {v['gender_accuracy']:.1%} | "
            f"{v['gender_accuracy_low95']:.1%} |"
            + (
                f" {pct(v['coverage'])} | {pct(v['gender_accuracy_answered'])} |"
                if t is not None
                else ""
            )
        )
    lines += [
        "",
        f"### `{name}`: gender with abstention",
        "",
        'Gender is "unknown" when the probability of the chosen gender is below the '
        "threshold (the pipeline applies it per track, `attributes.min_gender_confidence`, "
        "on the mean p(female) of the track's samples; here per image).",
        "",
        "| threshold | coverage | accuracy | coverage 0-12 | accuracy 0-12 | coverage 13+ "
        "| accuracy 13+ |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in m.get("abstention", []):
        cells = [
            pct(row[part][key])
            for part in ("all", "0-12", "13+")
            for key in ("coverage", "accuracy")
        ]
        lines.append(f"| {row['threshold']} | " + " | ".join(cells) + " |")
    return lines


CARD_MARK = "<!-- per-group evaluation (scripts/eval_attributes.py --cards) -->"


def card_section(name: str, m: dict[str, Any], meta: dict[str, Any]) -> str:
    """The per-group part of a model card: the backend through the product's ``estimate``
    path on the validation split, with the command, machine and date."""
    g = m["by_group"]
    worst = g["worst_adult_gender"]
    head = [
        CARD_MARK,
        "",
        f"## Evaluation by group (backend `{name}` as shipped, validation split)",
        "",
        f"- command: `{meta['command']}` ({meta['date']}; {meta['machine']}); boxes: "
        f"{meta['boxes']}; {meta['images']} images",
        f"- overall: age MAE {m['age_mae']:.2f} years, gender {m['gender_accuracy']:.1%} "
        f"({m['gender_accuracy_13plus']:.1%} for ages 13+)",
        "- worst adult group (n >= "
        f"{g['min_n']}): "
        + (
            f"{worst['group']} {worst['gender_accuracy']:.1%} gender (n={worst['n']})"
            if worst
            else "-"
        ),
        "- the split is by file: UTKFace has no identity labels, so a person can be on both "
        "sides; expect less on people and cameras never seen",
    ]
    return "\n".join(head + group_markdown(name, m)) + "\n"


def write_card_section(card_md: Path, section: str) -> None:
    """Replace (or append) the per-group section of a model card."""
    text = card_md.read_text() if card_md.is_file() else ""
    if CARD_MARK in text:
        text = text[: text.index(CARD_MARK)].rstrip() + "\n"
    card_md.write_text(text.rstrip() + "\n\n" + section)


def add_leakage_options(ap: Any) -> None:
    """The options the UTKFace look-alike scripts share (``scripts/attributes_leakage.py``,
    ``scripts/attributes_by_person.py``): the recognize stage's encoding cache, the
    per-image predictions folder, a JSON output."""
    from pipeline.datasets import REPO_ROOT

    runs = REPO_ROOT / "runs" / "attributes"
    ap.add_argument("--stage-cache", type=Path, default=runs / "encodings-jitter1-up80" / "utkface")
    ap.add_argument("--runs", type=Path, default=runs)
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
