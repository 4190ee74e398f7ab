"""Open-set identification (1:N): the protocol, its metrics and the product's decision.

A gallery holds one photo per enrolled person; a probe is either *mated* (another photo
of an enrolled person) or *non-mated* (a person who is not enrolled). Two kinds of figure:

* the detection-and-identification rate (DIR) at a false-positive identification rate
  (FPIR): the threshold is the largest one that accepts at most ``floor(FPIR * n)`` of
  the non-mated probes' best-match distances; DIR is the share of mated probes whose
  nearest gallery photo is their own person's *and* within that threshold;
* the product's rule as it is: every probe goes through :func:`pipeline.fusion.fuse_identity`
  (what the sink calls, via ``EventStore.refuse``, to name an event) with the configured
  recognition threshold. A *wrong name* is a non-mated probe named anyone, or a mated
  probe named someone else.

Gallery construction (:func:`draw`): people with >= 2 images can be enrolled (their first
image by file name is the gallery photo, the others are mated probes); at most
``mated_share`` of them are enrolled in a draw, so the rest stay as non-mated probes. A
gallery larger than that is padded with people who have a single image (distractors:
enrolled, never probed). Every image of every person not enrolled is a non-mated probe.
``scripts/eval_openset.py`` is the command line; results in docs/openset.md.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import machine
from pipeline.evaluation.common import log, spread
from pipeline.fusion import fuse_identity
from pipeline.recognition.openset import OpenSetRule, Weight, score, weight_at
from pipeline.recognition.verify import load_pairs, threshold_at_far

FPIRS = (0.01, 0.001)
RULE_LABEL = "open-set (default)"
MARGINS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1)
SWEEP_DRAWS = 4


def person_of(key: str) -> str:
    """LFW image path -> person (``Name/Name_0001.jpg`` -> ``Name``)."""
    return key.split("/")[0]


def people_of(keys: Iterable[str]) -> dict[str, list[str]]:
    """Person -> their images, sorted by file name."""
    out: dict[str, list[str]] = defaultdict(list)
    for k in sorted(keys):
        out[person_of(k)].append(k)
    return dict(out)


@dataclass(frozen=True)
class Draw:
    gallery: list[str]  # one image per enrolled person (mated people first, then distractors)
    mated: list[str]  # probes of enrolled people
    non_mated: list[str]  # probes of people not enrolled
    mated_people: int
    distractors: int


def max_mated(people: dict[str, list[str]], mated_share: float = 0.5) -> int:
    """How many of the people with >= 2 images a draw may enrol."""
    return int(sum(len(v) >= 2 for v in people.values()) * mated_share)


def draw(
    people: dict[str, list[str]],
    size: int,
    rng: np.random.Generator,
    mated_share: float = 0.5,
) -> Draw:
    """One random gallery of ``size`` people and its probes (see the module docstring)."""
    multi = sorted(p for p, ims in people.items() if len(ims) >= 2)
    single = sorted(p for p, ims in people.items() if len(ims) == 1)
    n_mated = min(size, max_mated(people, mated_share))
    n_pad = size - n_mated
    if n_mated < 1 or n_pad > len(single):
        raise ValueError(
            f"gallery of {size}: {len(multi)} people with 2+ images "
            f"({n_mated} may be enrolled), {len(single)} single-image people to pad with"
        )
    enrolled = [multi[i] for i in sorted(rng.choice(len(multi), n_mated, replace=False))]
    pad = [single[i] for i in sorted(rng.choice(len(single), n_pad, replace=False))]
    chosen = set(enrolled) | set(pad)
    return Draw(
        gallery=[people[p][0] for p in enrolled + pad],
        mated=[k for p in enrolled for k in people[p][1:]],
        non_mated=[k for p in sorted(people) if p not in chosen for k in people[p]],
        mated_people=n_mated,
        distractors=n_pad,
    )


def pair_rule(threshold: float) -> OpenSetRule:
    """The rule before issue 10 as an :class:`OpenSetRule`: a fixed pair threshold, no
    margin, no per-person thresholds (nearest photo within ``threshold``)."""
    return OpenSetRule(ceiling=threshold, target_fpir=None, margin=0.0, person_min_photos=0)


def rank1(probes: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and Euclidean distance of each probe's nearest gallery row."""
    best = np.empty(len(probes), dtype=int)
    dist = np.empty(len(probes))
    for i, p in enumerate(probes):  # one row at a time: a 1,000 x 2,000 x 128 block is 2 GB
        d = np.linalg.norm(gallery - p, axis=1)
        best[i] = int(d.argmin())
        dist[i] = d[best[i]]
    return best, dist


def dir_at_fpir(
    mated_correct: np.ndarray, mated_dist: np.ndarray, non_mated_dist: np.ndarray, fpir: float
) -> tuple[float, float]:
    """(DIR, threshold) at ``fpir``: the threshold accepts at most ``floor(fpir * n)``
    non-mated best matches; DIR = share of mated probes rank-1 correct and accepted."""
    t = threshold_at_far(non_mated_dist, fpir)
    return float(np.mean(mated_correct & (mated_dist <= t))), t


@dataclass(frozen=True)
class Decision:
    """The product's answers for one draw."""

    mated_right: int  # mated probes named as themselves
    mated_wrong: int  # mated probes named as someone else
    mated: int
    non_mated_named: int  # non-mated probes given any name (a wrong name)
    non_mated: int

    @property
    def wrong_names(self) -> int:
        return self.mated_wrong + self.non_mated_named

    @property
    def probes(self) -> int:
        return self.mated + self.non_mated


def product_names(
    probes: np.ndarray,
    gallery_names: Sequence[str],
    gallery: np.ndarray,
    threshold: float | OpenSetRule,
) -> list[str | None]:
    """The name the product gives each probe (a one-sample track): ``fuse_identity``."""
    return [fuse_identity(p[None, :], gallery_names, gallery, threshold).name for p in probes]


def decide(
    draw_: Draw,
    gallery_enc: dict[str, np.ndarray],
    probe_enc: dict[str, np.ndarray],
    threshold: float | OpenSetRule,
) -> tuple[Decision, list[str | None], list[str | None]]:
    """Run the product's rule on every probe of a draw and count its right and wrong names."""
    names = [person_of(k) for k in draw_.gallery]
    gal = np.stack([gallery_enc[k] for k in draw_.gallery])
    mated = product_names(np.stack([probe_enc[k] for k in draw_.mated]), names, gal, threshold)
    non = product_names(np.stack([probe_enc[k] for k in draw_.non_mated]), names, gal, threshold)
    truth = [person_of(k) for k in draw_.mated]
    return (
        Decision(
            mated_right=sum(n == t for n, t in zip(mated, truth, strict=True)),
            mated_wrong=sum(n is not None and n != t for n, t in zip(mated, truth, strict=True)),
            mated=len(mated),
            non_mated_named=sum(n is not None for n in non),
            non_mated=len(non),
        ),
        mated,
        non,
    )


def second_person(
    probes: np.ndarray, gallery: np.ndarray, names: np.ndarray, best: np.ndarray
) -> np.ndarray:
    """Each probe's distance to the nearest gallery photo of another person than its
    nearest one (inf if there is none): the margin's rival."""
    out = np.empty(len(probes))
    for i, p in enumerate(probes):
        d = np.linalg.norm(gallery - p, axis=1)
        other = d[names != names[best[i]]]
        out[i] = other.min() if len(other) else np.inf
    return out


def evaluate_draw(
    draw_: Draw,
    gallery_enc: dict[str, np.ndarray],
    probe_enc: dict[str, np.ndarray],
    threshold: float | OpenSetRule,
    fpirs: Sequence[float] = FPIRS,
    rules: dict[str, OpenSetRule] | None = None,
) -> dict[str, object]:
    """Every figure of one draw: DIR at each FPIR and the product rule's counts (of
    ``threshold``'s rule; and of each of ``rules``, under ``"rules"``)."""
    gal = np.stack([gallery_enc[k] for k in draw_.gallery])
    names = np.array([person_of(k) for k in draw_.gallery], dtype=object)
    m_probes = np.stack([probe_enc[k] for k in draw_.mated])
    n_probes = np.stack([probe_enc[k] for k in draw_.non_mated])
    m_idx, m_dist = rank1(m_probes, gal)
    n_idx, n_dist = rank1(n_probes, gal)
    correct = names[m_idx] == np.array([person_of(k) for k in draw_.mated], dtype=object)
    dec, _, _ = decide(draw_, gallery_enc, probe_enc, threshold)
    out: dict[str, object] = {
        "gallery": len(draw_.gallery),
        "mated_people": draw_.mated_people,
        "distractors": draw_.distractors,
        "mated_probes": len(draw_.mated),
        "non_mated_probes": len(draw_.non_mated),
        "rank1": float(correct.mean()),
        **_counts(dec),
        "dir_at_fpir": {},
    }
    for f in fpirs:
        rate, t = dir_at_fpir(correct, m_dist, n_dist, f)
        out["dir_at_fpir"][f"{f:g}"] = {"dir": rate, "threshold": round(t, 4)}  # type: ignore[index]
    if rules:
        m_gap = second_person(m_probes, gal, names, m_idx) - m_dist
        n_gap = second_person(n_probes, gal, names, n_idx) - n_dist
        out["rules"] = {}
        for label, rule in rules.items():
            d, _, _ = decide(draw_, gallery_enc, probe_enc, rule)
            row: dict[str, object] = {
                **_counts(d),
                "threshold": rule.gallery_threshold(len(set(names))),
                "dir_at_fpir": {},
            }
            # the rule's margin as a gate, its score's threshold swept: DIR at each FPIR
            n = len(set(names))
            m_score = np.where(m_gap >= rule.margin, rule.score(m_dist, m_dist + m_gap, n), np.inf)
            n_score = np.where(n_gap >= rule.margin, rule.score(n_dist, n_dist + n_gap, n), np.inf)
            for f in fpirs:
                rate, t = dir_at_fpir(correct, m_score, n_score, f)
                row["dir_at_fpir"][f"{f:g}"] = {"dir": rate, "threshold": round(t, 4)}  # type: ignore[index]
            out["rules"][label] = row  # type: ignore[index]
    return out


def _counts(dec: Decision) -> dict[str, float]:
    return {
        "non_mated_named": dec.non_mated_named,
        "mated_wrong": dec.mated_wrong,
        "mated_right": dec.mated_right,
        "fpir_default": dec.non_mated_named / dec.non_mated,
        "mated_wrong_rate": dec.mated_wrong / dec.mated,
        "dir_default": dec.mated_right / dec.mated,
        "wrong_name_rate": dec.wrong_names / dec.probes,
    }


def summarise(rows: list[dict[str, object]]) -> dict[str, object]:
    """Mean, minimum and maximum over draws of each rate, and the sizes of the first draw
    (each rule's under ``"rules"``)."""

    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}

    keys = ("rank1", "fpir_default", "mated_wrong_rate", "dir_default", "wrong_name_rate")
    out: dict[str, object] = {k: stats([float(r[k]) for r in rows]) for k in keys}  # type: ignore[arg-type]
    for f in rows[0]["dir_at_fpir"]:  # type: ignore[union-attr]
        out[f"dir_at_fpir_{f}"] = stats([r["dir_at_fpir"][f]["dir"] for r in rows])  # type: ignore[index]
        out[f"threshold_at_fpir_{f}"] = stats(
            [r["dir_at_fpir"][f]["threshold"] for r in rows]  # type: ignore[index]
        )
    for k in ("gallery", "mated_people", "distractors"):
        out[k] = rows[0][k]
    for k in ("mated_probes", "non_mated_probes"):
        out[k] = stats([float(r[k]) for r in rows])  # type: ignore[arg-type]
    out["draws"] = len(rows)
    if "rules" in rows[0]:
        out["rules"] = {
            label: summarise_rule([r["rules"][label] for r in rows])  # type: ignore[index]
            for label in rows[0]["rules"]  # type: ignore[union-attr]
        }
    return out


def summarise_rule(rows: list[dict[str, Any]]) -> dict[str, object]:
    """One rule's figures over the draws (mean, min, max)."""

    def stats(values: list[float]) -> dict[str, float]:
        return {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}

    keys = ("fpir_default", "mated_wrong_rate", "dir_default", "wrong_name_rate", "threshold")
    out: dict[str, object] = {k: stats([float(r[k]) for r in rows]) for k in keys}
    for f in rows[0]["dir_at_fpir"]:
        out[f"dir_at_fpir_{f}"] = stats([r["dir_at_fpir"][f]["dir"] for r in rows])
        out[f"threshold_at_fpir_{f}"] = stats([r["dir_at_fpir"][f]["threshold"] for r in rows])
    return out


# ----- the LFW run and the page -----------------------------------------------------------


def run_lfw(
    gallery_enc: dict[str, np.ndarray],
    probe_enc: dict[str, np.ndarray],
    threshold: float,
    sizes: Sequence[int],
    draws: int,
    seed: int = 0,
    mated_share: float = 0.5,
    rules: dict[str, OpenSetRule] | None = None,
) -> dict[str, object]:
    """Every gallery size, ``draws`` seeded draws each (draw ``i`` of size ``n`` uses
    ``default_rng([seed, n, i])``); the dataset's counts and each size's summary (the
    top-level figures at the fixed pair ``threshold``; each of ``rules`` under "rules")."""
    people = people_of(probe_enc)
    multi = sum(len(v) >= 2 for v in people.values())
    out: dict[str, object] = {
        "images": len(probe_enc),
        "people": len(people),
        "people_2plus": multi,
        "people_single": len(people) - multi,
        "max_mated_people": max_mated(people, mated_share),
        "mated_share": mated_share,
        "threshold": float(threshold),
        "seed": seed,
        "sizes": {},
    }
    fixed = pair_rule(float(threshold))
    for n in sizes:
        rows = [
            evaluate_draw(
                draw(people, n, np.random.default_rng([seed, n, i]), mated_share),
                gallery_enc,
                probe_enc,
                fixed,
                rules=rules,
            )
            for i in range(draws)
        ]
        out["sizes"][str(n)] = summarise(rows)  # type: ignore[index]
    return out


def _pct(s: dict[str, float], digits: int = 1) -> str:
    return (
        f"{100 * s['mean']:.{digits}f} % ({100 * s['min']:.{digits}f}-{100 * s['max']:.{digits}f})"
    )


def lfw_tables(r: dict[str, Any]) -> list[str]:
    """The LFW section's tables (markdown lines)."""
    sizes = r["sizes"]
    lines = [
        "| gallery | enrolled with probes | distractors | mated probes | non-mated probes "
        "| rank-1 | DIR @ FPIR 1 % | DIR @ FPIR 0.1 % | threshold @ FPIR 1 % "
        "| threshold @ FPIR 0.1 % |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, s in sizes.items():
        lines.append(
            f"| {n} | {s['mated_people']} | {s['distractors']} "
            f"| {s['mated_probes']['mean']:.0f} | {s['non_mated_probes']['mean']:.0f} "
            f"| {_pct(s['rank1'])} | {_pct(s['dir_at_fpir_0.01'])} "
            f"| {_pct(s['dir_at_fpir_0.001'])} | {s['threshold_at_fpir_0.01']['mean']:.3f} "
            f"| {s['threshold_at_fpir_0.001']['mean']:.3f} |"
        )
    lines += [
        "",
        f"The rule before issue 10 (the nearest photo within the pair threshold "
        f"{r['threshold']:.2f}, whatever the gallery size):",
        "",
        "| gallery | wrong names (all probes) | non-mated probes named (FPIR) "
        "| mated probes named someone else | mated probes named right (DIR) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, s in sizes.items():
        lines.append(
            f"| {n} | {_pct(s['wrong_name_rate'])} | {_pct(s['fpir_default'])} "
            f"| {_pct(s['mated_wrong_rate'])} | {_pct(s['dir_default'])} |"
        )
    first = next(iter(sizes.values()))
    if "rules" not in first:
        return lines
    lines += [
        "",
        "Side by side: the rule before (nearest photo within the pair threshold "
        f"{r['threshold']:.2f}) and the product's rule now at its default settings "
        "(`pipeline/recognition/openset.py`, below; the threshold column: the distance "
        "threshold before, the score threshold for the gallery's size now). DIR @ FPIR "
        "for the rule now: its margin as a gate, its score's threshold swept as above.",
        "",
        "| gallery | rule | threshold | wrong names (all probes) | non-mated probes named "
        "(FPIR) | mated named someone else | mated named right (DIR) | DIR @ FPIR 1 % "
        "| DIR @ FPIR 0.1 % |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, s in sizes.items():
        rows = [("pair threshold (before)", s, f"{r['threshold']:.3f}")]
        rows += [(label, x, f"{x['threshold']['mean']:.3f}") for label, x in s["rules"].items()]
        for label, x, t in rows:
            lines.append(
                f"| {n} | {label} | {t} | {_pct(x['wrong_name_rate'])} "
                f"| {_pct(x['fpir_default'])} | {_pct(x['mated_wrong_rate'])} "
                f"| {_pct(x['dir_default'])} | {_pct(x['dir_at_fpir_0.01'])} "
                f"| {_pct(x['dir_at_fpir_0.001'])} |"
            )
    return lines


def _weight_text(weight: Any) -> str:
    """The weight per gallery size as prose ("0 at N <= 5, 0.25 at 10, ...")."""
    if isinstance(weight, (int, float)):
        return f"{weight:g} at every N"
    parts = [f"{w:g} at N={n}" for n, w in weight]
    return ", ".join(parts) + " (linear in log N between, held beyond)"


def weight_lines(rec: dict[str, Any]) -> list[str]:
    """The weight sweep (from ``--calibrate``) as a table, if the record has it."""
    sweep = (rec.get("calibration") or {}).get("weights_tried")
    if not sweep:
        return []
    weights = sorted(sweep, key=float)
    sizes = sorted({n for w in weights for n in sweep[w]}, key=int)
    lines = [
        "Weight sweep (`--calibrate`; DIR at a measured FPIR of 1 %, the threshold set on "
        "the same draw's strangers; draws per size "
        + ", ".join(f"{n}: {SWEEP_SIZES.get(int(n), '?')}" for n in sizes)
        + "):",
        "",
        "| weight | " + " | ".join(f"N={n}" for n in sizes) + " |",
        "|---:|" + "---:|" * len(sizes),
    ]
    for w in weights:
        cells = [f"{100 * sweep[w][n]['0.01']:.1f} %" if n in sweep[w] else "-" for n in sizes]
        lines.append(f"| {w} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def calibration_lines(rec: dict[str, Any]) -> list[str]:
    """The calibration paragraph and its held-out check."""
    c, rule = rec.get("calibration"), rec.get("rule")
    if not c or not rule:
        return []
    quant = ", ".join(f"{q:g}: {d:.3f}" for q, d in c["quantiles"])
    row = rule["table"].get(f"{rule['target_fpir']:g}", []) if rule["target_fpir"] else []
    lines = [
        "### The rule now and its calibration",
        "",
        f"Settings (defaults): target FPIR {rule['target_fpir']}, margin {rule['margin']}, "
        f"per-person thresholds from {rule['person_min_photos']} photos "
        f"(scale {rule['person_scale']}), enrolment quality >= {rule['min_enrol_quality']}, "
        f"pair ceiling {rule['ceiling']}. A face is named when its score "
        f"`d1 - w(N) x min(d2 - d1, {rule['gap_cap']:g})` (d1, d2: distances to "
        "the nearest and second-nearest person; w(N) the margin's weight for a gallery of N "
        f"people, {_weight_text(rule['weight'])}) is within the threshold for the gallery's "
        "size N at the target FPIR, and the other conditions hold. The weights: at each "
        "gallery size the smallest of the sweep below whose DIR at FPIR 1 % is within "
        f"{100 * WEIGHT_TOLERANCE:g} point of the best, never smaller than at a smaller "
        "gallery. The thresholds "
        "(`CALIBRATED` in `pipeline/recognition/openset.py`, from `python "
        "scripts/eval_openset.py --calibrate`): for N people, 20 random galleries of N LFW "
        "people (one random photo each), every image of everyone else a stranger; the "
        "largest score at most the target share of the pooled strangers' scores reach. "
        "At the default FPIR: "
        + ", ".join(f"N={n}: {t:.3f}" for n, t in row)
        + ". For comparison, the distance alone: a share q of this run's "
        f"{c['impostor_pairs']:,} LFW impostor pairs is within Q(q) = {quant}; a stranger "
        "against N independent people is named with probability 1 - (1 - q)^N, so the "
        "distance threshold for FPIR 1 % would be Q(1e-3) at N=10, Q(1e-4) at 100, "
        "Q(1e-5) at 1,000 (close to the measured distance thresholds in the first table). "
        "The margin term lets a face that stands out from the crowd be named further away; "
        "in a gallery of a few people there is no crowd (a stranger's second-nearest is just "
        "another enrolled person, as far as any), and the term only costs the enrolled "
        "who resemble each other, so its weight falls to 0 there.",
        "",
        *weight_lines(rec),
        "The per-person scale: people with 4+ images, their first 3 enrolled, each other "
        "image's distance to the nearest of the 3 over the largest distance between the 3: "
        + ", ".join(f"{p}th percentile {v}" for p, v in c["person_ratio_percentiles"].items())
        + f" ({c['person_ratio_probes']} probes). "
        "The margin: the largest of the sweep below that costs at most 1 point of DIR at "
        "every gallery size.",
        "",
        *margin_lines(rec),
        "Held-out check (the thresholds are measured on the same images the draws use): "
        "the people split in two random halves, the threshold table measured on one half "
        "only, the rule with it applied to galleries and strangers of the other half "
        "(both ways round, "
        + f"{next(iter(c['heldout'].values()))['draws'] if c['heldout'] else 0} draws per size):",
        "",
        "| gallery | threshold | strangers named (target "
        f"{100 * (rule['target_fpir'] or 0):g} %) | wrong names | DIR |",
        "|---:|---:|---:|---:|---:|",
    ]
    for n, h in c["heldout"].items():
        lines.append(
            f"| {n} | {h['t']:.3f} | {100 * h['fpir']:.2f} % | {100 * h['wrong']:.2f} % "
            f"| {100 * h['dir']:.1f} % |"
        )
    return lines


def _meta_lines(rec: dict[str, Any]) -> list[str]:
    m = rec["machine"]
    return [
        f"Command: `{rec['command']}`; run {rec['date']} on {m['cpu']} ({m['cores']} cores, "
        f"shared; load average {m['loadavg_start'][0]} at the start), Python {m['python']}, "
        f"dlib {m.get('dlib', '?')}.",
    ]


def _enrolment_lines(rec: dict[str, Any]) -> list[str]:
    """What encoding the gallery with fewer jitters than enrolment does changes."""
    if rec["gallery_jitters"] == rec["enroll_jitters"]:
        return []
    lines = [
        f"`facepipe enroll` encodes photos with {rec['enroll_jitters']} jitters; this run "
        f"encoded the gallery with {rec['gallery_jitters']} (as the probes), because "
        f"{rec['enroll_jitters']} jitters cost ~10x per photo (~1.6 s of CPU each on the "
        "shared 2-core machine of the first run, ~30 min for the 1,241 candidate gallery photos).",
    ]
    c = rec.get("enrolment_check")
    if c:
        p, e = c["plain"], c["enrolled"]
        lines[0] += (
            f" The difference, measured on the {c['gallery_photos']} gallery photos encoded "
            f"both ways: against every other image, {100 * p['impostor_accept']:.2f} % of "
            f"impostor pairs are within {rec['results']['threshold']:.2f} with "
            f"{rec['gallery_jitters']} jitter(s), {100 * e['impostor_accept']:.2f} % with "
            f"{rec['enroll_jitters']} ({p['impostor_pairs']:,} pairs); genuine pairs "
            f"accepted {100 * p['genuine_accept']:.0f} % and {100 * e['genuine_accept']:.0f} % "
            f"({p['genuine_pairs']} pairs). "
            + (
                "Enrolment's jitters do not make false matches rarer, so the wrong-name "
                "rates below are not pessimistic on that account."
                if e["impostor_accept"] >= p["impostor_accept"]
                else "Enrolment's jitters make false matches rarer: the wrong-name rates "
                "below overstate the product's by about that ratio."
            )
        )
    return [*lines, ""]


def lfw_section(rec: dict[str, Any]) -> list[str]:
    r = rec["results"]
    sizes = list(r["sizes"])
    first, last = r["sizes"][sizes[0]], r["sizes"][sizes[-1]]
    return [
        "## LFW: open-set identification",
        "",
        *_meta_lines(rec),
        "",
        f"Data: `lfw-pairs-subset` (LFW folds 1-3): {r['images']:,} images of "
        f"{r['people']:,} people, {r['people_2plus']} of them with 2+ images, "
        f"{r['people_single']} with one. Encodings: the recognize stage's "
        f"(`DlibEncoder.from_config`, {rec['probe_encoder']}) for probes, `facepipe enroll`'s "
        f"(`DlibEncoder(num_jitters={rec['gallery_jitters']})`) for gallery photos; the face is "
        "the verification protocol's (HOG's central face, else the fixed fallback box), "
        "cached under `runs/verification/`.",
        "",
        *_enrolment_lines(rec),
        f"Construction, per draw (gallery size N, {rec['draws']} draws per size, seeded "
        f"`numpy.random.default_rng([{r['seed']}, N, draw])`): "
        f"min(N, {r['max_mated_people']}) of the {r['people_2plus']} people with 2+ images are "
        "enrolled (at most half of them, so that the other half stays as non-mated probes); "
        "each enrolled person's gallery photo is their first image by file name, their other "
        "images are the mated probes. When N is larger, the gallery is padded with "
        "N - " + str(r["max_mated_people"]) + " randomly drawn single-image people "
        "(distractors: enrolled, never probed). Every image of every person not enrolled "
        "(the other people with 2+ images and the single-image people not drawn) is a "
        "non-mated probe. One gallery photo per person; each probe is one photo, i.e. a "
        "track with one sample; the product's face-quality gate (`min_name_quality`) is "
        "not applied (LFW faces are large and sharp).",
        "",
        "DIR (detection-and-identification rate) at an FPIR (false-positive identification "
        "rate): the threshold accepts at most floor(FPIR x n) of the n non-mated probes' "
        "best-match distances (set on the same probes, so the FPIR is met exactly); DIR is "
        "the share of mated probes whose nearest gallery photo is their own and within it. "
        "With under 1,000 non-mated probes, FPIR 0.1 % means that none may pass. Figures: "
        "mean over draws (min-max).",
        "",
        *lfw_tables(r),
        "",
        f"Before, at the pair threshold {r['threshold']:.2f}, wrong names: "
        f"{100 * first['wrong_name_rate']['mean']:.1f} % of all probes with {sizes[0]} "
        f"people enrolled, {100 * last['wrong_name_rate']['mean']:.1f} % with {sizes[-1]}; "
        f"a not-enrolled person gets a name {100 * first['fpir_default']['mean']:.1f} % of the "
        f"time with {sizes[0]}, {100 * last['fpir_default']['mean']:.1f} % with {sizes[-1]}. "
        f"The threshold that keeps that at 1 % falls from "
        f"{first['threshold_at_fpir_0.01']['mean']:.3f} to "
        f"{last['threshold_at_fpir_0.01']['mean']:.3f}: a pair threshold (1:1) does not hold "
        "for 1:N." + _now_sentence(r, sizes),
        "",
        *calibration_lines(rec),
    ]


def _now_sentence(r: dict[str, Any], sizes: list[str]) -> str:
    """The rule now, in one sentence (empty without its figures)."""
    if "rules" not in r["sizes"][sizes[0]]:
        return ""
    (label,) = list(r["sizes"][sizes[0]]["rules"])[:1]
    now = [r["sizes"][n]["rules"][label] for n in sizes]
    return (
        " Now (the open-set rule at its defaults) wrong names are "
        + ", ".join(
            f"{100 * x['wrong_name_rate']['mean']:.1f} % at {n}"
            for n, x in zip(sizes, now, strict=True)
        )
        + " people, and the enrolled are named "
        + ", ".join(f"{100 * x['dir_default']['mean']:.1f} %" for x in now)
        + " of the time; at a measured FPIR of 1 % its score "
        "names "
        + ", ".join(f"{100 * x['dir_at_fpir_0.01']['mean']:.1f} %" for x in now)
        + " where the distance alone names "
        + ", ".join(f"{100 * r['sizes'][n]['dir_at_fpir_0.01']['mean']:.1f} %" for n in sizes)
        + "."
    )


def write_markdown(docs: Path) -> None:
    """``docs/openset.md`` from the result files present in ``docs/openset/``."""
    parts = [
        "# Open-set identification and where the default rule errs",
        "",
        "Generated by `scripts/eval_openset.py` (library: `pipeline/evaluation/openset.py`) "
        "and `scripts/eval_openset_video.py` (`pipeline/evaluation/openset_video.py`) "
        "from `docs/openset/*.json`; do not edit by hand. It measures the product's "
        "decision rule (`pipeline/fusion.py` `fuse_identity`, the function the sink calls "
        "to name an event): the open-set rule of `pipeline/recognition/openset.py` "
        "(issue 10: a score, the distance to the nearest person minus a share of the "
        "margin to the next that grows with the gallery, none up to 10 people, within a "
        "threshold calibrated per gallery size to keep the share of "
        "strangers given a name at `recognition.target_fpir`; a minimum margin over the "
        "second-nearest person; quality-gated enrolment; per-person thresholds), side by "
        "side with the rule it replaced (the nearest enrolled photo within "
        "`recognition.threshold`, whatever the size of the gallery).",
        "",
    ]
    from pipeline.evaluation.openset_small import markdown as small_section
    from pipeline.evaluation.openset_video import markdown as video_section

    for pattern, section in (
        ("lfw*.json", lfw_section),
        ("video*.json", video_section),
        ("small*.json", small_section),
        ("utkface*.json", utkface_section),
    ):
        # the plain runs first (lfw-gallery-jitterN, utkface), then their variants
        paths = sorted((docs / "openset").glob(pattern), key=lambda p: (p.stem.count("-"), p.stem))
        for path in paths:
            parts += section(json.loads(path.read_text())) + [""]
    (docs / "openset.md").write_text("\n".join(parts))


def evaluate_lfw(
    data: Path,
    runs: Path,
    recognition: Any,
    sizes: Sequence[int],
    draws: int,
    seed: int = 0,
    gallery_jitters: int | None = None,
    command: str = "",
    max_people: int = 0,
) -> dict[str, Any]:
    """The LFW run with the ``recognition`` config section's encoders and threshold.

    Probes: the recognize stage's encodings (``num_jitters``); gallery photos: enrolment's
    (``gallery_jitters``, default ``enroll_jitters``); both cached under ``runs`` by
    :func:`pipeline.evaluation.verification.lfw_encodings`.
    """
    from pipeline.evaluation.verification import _dlib_version, lfw_encodings

    if recognition.flip:
        raise ValueError("recognition.flip: the cached LFW encodings are not flip-averaged")
    started = machine.info(dlib=_dlib_version(), numpy=np.__version__)
    g_jitters = gallery_jitters or recognition.enroll_jitters
    pairs = load_pairs(data / "pairs.tsv")
    people = people_of({k for p in pairs for k in (p.a, p.b)})
    if max_people:  # the first people (by name) with 2+ images and as many with one
        multi = [p for p in people if len(people[p]) >= 2][:max_people]
        single = [p for p in people if len(people[p]) == 1][:max_people]
        people = {p: people[p] for p in multi + single}
    keys = sorted(k for ims in people.values() for k in ims)
    probe_enc = lfw_encodings(data, runs, recognition.num_jitters, keys)
    firsts = sorted(ims[0] for ims in people.values())
    gallery_enc = lfw_encodings(data, runs, g_jitters, keys=firsts)
    check = None
    if g_jitters != recognition.enroll_jitters:
        enrol = lfw_encodings(data, runs, recognition.enroll_jitters, firsts, cached_only=True)
        if enrol:
            check = enrolment_check(gallery_enc, enrol, probe_enc, float(recognition.threshold))
            log(f"enrolment check: {check}")
    log(f"encodings ready; threshold {recognition.threshold}")
    rule = recognition.rule
    rules = {RULE_LABEL: rule}
    results = run_lfw(
        gallery_enc, probe_enc, float(recognition.threshold), sizes, draws, seed, rules=rules
    )
    for n, s in results["sizes"].items():  # type: ignore[attr-defined]
        for label, r in [("pair threshold", s), *s["rules"].items()]:
            log(
                f"gallery {n}, {label}: wrong names {100 * r['wrong_name_rate']['mean']:.2f} %, "
                f"non-mated named {100 * r['fpir_default']['mean']:.2f} %, "
                f"DIR {100 * r['dir_default']['mean']:.1f} %, "
                f"DIR@FPIR1% {100 * r['dir_at_fpir_0.01']['mean']:.1f} %, "
                f"DIR@FPIR0.1% {100 * r['dir_at_fpir_0.001']['mean']:.1f} %"
            )
    calib = calibration_record(probe_enc, rule, draws, seed) if not max_people else None
    sweep = margin_sweep(gallery_enc, probe_enc, rule, sizes, MARGINS, SWEEP_DRAWS, seed)
    return {
        "name": f"lfw-gallery-jitter{g_jitters}" + (f"-people{max_people}" if max_people else ""),
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": started,
        "probe_encoder": f"num_jitters={recognition.num_jitters}, flip={recognition.flip}",
        "gallery_jitters": g_jitters,
        "enroll_jitters": recognition.enroll_jitters,
        "draws": draws,
        "results": results,
        "enrolment_check": check,
        "rule": rule_record(rule),
        "calibration": calib,
        "margin_sweep": sweep,
    }


def enrolment_check(
    plain: dict[str, np.ndarray],
    enrolled: dict[str, np.ndarray],
    probe_enc: dict[str, np.ndarray],
    threshold: float,
) -> dict[str, Any]:
    """Pair rates at ``threshold`` of the gallery photos encoded both ways (``plain``: as
    probes are; ``enrolled``: as ``facepipe enroll`` does), against every probe image:
    impostor pairs (another person) accepted, genuine pairs (the same person) accepted."""
    keys = sorted(set(plain) & set(enrolled))
    probes = sorted(set(probe_enc) - set(keys))
    p = np.stack([probe_enc[k] for k in probes])
    who = np.array([person_of(k) for k in probes], dtype=object)
    out: dict[str, Any] = {"gallery_photos": len(keys)}
    for label, enc in (("plain", plain), ("enrolled", enrolled)):
        imp_hit = imp = gen_hit = gen = 0
        for k in keys:
            d = np.linalg.norm(p - enc[k], axis=1)
            same = who == person_of(k)
            imp += int((~same).sum())
            imp_hit += int((d[~same] <= threshold).sum())
            gen += int(same.sum())
            gen_hit += int((d[same] <= threshold).sum())
        out[label] = {
            "impostor_pairs": imp,
            "impostor_accept": imp_hit / imp if imp else None,
            "genuine_pairs": gen,
            "genuine_accept": gen_hit / gen if gen else None,
        }
    return out


def save(record: dict[str, Any], docs: Path) -> Path:
    """Write ``docs/openset/<name>.json`` and regenerate ``docs/openset.md``."""
    out = docs / "openset" / f"{record['name']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    write_markdown(docs)
    return out


# ----- false matches by demographic group (UTKFace) ---------------------------------------

RACES = ("white", "black", "asian", "indian", "other")
GENDERS = ("male", "female")


def false_matches_by_group(
    enc: np.ndarray, labels: Sequence[str], threshold: float
) -> dict[str, dict[str, float | int]]:
    """False matches among faces of different people, by the pair's groups.

    Every pair ``i < j`` is an impostor pair; it counts for ``"G"`` when both faces are in
    group G (within) and for ``"G|H"`` (G < H) when they are in two groups (across). A
    false match: distance <= ``threshold``. Returns pairs, matches and their rate.
    """
    groups = sorted(set(labels))
    g_of = np.array([groups.index(g) for g in labels])
    n_g = len(groups)
    matches = np.zeros((n_g, n_g), dtype=np.int64)
    x = np.asarray(enc, dtype=np.float64)
    for i in range(len(x) - 1):
        d = np.linalg.norm(x[i + 1 :] - x[i], axis=1)
        hit = g_of[i + 1 :][d <= threshold]
        np.add.at(matches[g_of[i]], hit, 1)
    sizes = np.bincount(g_of, minlength=n_g)
    out: dict[str, dict[str, float | int]] = {}
    for a in range(n_g):
        for b in range(a, n_g):
            pairs = int(sizes[a] * (sizes[a] - 1) // 2) if a == b else int(sizes[a] * sizes[b])
            m = int(matches[a, b] + (matches[b, a] if a != b else 0))
            key = groups[a] if a == b else f"{groups[a]}|{groups[b]}"
            out[key] = {"pairs": pairs, "matches": m, "fmr": m / pairs if pairs else float("nan")}
    return out


def evaluate_utkface(
    folder: Path,
    runs: Path,
    recognition: Any,
    command: str = "",
    min_age: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    """False-match rates by race and gender at ``recognition.threshold`` on UTKFace's
    validation split (faces of ``min_age`` and older), every pair of images an impostor pair.

    Encodings: the recognize stage's encoder on the box ``facepipe analyze --face-crop``
    gives a crop, cached under ``runs/<encoding_cache_name>/utkface`` as
    ``scripts/eval_attributes.py`` caches them.
    """
    from pipeline.agegender.split import list_samples, split_samples
    from pipeline.evaluation import attributes as ev
    from pipeline.evaluation.verification import _dlib_version
    from pipeline.images import read_image

    started = machine.info(dlib=_dlib_version(), numpy=np.__version__)
    _, val = split_samples(list_samples(folder))
    val = spread([s for s in val if s.age >= min_age], limit)
    encode = ev.StageEncodings(
        ev.recognition_encoder(recognition),
        runs / ev.encoding_cache_name(recognition) / "utkface",
    )
    enc = []
    for s in val:
        image = read_image(folder / s.name)
        enc.append(encode(s.name, image, ev.face_crop_box(image)))
    encode.flush()
    log(f"utkface: {len(val)} encodings ({encode.computed} computed)")
    x = np.array(enc)
    t = recognition.threshold
    race = [RACES[s.race] for s in val]
    gender = [GENDERS[s.gender] for s in val]
    groups = [f"{r} {g}" for r, g in zip(race, gender, strict=True)]
    return {
        "name": ("utkface" if min_age == 0 else f"utkface-age{min_age}plus")
        + (f"-limit{limit}" if limit else ""),
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": started,
        "encoder": ev.encoding_cache_name(recognition),
        "threshold": t,
        "min_age": min_age,
        "images": len(val),
        "sizes": {g: groups.count(g) for g in sorted(set(groups))},
        "race_gender": false_matches_by_group(x, groups, t),
        "race": false_matches_by_group(x, race, t),
        "gender": false_matches_by_group(x, gender, t),
        "all": false_matches_by_group(x, ["all"] * len(val), t)["all"],
        "open_set": open_set_by_group(x, groups, recognition.rule),
        "target_fpir": recognition.rule.target_fpir,
    }


def open_set_by_group(
    x: np.ndarray,
    groups: Sequence[str],
    rule: OpenSetRule,
    sizes: Sequence[int] = (2, 5, 10, 100),
    draws: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Per group and gallery size N: strangers named by the open-set rule when N faces
    of their own group are enrolled (one photo each) and every other face of the group
    is a stranger (UTKFace has no identities: every face counts as a different person),
    mean over ``draws`` random galleries. Groups with fewer than N + 10 faces are left out."""
    labels = np.asarray(groups, dtype=object)
    out: dict[str, Any] = {}
    for n in sizes:
        row: dict[str, Any] = {"threshold": rule.gallery_threshold(n), "groups": {}}
        for g in sorted(set(groups)):
            idx = np.flatnonzero(labels == g)
            if len(idx) < n + 10:
                continue
            named = strangers = 0
            for i in range(draws):
                rng = np.random.default_rng([seed, n, i, len(idx)])
                pick = rng.permutation(idx)
                gal, probes = x[pick[:n]], x[pick[n:]]
                names = [str(k) for k in range(n)]
                for p in probes:
                    named += fuse_identity(p[None, :], names, gal, rule).name is not None
                strangers += len(probes)
            row["groups"][g] = {"strangers": strangers, "named": named, "fpir": named / strangers}
        out[str(n)] = row
    return out


def open_set_lines(rec: dict[str, Any]) -> list[str]:
    """The UTKFace table at the open-set rule: strangers named per group and gallery size."""
    os_ = rec.get("open_set")
    if not os_:
        return []
    sizes = list(os_)
    lines = [
        "",
        "At the open-set rule (the product's default now, target FPIR "
        f"{100 * (rec.get('target_fpir') or 0.01):g} %): for each group, galleries of N faces "
        "of that group (one photo each, 10 random draws) and every other face of the group as "
        "a stranger; the share of strangers given a name. The rule is calibrated on LFW; "
        "where a group's faces are closer together than LFW's, more strangers get a name:",
        "",
        "| group (all faces) | " + " | ".join(f"strangers named, N = {n}" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    all_groups = sorted({g for n in sizes for g in os_[n]["groups"]})
    for g in all_groups:
        cells = []
        for n in sizes:
            e = os_[n]["groups"].get(g)
            cells.append(
                f"{100 * e['fpir']:.2f} % ({e['named']:,} of {e['strangers']:,})" if e else "-"
            )
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    target = rec.get("target_fpir") or 0.01
    parts = []
    for n in sizes:
        over = [g for g, e in os_[n]["groups"].items() if e["fpir"] > target]
        parts.append(
            f"at N = {n}, {len(over)} of {len(os_[n]['groups'])} groups"
            + (
                f" ({100 * min(os_[n]['groups'][g]['fpir'] for g in over):.1f} % to "
                f"{100 * max(os_[n]['groups'][g]['fpir'] for g in over):.1f} %)"
                if over
                else ""
            )
        )
    lines += [
        "",
        f"Above the {100 * target:g} % target: "
        + "; ".join(parts)
        + ". UTKFace's crops (tighter than LFW's, "
        + ("children included, " if not rec.get("min_age") else "")
        + "possibly the same person twice) are not the faces the table was measured on: a "
        "deployment should "
        "re-measure the strangers' scores on its own cameras' faces (the table's protocol: "
        "`score_table` in `pipeline/evaluation/openset.py`, `scripts/eval_openset.py "
        "--calibrate`) before trusting the target.",
    ]
    return lines


def _fmr(e: dict[str, Any]) -> str:
    return f"{100 * e['fmr']:.3f} %"


def _one_of(fmr: float, n: int) -> str:
    """Chance that a stranger falsely matches at least one of n enrolled people."""
    return f"{100 * (1 - (1 - fmr) ** n):.0f} %"


def utkface_section(rec: dict[str, Any]) -> list[str]:
    rg, race = rec["race_gender"], rec["race"]
    ages = "all ages" if rec["min_age"] == 0 else f"aged {rec['min_age']} and over"
    lines = [
        f"## UTKFace: false matches by group ({ages})",
        "",
        *_meta_lines(rec),
        "",
        f"Data: UTKFace's validation split (the one no project model trains on), {ages}: "
        f"{rec['images']:,} aligned face crops, encoded by the recognize stage's encoder "
        f"(`{rec['encoder']}`) on the box `facepipe analyze --face-crop` gives a crop. UTKFace "
        "has no identity labels: every pair of images counts as two different people (a few "
        "pairs may be the same person photographed twice, which would count as false "
        f"matches). A false match: distance <= {rec['threshold']:.2f}, "
        "`recognition.threshold` (the pair threshold: the rule before issue 10, the open-set "
        "rule's ceiling now). Group labels from the file names (race as UTKFace codes it: "
        "white, black, asian, indian, other). Overall: "
        f"{_fmr(rec['all'])} of {rec['all']['pairs']:,} pairs. The last two columns: the "
        "chance that a stranger of that group matches at least one of 10 or 100 enrolled "
        "people of the same group, 1 - (1 - FMR)^N (independence assumed).",
        "",
        "| group (both faces) | images | impostor pairs | false matches | FMR "
        "| 1 of 10 | 1 of 100 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for g in sorted(k for k in rg if "|" not in k):
        e = rg[g]
        lines.append(
            f"| {g} | {rec['sizes'][g]} | {e['pairs']:,} | {e['matches']:,} | {_fmr(e)} "
            f"| {_one_of(e['fmr'], 10)} | {_one_of(e['fmr'], 100)} |"
        )
    races = [r for r in RACES if r in race]
    lines += [
        "",
        "By race, within and across (pairs of one face of each group):",
        "",
        "| | " + " | ".join(races) + " |",
        "|---|" + "---:|" * len(races),
    ]
    for a in races:
        cells = []
        for b in races:
            key = a if a == b else "|".join(sorted((a, b)))
            cells.append(_fmr(race[key]))
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    gd = rec["gender"]
    within = {g: e["fmr"] for g, e in rg.items() if "|" not in g and e["pairs"]}
    hi, lo = max(within, key=within.get), min(within, key=within.get)  # type: ignore[arg-type]
    lines += [
        "",
        f"By gender: male pairs {_fmr(gd['male'])}, female pairs {_fmr(gd['female'])}, "
        f"male-female pairs {_fmr(gd['female|male'])}.",
        "",
        "At the one threshold, two strangers are falsely matched "
        + (f"{within[hi] / within[lo]:.0f} times as often" if within[lo] else "more often")
        + f" when both are {hi} ({_fmr(rg[hi])}) as when both are {lo} "
        f"({_fmr(rg[lo])}). The threshold was calibrated on LFW "
        "pairs (mostly white men); it does not hold for every group.",
        *open_set_lines(rec),
    ]
    return lines


# ----- calibration of the open-set rule (pipeline/recognition/openset.py CALIBRATED) --------

QUANTILES = (0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)


def impostor_distances(enc: dict[str, np.ndarray]) -> np.ndarray:
    """Every pair of images of two different people: their distances, sorted."""
    keys = sorted(enc)
    x = np.stack([enc[k] for k in keys])
    who = np.array([person_of(k) for k in keys], dtype=object)
    out = []
    for i in range(len(x) - 1):
        d = np.linalg.norm(x[i + 1 :] - x[i], axis=1)
        out.append(d[who[i + 1 :] != who[i]])
    return np.sort(np.concatenate(out))


def quantile_table(
    impostors: np.ndarray, quantiles: Sequence[float] = QUANTILES
) -> list[tuple[float, float]]:
    """``(q, distance)``: a share q of the impostor pairs are within that distance (the
    lower empirical quantile, rounded to 0.001), for the q with at least one pair."""
    n = len(impostors)
    return [
        (q, round(float(impostors[max(int(np.floor(q * n)) - 1, 0)]), 3))
        for q in quantiles
        if q * n >= 1
    ]


def person_spread_ratios(enc: dict[str, np.ndarray], photos: int = 3) -> np.ndarray:
    """For each person with more than ``photos`` images: the first ``photos`` enrolled,
    every other image a probe; the probe's distance to the nearest enrolled photo over the
    largest distance between two enrolled photos (the per-person threshold's scale)."""
    out = []
    for _, ims in people_of(enc).items():
        if len(ims) <= photos:
            continue
        g = np.stack([enc[k] for k in ims[:photos]])
        spread_ = np.linalg.norm(g[:, None] - g[None], axis=2).max()
        for k in ims[photos:]:
            out.append(float(np.linalg.norm(g - enc[k], axis=1).min() / spread_))
    return np.array(out)


def rule_record(rule: OpenSetRule) -> dict[str, Any]:
    """The settings of a rule, for the record."""
    return {
        "ceiling": rule.ceiling,
        "target_fpir": rule.target_fpir,
        "margin": rule.margin,
        "min_enrol_quality": rule.min_enrol_quality,
        "person_min_photos": rule.person_min_photos,
        "person_scale": rule.person_scale,
        "weight": rule.weight,
        "gap_cap": rule.gap_cap,
        "table": {f"{f:g}": [list(r) for r in rows] for f, rows in rule.table},
    }


def calibration_record(
    enc: dict[str, np.ndarray],
    rule: OpenSetRule,
    draws: int,
    seed: int = 0,
    heldout_sizes: Sequence[int] = (2, 5, 10, 100, 300),
) -> dict[str, Any]:
    """The impostor distance quantiles, per-person ratios and weight sweep of these
    encodings, and a held-out check of the threshold table: the people split in two
    random halves, the table measured on one half (:func:`score_table`), the rule with it applied to
    galleries and strangers of the other half only."""
    imp = impostor_distances(enc)
    ratios = person_spread_ratios(enc)
    people = sorted(people_of(enc))
    order = np.random.default_rng([seed, 7]).permutation(len(people))
    halves = [
        {k: v for k, v in enc.items() if person_of(k) in {people[i] for i in part}}
        for part in (order[: len(people) // 2], order[len(people) // 2 :])
    ]
    heldout: dict[str, Any] = {}
    for fit, test in ((0, 1), (1, 0)):
        fitted = score_table(halves[fit], rule.weight, rule.gap_cap, seed=seed)
        table = tuple((float(f), tuple((int(n), t) for n, t in rows)) for f, rows in fitted.items())
        half_rule = replace(rule, table=table)
        test_enc = halves[test]
        test_people = people_of(test_enc)
        for n in heldout_sizes:
            try:
                rows = [
                    evaluate_draw(
                        draw(test_people, n, np.random.default_rng([seed, n, i, fit])),
                        test_enc,
                        test_enc,
                        half_rule,
                    )  # fmt: skip
                    for i in range(draws)
                ]
            except ValueError:
                continue  # the half is too small for this gallery
            row = heldout.setdefault(str(n), {"fpir": [], "wrong": [], "dir": [], "t": []})
            row["fpir"] += [r["fpir_default"] for r in rows]
            row["wrong"] += [r["wrong_name_rate"] for r in rows]
            row["dir"] += [r["dir_default"] for r in rows]
            row["t"].append(half_rule.gallery_threshold(n))
    return {
        "weights_tried": weight_sweep(enc, rule.gap_cap, seed=seed),
        "impostor_pairs": len(imp),
        "quantiles": quantile_table(imp),
        "person_ratio_percentiles": {
            str(p): round(float(np.percentile(ratios, p)), 3) for p in (50, 90, 95, 99)
        }
        if len(ratios)
        else {},
        "person_ratio_probes": len(ratios),
        "heldout": {
            n: {k: float(np.mean(v)) for k, v in row.items()} | {"draws": len(row["fpir"])}
            for n, row in heldout.items()
        },
    }


def calibrate(data: Path, runs: Path, recognition: Any) -> dict[str, Any]:
    """The open-set rule's calibration from the LFW encodings of the recognize stage's
    encoder (cached under ``runs``): impostor quantiles, per-person ratios."""
    from pipeline.evaluation.verification import lfw_encodings

    pairs = load_pairs(data / "pairs.tsv")
    keys = sorted({k for p in pairs for k in (p.a, p.b)})
    enc = lfw_encodings(data, runs, recognition.num_jitters, keys)
    imp = impostor_distances(enc)
    ratios = person_spread_ratios(enc)
    rule = recognition.rule
    sweep = weight_sweep(enc, rule.gap_cap)
    weights = choose_weights(sweep)
    log(f"weights chosen: {weights}")
    return {
        "encoder": f"num_jitters={recognition.num_jitters}, flip={recognition.flip}",
        "weights_tried": sweep,
        "weight": [list(r) for r in weights],
        "gap_cap": rule.gap_cap,
        "thresholds": score_table(enc, weights, rule.gap_cap),
        "impostor_pairs": len(imp),
        "impostor_quantiles": quantile_table(imp),
        "person_ratio_probes": len(ratios),
        "person_ratio_percentiles": {
            str(p): round(float(np.percentile(ratios, p)), 3) for p in (50, 90, 95, 99, 100)
        },
    }


def margin_sweep(
    gallery_enc: dict[str, np.ndarray],
    probe_enc: dict[str, np.ndarray],
    rule: OpenSetRule,
    sizes: Sequence[int],
    margins: Sequence[float],
    draws: int,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """The rule at each margin (else as configured): wrong names, strangers named and
    DIR per gallery size, mean over the first ``draws`` draws of the main run."""
    people = people_of(probe_enc)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for m in margins:
        variant = replace(rule, margin=m)
        for n in sizes:
            rows = [
                evaluate_draw(
                    draw(people, n, np.random.default_rng([seed, n, i])),
                    gallery_enc,
                    probe_enc,
                    variant,
                )
                for i in range(draws)
            ]
            out.setdefault(f"{m:g}", {})[str(n)] = {
                k: float(np.mean([r[k] for r in rows]))  # type: ignore[call-overload]
                for k in ("wrong_name_rate", "fpir_default", "mated_wrong_rate", "dir_default")
            }
        log(f"margin {m:g}: {out[f'{m:g}']}")
    return out


def margin_lines(rec: dict[str, Any]) -> list[str]:
    """The margin sweep as a table: wrong names / DIR per gallery size."""
    sweep = rec.get("margin_sweep")
    if not sweep:
        return []
    sizes = list(next(iter(sweep.values())))
    lines = [
        f"Margin sweep (the rule otherwise at its defaults, {SWEEP_DRAWS} draws per size; "
        "wrong names / mated probes named right):",
        "",
        "| margin | " + " | ".join(f"gallery {n}" for n in sizes) + " |",
        "|---:|" + "---:|" * len(sizes),
    ]
    for m, row in sweep.items():
        cells = [
            f"{100 * row[n]['wrong_name_rate']:.2f} % / {100 * row[n]['dir_default']:.1f} %"
            for n in sizes
        ]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return [*lines, ""]


# ----- the score table: the rule's threshold per gallery size and target FPIR ---------------

TABLE_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
TABLE_FPIRS = (0.001, 0.003, 0.01, 0.03, 0.1)
TABLE_DRAWS = 20


def stranger_scores(
    enc: dict[str, np.ndarray],
    people: dict[str, list[str]],
    n: int,
    rng: np.random.Generator,
    weight: float,
    cap: float,
) -> np.ndarray:
    """One random gallery of ``n`` people (one random photo each) and every image of every
    other person as a stranger: each stranger's score against it
    (:func:`pipeline.recognition.openset.score`)."""
    from pipeline.recognition.openset import score

    names = sorted(people)
    chosen = rng.choice(len(names), n, replace=False)
    gallery = np.stack([enc[people[names[i]][rng.integers(len(people[names[i]]))]] for i in chosen])
    inside = {names[i] for i in chosen}
    probes = np.stack([enc[k] for p in names if p not in inside for k in people[p]])
    out = []
    for lo in range(0, len(probes), 256):
        block = probes[lo : lo + 256]
        d = np.sqrt(
            np.maximum(
                (block**2).sum(1)[:, None] + (gallery**2).sum(1)[None, :] - 2 * block @ gallery.T,
                0.0,
            )
        )
        if n >= 2:
            two = np.partition(d, 1, axis=1)[:, :2]
            d1, d2 = two[:, 0], two[:, 1]
        else:
            d1, d2 = d[:, 0], np.full(len(d), np.inf)
        out.append(score(d1, d2, weight, cap))
    return np.concatenate(out)


def score_table(
    enc: dict[str, np.ndarray],
    weight: Weight,
    cap: float,
    sizes: Sequence[int] = TABLE_SIZES,
    fpirs: Sequence[float] = TABLE_FPIRS,
    draws: int = TABLE_DRAWS,
    seed: int = 0,
) -> dict[str, list[list[float]]]:
    """Per target FPIR: ``[N, threshold]`` for each gallery size N, the threshold being
    the largest score that at most ``floor(fpir x n)`` of the n strangers' scores (pooled
    over ``draws`` random galleries of N people) reach, the score with the margin's weight
    for N (:func:`pipeline.recognition.openset.weight_at`). Sizes larger than the people
    available minus 100 are left out."""
    people = people_of(enc)
    table: dict[str, list[list[float]]] = {f"{f:g}": [] for f in fpirs}
    for n in sizes:
        if n > len(people) - 100:
            continue
        pooled = np.concatenate(
            [
                stranger_scores(
                    enc, people, n, np.random.default_rng([seed, n, i]), weight_at(n, weight), cap
                )
                for i in range(draws)
            ]
        )
        for f in fpirs:
            table[f"{f:g}"].append([n, round(threshold_at_far(pooled, f), 4)])
        log(f"score table: N={n}: {[table[f'{f:g}'][-1][1] for f in fpirs]} ({len(pooled)})")
    return table


SWEEP_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
# gallery size -> draws of the weight sweep (small galleries have few mated probes each)
SWEEP_SIZES = {2: 100, 5: 100, 10: 100, 20: 100, 50: 30, 100: 30, 200: 30, 500: 10, 1000: 10}
WEIGHT_TOLERANCE = 0.01  # DIR within 1 point of the best counts as as good (as the margin)


def choose_weights(
    sweep: dict[str, dict[str, dict[str, float]]], tolerance: float = WEIGHT_TOLERANCE
) -> tuple[tuple[int, float], ...]:
    """The margin's weight per gallery size from a :func:`weight_sweep`: at each size the
    smallest weight whose DIR at FPIR 1 % is within ``tolerance`` of the best there, then
    never smaller than at a smaller gallery (a larger gallery crowds a stranger's nearest
    people more, which is what the margin term answers: it does not weigh less there)."""
    sizes = sorted({int(n) for row in sweep.values() for n in row})
    weights = sorted(sweep, key=float)
    out: list[tuple[int, float]] = []
    floor = 0.0
    for n in sizes:
        dirs = {w: sweep[w][str(n)]["0.01"] for w in weights if str(n) in sweep[w]}
        best = max(dirs.values())
        w = min(float(k) for k, v in dirs.items() if v >= best - tolerance)
        floor = max(floor, w)
        out.append((n, floor))
    return tuple(out)


def weight_sweep(
    enc: dict[str, np.ndarray],
    cap: float,
    weights: Sequence[float] = SWEEP_WEIGHTS,
    sizes: dict[int, int] | Sequence[int] = SWEEP_SIZES,
    draws: int = 5,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """DIR at FPIR 1 % and 0.1 % of the score with each margin weight (0: the distance
    alone), the threshold set on the same draw's strangers, mean over ``draws`` draws of
    the evaluation's protocol (``sizes``: a mapping gives each size its own number of
    draws): what chooses the score's weight per gallery size (:func:`choose_weights`)."""
    people = people_of(enc)
    per_size = dict(sizes) if isinstance(sizes, dict) else {n: draws for n in sizes}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for n, n_draws in per_size.items():
        rates: dict[tuple[float, float], list[float]] = {}
        for i in range(n_draws):
            d = draw(people, n, np.random.default_rng([seed, n, i]))
            gal = np.stack([enc[k] for k in d.gallery])
            names = np.array([person_of(k) for k in d.gallery], dtype=object)
            mp = np.stack([enc[k] for k in d.mated])
            nm = np.stack([enc[k] for k in d.non_mated])
            mi, md = rank1(mp, gal)
            ni, nd = rank1(nm, gal)
            m2 = second_person(mp, gal, names, mi)
            n2 = second_person(nm, gal, names, ni)
            correct = names[mi] == np.array([person_of(k) for k in d.mated], dtype=object)
            for w in weights:
                ms = score(md, m2, w, cap)
                ns = score(nd, n2, w, cap)
                for f in FPIRS:
                    t = threshold_at_far(ns, f)
                    rates.setdefault((w, f), []).append(float(np.mean(correct & (ms <= t))))
        for (w, f), v in rates.items():
            out.setdefault(f"{w:g}", {}).setdefault(str(n), {})[f"{f:g}"] = float(np.mean(v))
        at_1pct = [(w, round(100 * out[f"{w:g}"][str(n)]["0.01"], 1)) for w in weights]
        log(f"weights, N={n}: DIR at FPIR 1 % {at_1pct}")
    return out
