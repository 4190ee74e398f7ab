"""Training a Viola-Jones cascade stage by stage, with bootstrapped hard negatives.

For each new stage:

1. the positives are the training faces the cascade so far still accepts (a subset of at
   most ``n_pos``);
2. the negatives are *mined*: the cascade so far is slid over the negative images
   (random pyramid start and grid offset each time) and windows it wrongly accepts are
   collected, a few per image so that no single image dominates. For the first stage
   (no cascade yet) these are random windows; for later ones they are exactly the hard
   cases the earlier stages let through;
3. a fresh random subset of the Haar features is evaluated on all crops (one float32
   matrix), pre-sorted, and AdaBoost adds stumps until the stage, with its threshold set
   so that ``hit_target`` of the positives pass, lets through at most ``fa_target`` of the
   negatives (or the stage reaches its size limit).

Each finished stage is written to the cascade file at once, so an interrupted run loses
at most one stage and ``resume=True`` continues from the file (every stage's random
choices depend only on the seed and the stage number).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.vj.cascade import Cascade, Stage
from pipeline.vj.features import HaarFeatures
from pipeline.vj.scan import level_windows, pyramid
from training.vj.boost import StumpSearch, adaboost_update, initial_weights
from training.vj.data import NegativeImage, allowed_windows

Log = Callable[[str], None]


def default_stage_sizes(n: int) -> list[int]:
    """Growing per-stage stump limits: small, fast stages first, as Viola-Jones did."""
    base = [4, 8, 12, 18, 25, 32, 40, 50, 60, 70, 80, 90, 100, 120, 140, 160, 180, 200]
    return [base[i] if i < len(base) else base[-1] for i in range(n)]


def train_stage(
    pos: np.ndarray,
    neg: np.ndarray,
    features: HaarFeatures,
    hit_target: float = 0.995,
    fa_target: float = 0.5,
    max_stumps: int = 50,
    log: Log | None = None,
) -> tuple[Stage, dict[str, Any]]:
    """Boost one stage on face crops ``pos`` and non-face crops ``neg``.

    Returns the stage and a record of its training (stumps, hit and false-alarm rates on
    these crops, seconds).
    """
    t0 = time.monotonic()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("a stage needs both face and non-face crops")
    if not 0 < hit_target <= 1 or not 0 < fa_target <= 1:
        raise ValueError("hit_target and fa_target must be in (0, 1]")
    y = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
    X = features.matrix(np.concatenate([pos, neg]))
    search = StumpSearch(X)
    t_prep = time.monotonic() - t0
    w = initial_weights(y)
    votes = np.zeros(len(y))
    chosen, thresholds, polarities, alphas = [], [], [], []
    k = int(math.floor((1.0 - hit_target) * len(pos)))
    hit = fa = 1.0
    threshold = 0.0
    for _ in range(max_stumps):
        st = search.best(w / w.sum(), y)
        h = st.predict(X[st.feature])
        w, alpha, err = adaboost_update(w, y, h)
        votes += alpha * h
        chosen.append(st.feature)
        thresholds.append(st.threshold)
        polarities.append(st.polarity)
        alphas.append(alpha)
        # the largest threshold that keeps at least hit_target of the faces
        threshold = float(np.sort(votes[y])[k]) - 1e-9 * float(sum(alphas))
        hit = float(np.mean(votes[y] >= threshold))
        fa = float(np.mean(votes[~y] >= threshold))
        if log is not None:
            log(
                f"    stump {len(chosen):3d}: err {err:.3f}  hit {hit:.4f}  "
                f"false alarms {fa:.3f}  ({time.monotonic() - t0:.0f} s)"
            )
        if fa <= fa_target:
            break
    stage = Stage(
        features.subset(chosen),
        np.array(thresholds),
        np.array(polarities, dtype=np.int8),
        np.array(alphas),
        threshold,
    )
    info = {
        "stumps": len(chosen),
        "hit": round(hit, 5),
        "false_alarms": round(fa, 5),
        "n_pos": int(len(pos)),
        "n_neg": int(len(neg)),
        "n_features": int(len(features)),
        "hit_target": hit_target,
        "fa_target": fa_target,
        "prep_seconds": round(t_prep, 1),
        "seconds": round(time.monotonic() - t0, 1),
    }
    return stage, info


@dataclass
class MiningStats:
    images: int = 0
    windows: int = 0
    accepted: int = 0

    @property
    def rate(self) -> float:
        """Fraction of scanned windows the cascade accepted (its false-alarm rate)."""
        return self.accepted / self.windows if self.windows else float("nan")


def mine_negatives(
    cascade: Cascade,
    pool: list[NegativeImage],
    n: int,
    rng: np.random.Generator,
    scale_factor: float = 1.25,
    step: int = 3,
    max_passes: int = 3,
    log: Log | None = None,
) -> tuple[np.ndarray, MiningStats]:
    """Up to ``n`` windows of the face-free images that the cascade accepts.

    Windows overlapping a known face of the image are never taken. Each image is asked
    for a number of windows proportional to its area (eight times the even share per pass,
    rounded at random, so small images are sometimes skipped): the negatives then follow
    the pool's windows rather than its image count, and no image dominates.
    """
    win = cascade.window
    stats = MiningStats()
    found: list[np.ndarray] = []
    total = 0
    if not pool or n <= 0:
        return np.zeros((0, win, win), np.uint8), stats
    per_pixel = 8.0 * n / float(sum(item.image.size for item in pool))
    # While the cascade still accepts many windows, scanning every window of an image to
    # keep `cap` of them is wasted work: evaluate a random fraction of the positions sized
    # from running estimates of the acceptance rate and of windows per image.
    rate, per_image = 1.0, 40000.0
    for p in range(max_passes):
        order = rng.permutation(len(pool))
        for j, idx in enumerate(order):
            item = pool[idx]
            want = per_pixel * item.image.size
            cap = int(want) + int(rng.random() < want - int(want))
            if cap == 0:
                continue
            levels, cands = [], []
            start = win * float(rng.uniform(1.0, scale_factor))
            keep = min(1.0, 8.0 * cap / (max(rate, 1e-9) * per_image))
            seen = 0
            for lv in pyramid(item.image, win, scale_factor, start, float("inf")):
                off = (int(rng.integers(step)), int(rng.integers(step)))
                ii, bases, inv, width, pos, grid = level_windows(lv.image, win, step, off)
                seen += len(bases)
                if keep < 1.0:
                    sub = rng.random(len(bases)) < keep
                    bases, inv, pos = bases[sub], inv[sub], pos[sub]
                    depth, _ = cascade.evaluate_windows(ii, width, bases, inv)
                else:
                    depth, _ = cascade.evaluate_windows(ii, width, bases, inv, grid=grid)
                hit = depth == len(cascade.stages)
                stats.windows += len(bases)
                if not hit.any():
                    continue
                ph = pos[hit]
                boxes = np.stack(
                    [
                        ph[:, 0] * lv.sx,
                        ph[:, 1] * lv.sy,
                        np.full(len(ph), win * lv.sx),
                        np.full(len(ph), win * lv.sy),
                    ],
                    axis=1,
                )
                ok = allowed_windows(boxes, item.faces)
                stats.accepted += int(ok.sum())
                if ok.any():
                    levels.append(lv.image)
                    cands.append(np.column_stack([np.full(int(ok.sum()), len(levels) - 1), ph[ok]]))
            stats.images += 1
            per_image = 0.9 * per_image + 0.1 * seen
            if stats.windows:
                rate = max(stats.accepted / stats.windows, 1e-9)
            if not cands:
                continue
            c = np.concatenate(cands)
            take = c[rng.choice(len(c), size=min(cap, len(c), n - total), replace=False)]
            found += [levels[li][y : y + win, x : x + win] for li, x, y in take]
            total += len(take)
            if log is not None and (j + 1) % 1000 == 0:
                log(f"    mining pass {p + 1}: {j + 1}/{len(pool)} images, {total}/{n} negatives")
            if total >= n:
                return np.stack(found).astype(np.uint8), stats
        per_pixel *= 2
    out = np.stack(found).astype(np.uint8) if found else np.zeros((0, win, win), np.uint8)
    return out, stats


def train_cascade(
    out: Path,
    faces: np.ndarray,
    pool: list[NegativeImage],
    *,
    stages: int = 20,
    n_features: int = 12000,
    n_pos: int = 5000,
    n_neg: int = 5000,
    hit_target: float = 0.995,
    fa_target: float = 0.5,
    stage_sizes: list[int] | None = None,
    min_neg_fraction: float = 0.1,
    seed: int = 0,
    resume: bool = False,
    time_limit: float | None = None,
    holdout: np.ndarray | None = None,
    box: dict[str, float] | None = None,
    min_std: float = 0.0,
    meta: dict[str, Any] | None = None,
    log: Log = print,
) -> Cascade:
    """Train (or continue) a cascade of up to ``stages`` stages into the JSON file ``out``.

    ``faces``: uint8 crops ``(N, win, win)``; ``pool``: images to mine negatives from;
    ``holdout``: face crops never trained on, whose hit rate is logged per stage.
    ``time_limit`` (seconds): no new stage is started after it; rerun with ``resume``.
    """
    faces = np.asarray(faces)
    if faces.ndim != 3 or faces.shape[1] != faces.shape[2]:
        raise ValueError(f"faces must be (N, win, win) crops, got {faces.shape}")
    win = faces.shape[1]
    sizes = stage_sizes or default_stage_sizes(stages)
    if len(sizes) < stages:
        sizes = list(sizes) + [sizes[-1]] * (stages - len(sizes))
    out = Path(out)
    if resume and out.exists():
        cascade = Cascade.load(out)
        if cascade.window != win:
            raise ValueError(f"{out} has window {cascade.window}, the crops are {win}")
        log(f"resuming {out}: {len(cascade.stages)} stages, {cascade.n_features} stumps")
        if cascade.min_std != min_std:
            log(f"  minimum window contrast {cascade.min_std} -> {min_std}")
            cascade.min_std = min_std
    else:
        cascade = Cascade(win, box=dict(box or {"scale": 1.0, "dx": 0.0, "dy": 0.0}))
        cascade.min_std = min_std
        cascade.meta = dict(meta or {})
        cascade.meta["stages"] = []
    cascade.meta.setdefault("stages", [])
    # every invocation (first run and each resume) is recorded with its settings
    run = {k: v for k, v in (meta or {}).items() if k in ("command", "settings")}
    run["from_stage"] = len(cascade.stages)
    run["started"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cascade.meta.setdefault("runs", []).append(run)
    t_start = time.monotonic()
    for i in range(len(cascade.stages), stages):
        if time_limit is not None and time.monotonic() - t_start > time_limit:
            log(f"time limit reached after {len(cascade.stages)} stages; rerun with --resume")
            break
        t0 = time.monotonic()
        rng = np.random.default_rng([seed, i])
        passed, _ = cascade.classify(faces)
        pos = faces[passed]
        if len(pos) > n_pos:
            pos = pos[rng.choice(len(pos), n_pos, replace=False)]
        log(f"stage {i + 1}/{stages}: mining {n_neg} negatives ({len(pos)} faces)")
        neg, stats = mine_negatives(cascade, pool, n_neg, rng, log=log)
        log(
            f"  got {len(neg)} from {stats.images} images; cascade accepts "
            f"{stats.rate:.2e} of {stats.windows:,} windows ({time.monotonic() - t0:.0f} s)"
        )
        if len(neg) < min_neg_fraction * n_neg:
            log("  too few negatives left to train on: the cascade is complete")
            break
        feats = HaarFeatures.sample(win, n_features, rng)
        stage, info = train_stage(pos, neg, feats, hit_target, fa_target, sizes[i], log=log)
        cascade.stages.append(stage)
        info["mined_rate"] = float(f"{stats.rate:.3e}")
        info["mined_windows"] = int(stats.windows)
        if holdout is not None and len(holdout):
            info["holdout_hit"] = round(float(cascade.classify(holdout)[0].mean()), 4)
        info["stage_seconds"] = round(time.monotonic() - t0, 1)
        cascade.meta["stages"].append(info)
        cascade.meta["n_stumps"] = cascade.n_features
        cascade.save(out)
        log(
            f"  stage {i + 1} done: {info['stumps']} stumps, hit {info['hit']}, false alarms "
            f"{info['false_alarms']}, holdout hit {info.get('holdout_hit', '-')}, "
            f"{info['stage_seconds']} s -> {out}"
        )
    return cascade
