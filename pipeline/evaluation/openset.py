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

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.fusion import fuse_identity
from pipeline.recognition.verify import threshold_at_far

FPIRS = (0.01, 0.001)


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


def rank1(probes: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and Euclidean distance of each probe's nearest gallery row."""
    d = np.linalg.norm(probes[:, None, :] - gallery[None, :, :], axis=2)
    best = d.argmin(axis=1)
    return best, d[np.arange(len(probes)), best]


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
    probes: np.ndarray, gallery_names: Sequence[str], gallery: np.ndarray, threshold: float
) -> list[str | None]:
    """The name the product gives each probe (a one-sample track): ``fuse_identity``."""
    return [fuse_identity(p[None, :], gallery_names, gallery, threshold).name for p in probes]


def decide(
    draw_: Draw,
    gallery_enc: dict[str, np.ndarray],
    probe_enc: dict[str, np.ndarray],
    threshold: float,
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


def evaluate_draw(
    draw_: Draw,
    gallery_enc: dict[str, np.ndarray],
    probe_enc: dict[str, np.ndarray],
    threshold: float,
    fpirs: Sequence[float] = FPIRS,
) -> dict[str, object]:
    """Every figure of one draw: DIR at each FPIR and the product rule's counts."""
    gal = np.stack([gallery_enc[k] for k in draw_.gallery])
    names = np.array([person_of(k) for k in draw_.gallery], dtype=object)
    m_idx, m_dist = rank1(np.stack([probe_enc[k] for k in draw_.mated]), gal)
    _, n_dist = rank1(np.stack([probe_enc[k] for k in draw_.non_mated]), gal)
    correct = names[m_idx] == np.array([person_of(k) for k in draw_.mated], dtype=object)
    dec, _, _ = decide(draw_, gallery_enc, probe_enc, threshold)
    out: dict[str, object] = {
        "gallery": len(draw_.gallery),
        "mated_people": draw_.mated_people,
        "distractors": draw_.distractors,
        "mated_probes": len(draw_.mated),
        "non_mated_probes": len(draw_.non_mated),
        "rank1": float(correct.mean()),
        "non_mated_named": dec.non_mated_named,
        "mated_wrong": dec.mated_wrong,
        "mated_right": dec.mated_right,
        "fpir_default": dec.non_mated_named / dec.non_mated,
        "mated_wrong_rate": dec.mated_wrong / dec.mated,
        "dir_default": dec.mated_right / dec.mated,
        "wrong_name_rate": dec.wrong_names / dec.probes,
        "dir_at_fpir": {},
    }
    for f in fpirs:
        rate, t = dir_at_fpir(correct, m_dist, n_dist, f)
        out["dir_at_fpir"][f"{f:g}"] = {"dir": rate, "threshold": round(t, 4)}  # type: ignore[index]
    return out


def summarise(rows: list[dict[str, object]]) -> dict[str, object]:
    """Mean, minimum and maximum over draws of each rate, and the sizes of the first draw."""

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
    return out
