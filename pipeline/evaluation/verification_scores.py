"""Score-level variants of the verification rule, evaluated on cached LFW encodings.

Every variant here starts from encodings that :mod:`pipeline.evaluation.verification`
already computed and cached (``runs/verification/cache-5pt-jitter1`` and its ``-mirror``
sibling: each image's plain chip encoding and its mirrored chip's encoding), so a variant
costs seconds. What changes is the *score* of a pair, never the encoder:

* ``fusion``: the four distances between the plain and mirrored encodings of the two faces
  (``pp``, ``mm``, ``pm``, ``mp``) combined (mean, min, median) instead of the distance of
  the flip-averaged encodings; same cost as flip averaging (2x one encoding).
* ``as-norm``: adaptive symmetric score normalisation against an impostor cohort: with
  ``d`` the pair distance and ``mu_x``, ``sd_x`` the mean and standard deviation of face
  ``x``'s ``K`` smallest distances to the cohort, the score is
  ``((d - mu_a) / sd_a + (d - mu_b) / sd_b) / 2`` (``mean``: ``d - (mu_a + mu_b) / 2``).
  Cohorts: UTKFace faces converted to gray (no identity overlap with LFW possible; the
  same cohort for every fold), or the images of the two training folds (the held-out
  fold's people are never in it; a training pair's own identities are removed from its
  cohort).
* ``partial-mean-norm``: ``d - alpha (mu_a + mu_b) / 2`` with ``alpha`` in 0-1 (0: the
  plain distance, 1: ``mean``), found by fusing the distance and the mean-normalised
  score with a logistic regression (the fitted weights are this family).
* ``kissme`` / ``lda`` / ``diag-lr``: linear metrics learned on the training folds' images
  (identity labels from the file names): KISSME (inverse covariance of same-person
  differences minus that of different-person differences), LDA (within-class whitening,
  between-class directions), a diagonal metric learned by L2-regularised logistic
  regression on squared per-dimension differences.

Protocol (as for every variant of the page): for each held-out fold, anything learned
(the cohort, the metric, the hyper-parameter ``K``/shrinkage/rank, the threshold) comes
from the other two folds only; hyper-parameters by an inner cross-validation inside those
two folds (fit on one, score the other, both ways). The per-grid-value held-out accuracies
are also reported, read as an optimistic bound (the best of a grid seen on the test folds).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.recognition import verify as V


def identity(key: str) -> str:
    """LFW image path -> person (``Name/Name_0001.jpg`` -> ``Name``)."""
    return key.split("/")[0]


# A scorer is fitted on some folds' images and scores every pair (lower = more alike).
Scorer = Callable[[set[int]], np.ndarray]


@dataclass(frozen=True)
class HeldOut:
    accuracies: list[float]
    thresholds: list[float]
    errors: int
    choices: list[object]

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))


def held_out(
    scorer: Callable[[set[int], object], np.ndarray],
    grid: Sequence[object],
    same: np.ndarray,
    folds: np.ndarray,
) -> HeldOut:
    """Held-out accuracy per fold; the grid value chosen by inner CV on the other folds.

    ``scorer(fit_folds, h)``: every pair's score with anything learned fitted on the
    images of ``fit_folds`` only, hyper-parameter ``h``. Thresholds: ``V.best_threshold``
    on the fit folds' pairs. Ties in the inner CV go to the earlier grid value.
    """
    fold_ids = sorted(set(folds.tolist()))
    accs, ths, choices, errors = [], [], [], 0
    for f in fold_ids:
        train = [g for g in fold_ids if g != f]
        if len(grid) > 1:
            inner = []
            for h in grid:
                a = []
                for g in train:
                    fit = {x for x in train if x != g}
                    s = scorer(fit, h)
                    on_fit = np.isin(folds, list(fit))
                    t = V.best_threshold(s[on_fit], same[on_fit])
                    a.append(V.accuracy(s[folds == g], same[folds == g], t))
                inner.append(float(np.mean(a)))
            h_best = grid[int(np.argmax(np.round(inner, 9)))]
        else:
            h_best = grid[0]
        s = scorer(set(train), h_best)
        on_train = np.isin(folds, train)
        t = V.best_threshold(s[on_train], same[on_train])
        test = folds == f
        accs.append(V.accuracy(s[test], same[test], t))
        errors += int(np.sum((s[test] <= t) != same[test]))
        ths.append(round(t, 4))
        choices.append(h_best)
    return HeldOut(accs, ths, errors, choices)


def cohort_stats(x: np.ndarray, cohort: np.ndarray, k: int, mask: np.ndarray | None = None):
    """Mean and standard deviation of each row's ``k`` smallest distances to the cohort;
    ``mask[i, j]`` True removes cohort entry ``j`` for row ``i``."""
    d2 = (x**2).sum(1)[:, None] + (cohort**2).sum(1)[None, :] - 2.0 * x @ cohort.T
    dist = np.sqrt(np.maximum(d2, 0.0))
    if mask is not None:
        dist = np.where(mask, np.inf, dist)
    k = max(2, min(k, cohort.shape[0]))
    top = np.partition(dist, k - 1, axis=1)[:, :k]
    if mask is not None:  # fewer than k entries left for a row: use those there are
        top = np.where(np.isinf(top), np.nan, top)
        return np.nanmean(top, axis=1), np.nanstd(top, axis=1)
    return top.mean(axis=1), top.std(axis=1)


def as_norm(
    a: np.ndarray,
    b: np.ndarray,
    cohort: np.ndarray,
    k: int,
    mode: str = "as",
    mask_a: np.ndarray | None = None,
    mask_b: np.ndarray | None = None,
) -> np.ndarray:
    """Normalised scores of the pairs ``(a[i], b[i])`` (lower = more alike)."""
    d = np.linalg.norm(a - b, axis=1)
    ma, sa = cohort_stats(a, cohort, k, mask_a)
    mb, sb = cohort_stats(b, cohort, k, mask_b)
    if mode == "as":
        return 0.5 * ((d - ma) / sa + (d - mb) / sb)
    if mode == "mean":
        return d - 0.5 * (ma + mb)
    raise ValueError(f"unknown normalisation {mode!r}")


def training_pairs(
    enc: dict[str, np.ndarray], keys: Sequence[str], n_impostors: int = 20000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Differences ``a - b`` of every same-person image pair among ``keys`` and of
    ``n_impostors`` random different-person pairs, with labels (1 same, 0 not)."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = defaultdict(list)
    for k in keys:
        groups[identity(k)].append(k)
    gen = [(a, b) for g in groups.values() for i, a in enumerate(g) for b in g[i + 1 :]]
    keys = list(keys)
    ids = np.array([identity(k) for k in keys])
    imp: list[tuple[str, str]] = []
    while len(imp) < n_impostors:
        i = rng.integers(0, len(keys), 2 * n_impostors)
        j = rng.integers(0, len(keys), 2 * n_impostors)
        ok = ids[i] != ids[j]
        imp += [(keys[x], keys[y]) for x, y in zip(i[ok], j[ok], strict=True)]
    imp = imp[:n_impostors]
    x = np.stack([enc[a] - enc[b] for a, b in gen + imp])
    y = np.r_[np.ones(len(gen)), np.zeros(len(imp))]
    return x, y


def _shrunk_cov(d: np.ndarray, shrink: float) -> np.ndarray:
    c = d.T @ d / len(d)
    s = np.trace(c) / c.shape[0]
    return (1.0 - shrink) * c + shrink * s * np.eye(c.shape[0])


def fit_kissme(enc: dict[str, np.ndarray], keys: Sequence[str], shrink: float) -> np.ndarray:
    """KISSME: ``M = inv(C_same) - inv(C_diff)``, score ``(a - b) M (a - b)``."""
    x, y = training_pairs(enc, keys)
    return np.linalg.inv(_shrunk_cov(x[y == 1], shrink)) - np.linalg.inv(
        _shrunk_cov(x[y == 0], shrink)
    )


def fit_lda(enc: dict[str, np.ndarray], keys: Sequence[str], rank: int, reg: float) -> np.ndarray:
    """LDA projection ``(128, rank)``: within-class scatter (shrunk by ``reg``) whitened,
    then the top between-class directions."""
    from scipy.linalg import eigh

    groups: dict[str, list[np.ndarray]] = defaultdict(list)
    for k in keys:
        groups[identity(k)].append(enc[k])
    dev = [np.asarray(g) - np.mean(g, axis=0) for g in groups.values() if len(g) > 1]
    sw = _shrunk_cov(np.concatenate(dev), reg)
    means = np.array([np.mean(g, axis=0) for g in groups.values()])
    sb = np.cov(means.T)
    _, vecs = eigh(sb, sw)
    return vecs[:, ::-1][:, :rank]


def fit_diag_lr(
    enc: dict[str, np.ndarray], keys: Sequence[str], c: float
) -> tuple[np.ndarray, float]:
    """Per-dimension weights ``w`` (and bias) of a logistic regression on squared
    differences; score ``-(w . (a - b)^2 + bias)``."""
    from scipy.optimize import minimize

    x, y = training_pairs(enc, keys)
    z = x**2
    mu, sd = z.mean(0), z.std(0) + 1e-12
    zn = (z - mu) / sd

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        t = zn @ w[:-1] + w[-1]
        p = 1.0 / (1.0 + np.exp(-t))
        val = float(np.sum(np.logaddexp(0, t) - y * t) + 0.5 / c * w[:-1] @ w[:-1])
        grad = np.r_[zn.T @ (p - y) + w[:-1] / c, np.sum(p - y)]
        return val, grad

    w = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B").x
    return w[:-1] / sd, float(w[-1] - np.sum(w[:-1] * mu / sd))


# ----- the run ----------------------------------------------------------------------------


def load_cache_by_path(directory: object) -> dict[str, np.ndarray]:
    """An :class:`V.EncodingCache` directory as ``{image path: encoding}`` (one box each)."""
    cache = V.EncodingCache(directory)  # type: ignore[arg-type]
    return {k.split("|")[0]: cache._vectors[r] for k, r in cache.rows.items() if k.count("|") == 1}


def score_variants(
    plain: dict[str, np.ndarray],
    mirror: dict[str, np.ndarray],
    pairs: Sequence[V.Pair],
    cohort_plain: np.ndarray | None = None,
    cohort_mirror: np.ndarray | None = None,
    log: Callable[[str], None] = print,
    learned: bool = True,
) -> list[dict[str, object]]:
    """Every score-level variant's held-out result (see the module docstring);
    ``learned=False`` leaves out the learned metrics (KISSME, LDA, diagonal)."""
    from pipeline.recognition.encoder import flip_average

    same = np.array([bool(p.same) for p in pairs])
    folds = np.array([p.fold for p in pairs])
    keys = sorted({p.a for p in pairs} | {p.b for p in pairs})
    fold_of = {k: p.fold for p in pairs for k in (p.a, p.b)}
    flip = {k: flip_average(plain[k], mirror[k]) for k in keys}
    ida = np.array([identity(p.a) for p in pairs])
    idb = np.array([identity(p.b) for p in pairs])
    out: list[dict[str, object]] = []

    def record(
        name: str,
        enc_name: str,
        scorer: Callable[[set[int], object], np.ndarray],
        grid: Sequence[object],
        note: str,
    ) -> None:
        res = held_out(scorer, grid, same, folds)
        row = {
            "variant": name,
            "encodings": enc_name,
            "per_fold_accuracy": res.accuracies,
            "mean_accuracy": res.mean,
            "errors_held_out": res.errors,
            "thresholds": res.thresholds,
            "chosen": [str(c) for c in res.choices],
            "grid": [str(g) for g in grid],
            "note": note,
        }
        if len(grid) > 1:  # each grid value fixed for all folds: an optimistic bound
            per = {}
            for g in grid:
                r = held_out(lambda fit, h, g=g: scorer(fit, g), [g], same, folds)
                per[str(g)] = {"mean_accuracy": r.mean, "errors": r.errors}
            row["fixed_grid_value"] = per
        out.append(row)
        log(
            f"{name} [{enc_name}]: {100 * res.mean:.2f} % "
            f"(folds {[round(100 * a, 2) for a in res.accuracies]}, {res.errors} errors, "
            f"chosen {row['chosen']})"
        )

    def pair_arrays(enc: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return np.stack([enc[p.a] for p in pairs]), np.stack([enc[p.b] for p in pairs])

    pa, pb = pair_arrays(plain)
    ma, mb = pair_arrays(mirror)
    nrm = lambda x: np.linalg.norm(x, axis=1)  # noqa: E731
    d4 = np.stack([nrm(pa - pb), nrm(ma - mb), nrm(pa - mb), nrm(ma - pb)])
    fa, fb = pair_arrays(flip)

    # 1. the references and the flip fusions (nothing learned but the threshold)
    fixed = {
        "plain": ("plain", nrm(pa - pb)),
        "flip-average": ("flip", nrm(fa - fb)),
        "fusion-mean4": ("plain+mirror", d4.mean(0)),
        "fusion-mean-pp-mm": ("plain+mirror", d4[:2].mean(0)),
        "fusion-min4": ("plain+mirror", d4.min(0)),
        "fusion-median4": ("plain+mirror", np.median(d4, axis=0)),
    }
    for name, (enc_name, s) in fixed.items():
        record(name, enc_name, lambda fit, h, s=s: s, [None], "")

    ks = [10, 25, 50, 100, 200, 400]
    for enc_name, enc, (ea, eb) in (("flip", flip, (fa, fb)), ("plain", plain, (pa, pb))):
        # 2. AS-norm, cohort: UTKFace (external), K by inner CV
        if cohort_plain is not None and cohort_mirror is not None:
            coh = (
                cohort_plain
                if enc_name == "plain"
                else np.stack(
                    [flip_average(x, y) for x, y in zip(cohort_plain, cohort_mirror, strict=True)]
                )
            )
            for mode in ("as", "mean"):
                cache_s = {k: as_norm(ea, eb, coh, k, mode) for k in ks}
                record(
                    f"{mode}-norm-utkface",
                    enc_name,
                    lambda fit, h, c=cache_s: c[h],
                    ks,
                    f"cohort: {len(coh)} UTKFace faces (gray)",
                )
            # partial mean normalisation d - alpha (mu_a + mu_b) / 2 (alpha 0: the plain
            # distance, 1: mean-norm), alpha and K by inner CV; and alpha fixed at 0.5
            d = np.linalg.norm(ea - eb, axis=1)
            pk = [5, 10, 25, 50, 100]
            mus = {k: 0.5 * (cohort_stats(ea, coh, k)[0] + cohort_stats(eb, coh, k)[0]) for k in pk}
            grid_ak = [(a, k) for a in ALPHAS for k in pk]
            record(
                "partial-mean-norm-utkface",
                enc_name,
                lambda fit, h, d=d, mus=mus: d - h[0] * mus[h[1]],
                grid_ak,
                f"cohort: {len(coh)} UTKFace faces (gray); grid (alpha, K)",
            )
            record(
                "half-mean-norm-utkface",
                enc_name,
                lambda fit, h, d=d, mus=mus: d - 0.5 * mus[h],
                pk,
                f"cohort: {len(coh)} UTKFace faces (gray); alpha 0.5 fixed, grid K",
            )

        # 3. AS-norm, cohort: the training folds' images (pair identities removed)
        def lfw_cohort(fit: set[int], k: object, enc: dict = enc, ea=ea, eb=eb) -> np.ndarray:
            ck = [x for x in keys if fold_of[x] in fit]
            cid = np.array([identity(x) for x in ck])
            mask = (cid[None, :] == ida[:, None]) | (cid[None, :] == idb[:, None])
            coh = np.stack([enc[x] for x in ck])
            return as_norm(ea, eb, coh, int(k), "as", mask, mask)  # type: ignore[arg-type]

        record(
            "as-norm-lfw-train",
            enc_name,
            lfw_cohort,
            ks,
            "cohort: the training folds' images, the pair's identities removed",
        )
        memo: dict[tuple, np.ndarray] = {}

        def lfw_mu(fit: set[int], k: int, enc: dict = enc, ea=ea, eb=eb, memo=memo) -> np.ndarray:
            key = (tuple(sorted(fit)), k)
            if key not in memo:
                ck = [x for x in keys if fold_of[x] in fit]
                cid = np.array([identity(x) for x in ck])
                mask = (cid[None, :] == ida[:, None]) | (cid[None, :] == idb[:, None])
                coh = np.stack([enc[x] for x in ck])
                memo[key] = 0.5 * (
                    cohort_stats(ea, coh, k, mask)[0] + cohort_stats(eb, coh, k, mask)[0]
                )
            return memo[key]

        d = np.linalg.norm(ea - eb, axis=1)
        pk = [5, 10, 25, 50, 100]
        record(
            "partial-mean-norm-lfw-train",
            enc_name,
            lambda fit, h, d=d, mu=lfw_mu: d - h[0] * mu(fit, h[1]),
            [(a, k) for a in ALPHAS for k in pk],
            "cohort: the training folds' images, the pair's identities removed; grid (alpha, K)",
        )
        record(
            "half-mean-norm-lfw-train",
            enc_name,
            lambda fit, h, d=d, mu=lfw_mu: d - 0.5 * mu(fit, h),
            pk,
            "cohort: the training folds' images, the pair's identities removed; alpha 0.5, grid K",
        )

        # 4. linear metrics learned on the training folds' images
        def train_keys(fit: set[int]) -> list[str]:
            return [x for x in keys if fold_of[x] in fit]

        def kiss(fit: set[int], sh: object, enc: dict = enc, ea=ea, eb=eb) -> np.ndarray:
            m = fit_kissme(enc, train_keys(fit), float(sh))  # type: ignore[arg-type]
            d = ea - eb
            return np.einsum("ij,jk,ik->i", d, m, d)

        def lda(fit: set[int], h: object, enc: dict = enc, ea=ea, eb=eb) -> np.ndarray:
            rank, reg, metric = h  # type: ignore[misc]
            w = fit_lda(enc, train_keys(fit), rank, reg)
            a, b = ea @ w, eb @ w
            if metric == "cosine":
                a = a / nrm(a)[:, None]
                b = b / nrm(b)[:, None]
            return nrm(a - b)

        def dlr(fit: set[int], c: object, enc: dict = enc, ea=ea, eb=eb) -> np.ndarray:
            w, bias = fit_diag_lr(enc, train_keys(fit), float(c))  # type: ignore[arg-type]
            return -((ea - eb) ** 2 @ w + bias)

        for name, fn, grid in (
            ()
            if not learned
            else (
                ("kissme", kiss, [0.5, 0.7, 0.9, 0.95]),
                (
                    "lda",
                    lda,
                    [
                        (r, g, m)
                        for r in (64, 128)
                        for g in (0.5, 0.9)
                        for m in ("euclidean", "cosine")
                    ],
                ),
                ("diag-lr", dlr, [0.01, 0.1, 1.0]),
            )
        ):
            record(name, enc_name, fn, grid, "fitted on the training folds")
    return out


def utkface_cohort(utk_dir: object, n: int, runs: object, log: Callable[[str], None] = print):
    """``n`` UTKFace faces (a fixed random sample, seed 0), converted to gray like LFW-a,
    encoded plain and mirrored at their HOG box (upsample 1, the face nearest the centre;
    the central 140x140 box of the 200x200 crop when HOG finds none). Cached in
    ``runs/utk-gray-N.npz``; returns ``(plain, mirror)`` arrays."""
    import random
    from pathlib import Path

    import dlib
    from PIL import Image

    from pipeline.evaluation.verification import VariantEncoder
    from pipeline.record import Face

    out = Path(runs) / f"utk-gray-{n}.npz"  # type: ignore[arg-type]
    if out.is_file():
        z = np.load(out, allow_pickle=False)
        return z["plain"], z["mirror"]
    files = sorted(Path(utk_dir).glob("*.jpg"))  # type: ignore[arg-type]
    files = [f for f in files if len(f.name.split("_")) == 4]  # skip malformed names
    random.seed(0)
    files = random.sample([str(f) for f in files], n)
    plain, mirror = VariantEncoder(view="plain"), VariantEncoder(view="mirror")
    hog = dlib.get_frontal_face_detector()
    p, m, names, misses = [], [], [], 0
    for i, f in enumerate(files):
        a = np.asarray(Image.open(f).convert("L").convert("RGB"))
        h, w = a.shape[:2]
        faces = [
            Face(box=(r.left(), r.top(), r.width(), r.height())).clipped(w, h) for r in hog(a, 1)
        ]
        face = V.central_face(faces, w, h)
        if face is None:
            misses += 1
            box = (30, 30, 140, 140)
        else:
            box = face.box
        p.append(plain.encode(a, [Face(box=box)])[0])
        m.append(mirror.encode(a, [Face(box=box)])[0])
        names.append(Path(f).name)
        if i % 100 == 0:
            log(f"UTKFace cohort: {i}/{n}")
    np.savez(out, plain=np.array(p), mirror=np.array(m), names=np.array(names))
    log(f"UTKFace cohort: {n} encoded, {misses} without a HOG face")
    return np.array(p), np.array(m)


def run_scores(
    data: object, utk_dir: object | None, runs: object, docs: object, command: str = ""
) -> dict[str, object]:
    """All score-level variants from the cached plain and mirrored LFW encodings (run
    ``scripts/eval_verification.py --flip`` first); writes
    ``docs/recognition-lfw/scores/score-level.json`` and ``docs/recognition-lfw-scores.md``."""
    import json
    import os
    from datetime import UTC, datetime
    from pathlib import Path

    from pipeline.evaluation.common import log

    runs, docs, data = Path(runs), Path(docs), Path(data)  # type: ignore[arg-type]
    pairs = V.load_pairs(data / "pairs.tsv")
    keys = sorted({p.a for p in pairs} | {p.b for p in pairs})
    plain = load_cache_by_path(runs / "cache-5pt-jitter1")
    mirror = load_cache_by_path(runs / "cache-5pt-jitter1-mirror")
    missing = [k for k in keys if k not in plain or k not in mirror]
    if missing:
        raise SystemExit(
            f"{len(missing)} images lack cached encodings: run "
            "`python scripts/eval_verification.py --flip` first"
        )
    cp = cm = None
    if utk_dir is not None:
        cp, cm = utkface_cohort(utk_dir, COHORT_SIZE, runs, log)
    rows = score_variants(plain, mirror, pairs, cp, cm, log)
    record = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "pairs": len(pairs),
        "images": len(keys),
        "cohort_utkface": None if cp is None else len(cp),
        "variants": rows,
    }
    out = docs / "recognition-lfw" / "scores"  # not beside the variant files of the main page
    out.mkdir(parents=True, exist_ok=True)
    (out / "score-level.json").write_text(json.dumps(record, indent=1) + "\n")
    write_scores_markdown(record, docs / "recognition-lfw-scores.md")
    return record


COHORT_SIZE = 1000
# partial mean normalisation: the share of the cohort mean taken off the distance
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def write_scores_markdown(record: dict, path: object) -> None:
    """The generated page of the score-level variants."""
    from pathlib import Path

    lines = [
        "# LFW pairs subset: score-level variants (fusion, score normalisation, learned metrics)",
        "",
        "Generated by `scripts/eval_verification.py --scores` (do not edit; "
        "`pipeline/evaluation/verification_scores.py` describes every variant; "
        "docs/recognition.md discusses them).",
        "",
        f"Data: the 1,800 pairs of `lfw-pairs-subset` (3 identity-disjoint folds), the cached "
        f"plain and mirrored 5-point 1-jitter encodings of its {record['images']} images. "
        "Every accuracy is held out: the threshold, any cohort or metric and any "
        "hyper-parameter come from the other two folds (hyper-parameters by inner CV inside "
        "them). 'best fixed grid value' is the best held-out mean over the grid with one value "
        "for all folds: an optimistic bound, not a result.",
        "",
        "| variant | encodings | fold 1 | fold 2 | fold 3 | mean | errors / 1,800 "
        "| chosen (per fold) | best fixed grid value | thresholds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["variants"]:
        f1, f2, f3 = (f"{100 * a:.2f} %" for a in r["per_fold_accuracy"])
        grid = r.get("fixed_grid_value")
        best = ""
        if grid:
            g, v = max(grid.items(), key=lambda kv: kv[1]["mean_accuracy"])
            best = f"{g}: {100 * v['mean_accuracy']:.2f} % ({v['errors']})"
        chosen = ", ".join(r["chosen"]) if r["grid"] != ["None"] else ""
        lines.append(
            f"| {r['variant']} | {r['encodings']} | {f1} | {f2} | {f3} | "
            f"**{100 * r['mean_accuracy']:.2f} %** | {r['errors_held_out']} | {chosen} | {best} | "
            f"{', '.join(f'{t:g}' for t in r['thresholds'])} |"
        )
    lines += ["", f"- command: `{record['command']}` ({record['date']})", ""]
    Path(path).write_text("\n".join(lines))  # type: ignore[arg-type]
