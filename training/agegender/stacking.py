"""The ensemble's combination weights, fitted on held-out *training* files (never validation).

The ``ensemble`` backend combines its members' predictions with a tiny linear stacker
(:class:`pipeline.agegender.stacker.Stacker`, which applies it at run time); here it is fitted:

* age: ``b + sum_i w_i * age_i`` (the members' expected ages, years), fitted by least
  absolute deviations (the reported metric is the MAE);
* gender: ``p(female) = sigmoid(c + sum_i v_i * logit(p_i))``, a logistic regression on
  the members' gender logits (small L2 penalty), kept only when it beats the plain mean
  of the members' p(female) in 10-fold cross-validation on the fitting files; otherwise
  (a tie included) gender stays the plain mean (``gender_combine: mean``).

It is fitted on the "dev" files (:data:`pipeline.agegender.split.DEV_BUCKETS`, 4 % of
UTKFace, 721 images): they belong to the training side of the fixed split, but no member
was trained on them (training only monitors them). The validation split is used for
nothing but reporting. The fitted numbers are stored as JSON next to the models
(``pipeline/models/age_gender/ensemble.json``, a few hundred bytes) with how they were fitted.

``python -m training.agegender.stacking`` computes the members' predictions on the dev and
validation files (cached under ``runs/agegender/cache/``), fits the stacker on dev, writes
``ensemble.json`` and prints dev (cross-validated) and validation metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.agegender.runtime import MODELS_DIR
from pipeline.agegender.stacker import (
    MEMBER_MODELS,
    Stacker,
    calibration_path,
    child_weight,
    digest,
    logit,
    sigmoid,
)

log = logging.getLogger(__name__)

DEFAULT_MEMBERS = ("scratch", "transfer")


def fit_age(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-absolute-deviation fit of ``y ~ b + x @ w`` (iteratively reweighted LS)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a = np.hstack([x, np.ones((len(x), 1))])
    coef = np.linalg.lstsq(a, y, rcond=None)[0]
    for _ in range(100):
        r = np.abs(y - a @ coef)
        w = 1.0 / np.maximum(r, 0.5)
        new = np.linalg.lstsq(a * w[:, None] ** 0.5, y * w**0.5, rcond=None)[0]
        if np.max(np.abs(new - coef)) < 1e-7:
            coef = new
            break
        coef = new
    return coef[:-1], float(coef[-1])


def fit_gender(z: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[np.ndarray, float]:
    """Logistic regression of ``y`` (0/1) on member logits ``z`` (Newton, L2 on weights)."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    a = np.hstack([z, np.ones((len(z), 1))])
    coef = np.zeros(a.shape[1])
    coef[:-1] = 1.0 / z.shape[1]
    reg = np.full(a.shape[1], l2 * len(y))
    reg[-1] = 0.0
    for _ in range(50):
        p = sigmoid(a @ coef)
        grad = a.T @ (p - y) + reg * coef
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg) + 1e-9 * np.eye(a.shape[1])
        step = np.linalg.solve(hess, grad)
        coef -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return coef[:-1], float(coef[-1])


def fit(
    members: tuple[str, ...],
    ages: np.ndarray,
    p_female: np.ndarray,
    y_age: np.ndarray,
    y_g: np.ndarray,
    gender_combine: str = "logistic",
    child: bool = False,
    stacked_age: np.ndarray | None = None,
) -> Stacker:
    """Fit the stacker on member predictions ``(N, M)`` and true labels (``gender_combine``
    and ``child`` as given; :func:`choose_gender` decides them by cross-validation).
    ``child``: also fit the age-dependent gender weights (``gender_child_weights``)."""
    aw, ab = fit_age(ages, y_age)
    z = logit(p_female)
    if not child:
        gw, gb = fit_gender(z, y_g)
        return Stacker(tuple(members), aw, ab, gw, gb, gender_combine)
    k = child_weight(np.clip(ages @ aw + ab if stacked_age is None else stacked_age, 0.0, 100.0))
    w, gb = fit_gender(np.hstack([z, z * k[:, None]]), y_g)
    m = len(members)
    return Stacker(tuple(members), aw, ab, w[:m], gb, gender_combine, w[m:])


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def choose_gender(
    members: tuple[str, ...],
    ages: np.ndarray,
    p_female: np.ndarray,
    y_age: np.ndarray,
    y_g: np.ndarray,
) -> tuple[str, bool, dict[str, Any]]:
    """The gender combination with the lowest cross-validated log loss on these files
    (the probability matters: abstention thresholds it): the plain mean of p(female),
    the logistic regression, or the logistic regression with the age-dependent term.
    Returns (gender_combine, child, the candidates' cross-validated figures)."""
    cands: dict[str, dict[str, Any]] = {}
    mean_p = p_female.mean(axis=1)
    cands["mean"] = {
        "log_loss": log_loss(mean_p, y_g),
        "accuracy": float(((mean_p >= 0.5) == (y_g == 1)).mean()),
    }
    for name, child in (("logistic", False), ("logistic+child", True)):
        _, op = cross_validate(members, ages, p_female, y_age, y_g, child=child)
        cands[name] = {
            "log_loss": log_loss(op, y_g),
            "accuracy": float(((op >= 0.5) == (y_g == 1)).mean()),
        }
    best = min(cands, key=lambda k: cands[k]["log_loss"])
    return ("mean" if best == "mean" else "logistic"), best == "logistic+child", cands


def cross_validate(
    members: tuple[str, ...],
    ages: np.ndarray,
    p_female: np.ndarray,
    y_age: np.ndarray,
    y_g: np.ndarray,
    folds: int = 10,
    child: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold stacker predictions (to compare stackers on the fitting data itself)."""
    n = len(y_age)
    fold = np.arange(n) % folds
    rng = np.random.default_rng(0)
    rng.shuffle(fold)
    out_a, out_p = np.empty(n), np.empty(n)
    for k in range(folds):
        tr, te = fold != k, fold == k
        s = fit(members, ages[tr], p_female[tr], y_age[tr], y_g[tr], child=child)
        out_a[te], out_p[te] = s(ages[te], p_female[te])
    return out_a, out_p


def _plain_encodings(names: list[str]) -> np.ndarray:
    """The recognize stage's 128-d encodings of UTKFace files with the face-crop box: from
    the feature caches under ``runs/agegender/cache`` or, for validation files, the
    evaluation's cache (``scripts/eval_attributes.py``); KeyError when a file has none."""
    from pipeline.agegender.framing import face_crop_box
    from pipeline.datasets import REPO_ROOT
    from pipeline.recognition.verify import EncodingCache
    from training.agegender import data, video_features

    found: dict[str, np.ndarray] = {}
    try:
        d = video_features.load(partial=True)
        want = set(names)
        found.update(
            {str(n): d["features"][i, :128] for i, n in enumerate(d["names"]) if str(n) in want}
        )
    except FileNotFoundError:
        pass
    rest = [n for n in names if n not in found]
    if rest:
        try:
            found.update(zip(rest, data.mirrored_features(rest)[:, :128], strict=True))
            rest = []
        except KeyError:
            pass
    if rest:
        stage = REPO_ROOT / "runs" / "attributes" / "encodings-jitter1-up80" / "utkface"
        cache = EncodingCache(stage) if stage.is_dir() else None
        box = tuple(int(round(v)) for v in face_crop_box(200, 200).box)
        for n in rest:
            v = cache.get(n, box) if cache is not None else None  # type: ignore[arg-type]
            if v is None:
                raise KeyError(f"no dlib encoding cached for {n}")
            found[n] = np.round(v, 6)
    return np.stack([np.asarray(found[n], dtype=np.float64) for n in names])


def _flip_encodings(names: list[str]) -> np.ndarray:
    """Flip-averaged encodings (what ``transfer`` with ``flip: true`` gives its heads)
    from the plain + mirrored cache of :mod:`training.agegender.data`."""
    from pipeline.recognition.encoder import flip_average
    from training.agegender import data

    f = data.mirrored_features(names).astype(np.float64)
    return np.stack([flip_average(a, b) for a, b in zip(f[:, :128], f[:, 128:], strict=True)])


def member_predictions(
    member: str,
    names: list[str],
    cache_dir: Path | None = None,
    flip: bool = False,
    model: Path | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A backend's raw (age, p_female, age distributions or None) on UTKFace files through
    ``estimate`` with the face-crop box (like ``scripts/eval_attributes.py``); cached per
    model file.

    ``transfer`` reads the plain dlib encodings from the caches (the same values the
    backend gets from the recognize stage, see :func:`_plain_encodings`); with ``flip``
    the flip-averaged ones (its ``flip`` option, :func:`_flip_encodings`). ``model``: another
    model file than the shipped one (``transfer``: a heads ``.npz``; ``scratch``: a
    ``.tflite``).
    """
    from pipeline.agegender.framing import face_crop_box
    from pipeline.agegender.images import read_rgb
    from pipeline.agegender.models import AGE_BINS, age_from_probs
    from pipeline.agegender.runtime import HeadsRuntime
    from pipeline.attributes import registry
    from pipeline.datasets import require
    from training.agegender import data

    cache_dir = cache_dir or data.CACHE_DIR
    if model is not None and member not in ("transfer", "scratch"):
        raise ValueError("another model file is supported for the transfer and scratch members")
    model = model or MEMBER_MODELS.get(member)
    tag = digest(model) if model else "pkg"
    if flip and member != "transfer":
        raise ValueError("flip is an option of the transfer member only")
    path = cache_dir / f"preds2_{member}_{tag}{'_flip' if flip else ''}.npz"
    known: dict[str, tuple[float, float, np.ndarray | None]] = {}
    if path.exists():
        z = data.load_npz(path)
        probs_z = z.get("probs")
        known = {
            str(n): (float(a), float(p), None if probs_z is None else probs_z[i])
            for i, (n, a, p) in enumerate(zip(z["names"], z["age"], z["p"], strict=True))
        }
    todo = [n for n in names if n not in known]
    if todo and member == "transfer":
        enc = _flip_encodings(todo) if flip else _plain_encodings(todo)
        probs, pf = HeadsRuntime(model)(enc)  # type: ignore[arg-type]
        a, _ = age_from_probs(probs)
        known.update(
            {n: (float(x), float(p), q) for n, x, p, q in zip(todo, a, pf, probs, strict=True)}
        )
    elif todo:
        folder = require("utkface")
        # raw outputs: calibrations and stackers are fitted on these
        opts: dict[str, Any] | None = {"calibrate": False} if model else None
        if opts is not None and member == "scratch":
            opts["model"] = str(model)
        est = registry.create(member, opts)
        for k, n in enumerate(todo):
            im = read_rgb(folder / n)
            (r,) = est.estimate(im, [face_crop_box(*im.shape[:2])])
            known[n] = (r.age, r.p_female, r.age_probs)
            if (k + 1) % 500 == 0:
                log.info("%s: %d/%d", member, k + 1, len(todo))
    has_probs = all(v[2] is not None for v in known.values())
    if todo:
        cache_dir.mkdir(parents=True, exist_ok=True)
        keys = sorted(known)
        arrays = {
            "names": np.array(keys),
            "age": np.array([known[k][0] for k in keys]),
            "p": np.array([known[k][1] for k in keys]),
        }
        if has_probs:
            arrays["probs"] = np.stack([known[k][2] for k in keys]).astype(np.float32)  # type: ignore[misc]
        np.savez(path, **arrays)
    probs_out = (
        np.stack([np.asarray(known[n][2], dtype=np.float64) for n in names])
        if has_probs and names
        else None
    )
    if probs_out is not None and probs_out.shape[1] != AGE_BINS:
        probs_out = None
    return (
        np.array([known[n][0] for n in names]),
        np.array([known[n][1] for n in names]),
        probs_out,
    )


def sides() -> dict[str, list]:
    """UTKFace samples on the dev (stacker fitting) and val (reporting) sides."""
    from pipeline.agegender.split import list_samples, sides_of
    from pipeline.datasets import require

    samples = list_samples(require("utkface"))
    side = sides_of(np.array([s.name for s in samples]))
    return {
        "dev": [s for s, x in zip(samples, side, strict=True) if x == "dev"],
        "val": [s for s, x in zip(samples, side, strict=True) if x == "val"],
    }


def matrix(
    members: tuple[str, ...],
    samples: list,
    flip: tuple[str, ...] = (),
    models: dict[str, Path] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """Member predictions ``(N, M)`` (age, p_female), labels, and per member its age
    distributions ``(N, bins)`` or None. ``flip``: members run with test-time flip;
    ``models``: members run with another model file than the shipped one."""
    names = [s.name for s in samples]
    models = models or {}
    preds = [member_predictions(m, names, flip=m in flip, model=models.get(m)) for m in members]
    ages = np.stack([p[0] for p in preds], 1)
    pf = np.stack([p[1] for p in preds], 1)
    y_age = np.array([s.age for s in samples], dtype=np.float64)
    y_g = np.array([s.gender for s in samples], dtype=np.float64)
    return ages, pf, y_age, y_g, [p[2] for p in preds]


POOL_EXPONENTS = (0.5, 0.7, 1.0)


def pooled_features(
    members: tuple[str, ...], ages: np.ndarray, probs: list[np.ndarray | None], exponent: float
) -> tuple[np.ndarray, tuple[str, ...], list[int]]:
    """Age features with the distributions pooled: column 0 the median of the product of
    the members' age distributions, then the ages of the members without one."""
    from pipeline.agegender.stacker import distribution_median, pool_product

    pooled = [i for i, q in enumerate(probs) if q is not None]
    other = [i for i in range(len(members)) if i not in pooled]
    med = distribution_median(pool_product([probs[i] for i in pooled], exponent))  # type: ignore[misc]
    x = np.column_stack([med, ages[:, other]]) if other else med[:, None]
    return x, tuple(members[i] for i in pooled), other


def _cv_age(x: np.ndarray, y: np.ndarray, folds: int = 10) -> np.ndarray:
    n = len(y)
    fold = np.arange(n) % folds
    np.random.default_rng(0).shuffle(fold)
    out = np.empty(n)
    for k in range(folds):
        w, b = fit_age(x[fold != k], y[fold != k])
        out[fold == k] = x[fold == k] @ w + b
    return out


def fit_checked(
    members: tuple[str, ...],
    ages: np.ndarray,
    p_female: np.ndarray,
    y_age: np.ndarray,
    y_g: np.ndarray,
    probs: list[np.ndarray | None] | None = None,
) -> tuple[Stacker, dict[str, Any]]:
    """:func:`fit`, keeping each fitted part only when it beats the plain mean (for one
    member: the raw prediction) in 10-fold cross-validation on the same files; with the
    members' age distributions (``probs``, two or more of them), also the pooled age
    (:func:`pooled_features`, each exponent of :data:`POOL_EXPONENTS`), kept when its
    cross-validated MAE is the lowest. Returns the stacker and the cross-validated
    metrics."""
    from training.agegender.training import metrics

    combine, child, gender_cv = choose_gender(members, ages, p_female, y_age, y_g)
    oa, op = cross_validate(members, ages, p_female, y_age, y_g, child=child)
    if combine == "mean":
        op = p_female.mean(axis=1)
    mean = metrics(ages.mean(1), p_female.mean(1), y_age, y_g)
    stacker = fit(members, ages, p_female, y_age, y_g, combine, child)
    plain = Stacker.mean(members)
    if float(np.abs(oa - y_age).mean()) >= mean["age_mae"]:
        stacker.age_weights, stacker.age_bias = plain.age_weights, plain.age_bias
        oa = ages.mean(1)
    pool_cv: dict[str, float] = {}
    if probs is not None and sum(q is not None for q in probs) >= 2:
        best = None
        for e in POOL_EXPONENTS:
            x, pooled, other = pooled_features(members, ages, probs, e)
            o = _cv_age(x, y_age)
            pool_cv[str(e)] = round(float(np.abs(o - y_age).mean()), 4)
            if best is None or pool_cv[str(e)] < best[0]:
                best = (pool_cv[str(e)], e, x, pooled, other, o)
        assert best is not None
        if best[0] < float(np.abs(oa - y_age).mean()):
            _, e, x, pooled, other, o = best
            w, b = fit_age(x, y_age)
            aw = np.zeros(len(members))
            aw[other] = w[1:]
            stacker.age_weights, stacker.age_bias = aw, b
            stacker.age_pool, stacker.pool_members = "product", pooled
            stacker.pool_weight, stacker.pool_exponent = float(w[0]), e
            oa = o
            if child:  # the age-dependent gender term on the pooled age
                stacker = _with_gender(
                    stacker,
                    fit(members, ages, p_female, y_age, y_g, combine, child, stacked_age=x @ w + b),
                )
    cv = metrics(oa, op, y_age, y_g)
    return stacker, {
        "cross_validated": cv,
        "mean": mean,
        "gender_candidates": gender_cv,
        "pool_cv_age_mae": pool_cv,
    }


def _with_gender(stacker: Stacker, other: Stacker) -> Stacker:
    stacker.gender_weights, stacker.gender_bias = other.gender_weights, other.gender_bias
    stacker.gender_child_weights = other.gender_child_weights
    return stacker


def _record(stacker: Stacker, checks: dict[str, Any], n: int, what: str) -> dict[str, Any]:
    from pipeline.agegender.split import DEV_BUCKETS

    cv = checks["cross_validated"]
    return {
        **stacker.to_json(),
        "what": what,
        "fitted_on": (
            f"UTKFace dev files (training side, buckets {DEV_BUCKETS.start}-"
            f"{DEV_BUCKETS.stop - 1}, {n} images, no model here was trained on them); "
            "the validation split was not used"
        ),
        "method": "age: least absolute deviations on the ages + bias, kept only if it beats "
        "the plain mean (one model: its raw output) in 10-fold cross-validation on the same "
        "files; gender: the plain mean of p(female), a logistic regression (L2 0.01 x n on "
        "weights) on the gender logits + bias, or the same with an age-dependent term "
        "(gender_child_weights), whichever has the lowest 10-fold cross-validated log loss "
        f"(here: {stacker.gender_combine}"
        f"{' + child' if stacker.gender_child_weights is not None else ''})",
        "age_method": (
            f"product of the age distributions of {list(stacker.pool_members)} (exponent "
            f"{stacker.pool_exponent}), its median, then least absolute deviations with the "
            "other members' ages"
            if stacker.age_pool == "product"
            else "least absolute deviations on the members' expected ages"
        ),
        "dev_pool_cv_age_mae": checks.get("pool_cv_age_mae", {}),
        "dev_gender_candidates_cv": {
            k: {kk: round(vv, 4) for kk, vv in v.items()}
            for k, v in checks.get("gender_candidates", {}).items()
        },
        "dev_cross_validated": {k: cv[k] for k in ("n", "age_mae", "gender_accuracy")},
        "dev_unfitted": {k: checks["mean"][k] for k in ("n", "age_mae", "gender_accuracy")},
        **({"member_options": checks["member_options"]} if "member_options" in checks else {}),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    from training.agegender.training import metrics

    ap = argparse.ArgumentParser(description="fit the ensemble stacker on the dev files")
    ap.add_argument("--members", default=",".join(DEFAULT_MEMBERS))
    ap.add_argument("--out", default=str(MODELS_DIR / "ensemble.json"))
    ap.add_argument(
        "--calibrations",
        action="store_true",
        help="also fit each member's own calibration (NAME.calibration.json beside its model)",
    )
    ap.add_argument("--no-write", action="store_true", help="only print the metrics")
    ap.add_argument(
        "--no-pool", action="store_true", help="do not try pooling the age distributions"
    )
    ap.add_argument(
        "--transfer-flip",
        action="store_true",
        help="fit on the transfer member with test-time flip (its option flip: the "
        "flip-averaged encoding); recorded in the file as member_options",
    )
    ap.add_argument(
        "--transfer-heads",
        type=Path,
        default=None,
        help="fit on the transfer member with these heads instead of the shipped transfer.npz "
        "(recorded as member_options heads, relative to the stacker's folder when in it; "
        "--calibrations then writes HEADS.calibration.json)",
    )
    ap.add_argument(
        "--scratch-model",
        type=Path,
        default=None,
        help="fit on the scratch member with this .tflite instead of the shipped scratch.tflite "
        "(recorded as member_options model, relative to the stacker's folder when in it; "
        "--calibrations then writes MODEL.calibration.json)",
    )
    args = ap.parse_args(argv)
    members = tuple(args.members.split(","))
    flip = ("transfer",) if args.transfer_flip and "transfer" in members else ()
    models: dict[str, Path] = {}
    options: dict[str, dict[str, Any]] = {m: {"flip": True} for m in flip}
    out_dir = Path(args.out).resolve().parent
    for member, file, key in (
        ("transfer", args.transfer_heads, "heads"),
        ("scratch", args.scratch_model, "model"),
    ):
        if file:
            models[member] = file
            resolved = file.resolve()
            rel = resolved.name if resolved.parent == out_dir else str(resolved)
            options.setdefault(member, {})[key] = rel
    parts = sides()
    a, p, ya, yg, probs = matrix(members, parts["dev"], flip, models)
    try:  # reported only, never used for fitting
        va, vp, vya, vyg, vprobs = matrix(members, parts["val"], flip, models)
    except KeyError as exc:
        log.warning("no validation report: %s", exc)
        va = None
    fits: dict[str, tuple[Stacker, dict[str, Any], tuple[int, ...]]] = {}
    stacker, checks = fit_checked(members, a, p, ya, yg, None if args.no_pool else probs)
    fits["ensemble"] = (stacker, checks, tuple(range(len(members))))
    if args.calibrations:
        for i, m in enumerate(members):
            if m in MEMBER_MODELS:
                s1, c1 = fit_checked((m,), a[:, [i]], p[:, [i]], ya, yg)
                fits[m] = (s1, c1, (i,))
    for name, (st, ch, cols) in fits.items():
        line = [
            f"{name}: dev raw/mean {ch['mean']['age_mae']:.3f} {ch['mean']['gender_accuracy']:.4f}"
        ]
        line.append(
            f"dev cv {ch['cross_validated']['age_mae']:.3f} "
            f"{ch['cross_validated']['gender_accuracy']:.4f}"
        )
        if va is not None:
            c = list(cols)
            raw = metrics(va[:, c].mean(1), vp[:, c].mean(1), vya, vyg)
            fitted = metrics(*st(va[:, c], vp[:, c], [vprobs[i] for i in c]), vya, vyg)
            line.append(f"val raw/mean {raw['age_mae']:.3f} {raw['gender_accuracy']:.4f}")
            line.append(f"val fitted {fitted['age_mae']:.3f} {fitted['gender_accuracy']:.4f}")
        print(" | ".join(line))
        print("   ", json.dumps(st.to_json()))
    if not args.no_write:
        for name, (st, ch, _) in fits.items():
            if name == "ensemble":
                path = Path(args.out)
                what = "the ensemble backend's combination of its members (raw member outputs)"
                if options:
                    ch = {**ch, "member_options": options}
            else:
                if name in flip:
                    continue  # a member's calibration is fitted on its default outputs
                path = calibration_path(models.get(name, MEMBER_MODELS[name]))
                what = f"calibration of the {name} backend's outputs (option calibrate)"
            rec = _record(st, ch, len(ya), what)
            if name in MEMBER_MODELS:
                rec["model_sha1"] = digest(models.get(name, MEMBER_MODELS[name]))
            else:
                rec["member_models_sha1"] = {
                    m: digest(MEMBER_MODELS[m])
                    for m in st.members
                    if m in MEMBER_MODELS and m not in models
                }
                if models:  # members with their own model file (member_options)
                    rec["member_options_sha1"] = {m: digest(f) for m, f in models.items()}
            path.write_text(json.dumps(rec, indent=1) + "\n")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    sys.exit(main())
