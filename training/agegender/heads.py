"""Transfer heads v2: a few seeds of small MLP heads on dlib encodings, trained for
generalisation rather than for the split.

What differs from ``facepipe train age-gender --model transfer`` (the v1 heads):

* **views**: every training image gives three examples: its plain encoding, the encoding
  of its mirrored face chip and the encoding of a *video-like degraded* copy (low
  resolution, blur, JPEG, noise, light, roll; :mod:`training.agegender.video_features`),
  all made with the recognize stage's alignment (5-point landmarks, dlib's chip);
* **balanced groups**: each example is weighted by ``(mean group size / its group's
  size) ** BALANCE_POWER`` over race x gender x age band
  (:func:`pipeline.agegender.split.group_of`), so rare groups (old, Black/Indian/"other"
  women, children) count more without letting a few images dominate;
* **age loss**: label-distribution learning with a width that grows with age (UTKFace's
  ages of old people are less exact), plus a small L1 term on the expected age;
* **seeds**: ``SEEDS`` heads with different initialisations and data orders, stored in
  one ``.npz`` (arrays with a leading seed axis); the runtime averages their age
  distributions and gender logits (:class:`pipeline.agegender.runtime.HeadsRuntime`).

Features are standardised (``mean``/``scale`` stored in the file). Trained on the
training side of the fixed split *without* the dev files (those fit the ensemble's
stacker and calibrations) and never on validation.

    nice -n 10 python -m training.agegender.heads --out pipeline/models/age_gender/transfer.npz
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SEEDS = 5
HIDDEN = 256
DROPOUT = 0.3
EPOCHS = 40
BATCH = 256
LR = 2e-3
BALANCE_POWER = 0.5
MAX_WEIGHT = 4.0
FEATURE_NOISE = 0.15  # Gaussian noise on the standardised features
AGE_L1 = 0.05
GENDER_WEIGHT = 2.0
GENDER_SMOOTHING = 0.05
INIT_LR = 3e-4  # fine-tuning an existing head (--init)
INIT_NOISE = 0.02  # its features are not standardised (raw dlib encodings)
INIT_DROPOUT = 0.4


def age_sigma(age: Any) -> Any:
    """Label-distribution width (years) at a true age."""
    return 1.5 + 0.06 * age


def group_weights(
    ages: np.ndarray,
    genders: np.ndarray,
    races: np.ndarray,
    power: float = BALANCE_POWER,
    cap: float = MAX_WEIGHT,
    population: dict[str, int] | None = None,
) -> np.ndarray:
    """Per-example weights that even out race x gender x age-band groups (mean 1).

    ``population``: the group sizes of the whole training side when these examples are a
    subset sampled unevenly from it (the balanced tiers of the feature cache): each example
    first gets ``population / subset count`` of its group (so the subset stands for the
    whole training side), then the balancing ``(mean size / population size) ** power``.
    Without it the subset's own counts are the population."""
    from pipeline.agegender.split import group_of

    groups = np.array([group_of(a, g, r) for a, g, r in zip(ages, genders, races, strict=True)])
    names, inv, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if population is None:
        w = (counts.mean() / counts[inv]) ** power
        w = np.minimum(w, cap)
    else:
        pop = np.array([population[n] for n in names], dtype=np.float64)
        balance = np.minimum((pop.mean() / pop) ** power, cap)
        w = (pop / counts * balance)[inv]
    return (w / w.mean()).astype(np.float32)


def training_population() -> dict[str, int]:
    """Race x gender x age-band group sizes of the training side (dev and validation
    excluded) of the fixed split."""
    from pipeline.agegender.split import group_of, list_samples, sides_of
    from pipeline.datasets import require

    samples = list_samples(require("utkface"))
    sides = sides_of(np.array([s.name for s in samples]))
    out: dict[str, int] = {}
    for s, side in zip(samples, sides, strict=True):
        if side == "train":
            g = group_of(s.age, s.gender, s.race)
            out[g] = out.get(g, 0) + 1
    return out


def components(x: np.ndarray, threshold: float, block: int = 512) -> np.ndarray:
    """Connected components of the graph "closer than ``threshold``" over the rows of
    ``x`` (single linkage, union-find); returns a component id per row. The approximate
    persons of UTKFace (no identity labels) from their dlib encodings."""
    parent = np.arange(len(x))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    sq = (x**2).sum(1)
    for s in range(0, len(x), block):
        d2 = sq[s : s + block, None] + sq[None, :] - 2.0 * x[s : s + block] @ x.T
        ii, jj = np.nonzero(d2 < threshold**2)
        for i, j in zip(ii + s, jj, strict=True):
            if j > i:
                a, b = find(int(i)), find(int(j))
                if a != b:
                    parent[max(a, b)] = min(a, b)
    return np.array([find(i) for i in range(len(x))])


def identity_weights(
    plain: np.ndarray, ages: np.ndarray, threshold: float, min_age: int = 20
) -> np.ndarray:
    """Per-image weights ``1 / sqrt(photos of the same approximate person)`` (mean 1):
    faces aged ``min_age`` and over whose plain dlib encodings are closer than
    ``threshold`` are chained into one identity (single linkage, as in
    ``scripts/attributes_by_person.py``), so a person with many photos does not count many
    times; younger faces (dlib encodes children close together whoever they are) keep 1."""
    w = np.ones(len(plain), dtype=np.float64)
    adult = np.flatnonzero(ages >= min_age)
    comp = components(plain[adult].astype(np.float64), threshold)
    _, inv, counts = np.unique(comp, return_inverse=True, return_counts=True)
    w[adult] = 1.0 / np.sqrt(counts[inv])
    return (w / w.mean()).astype(np.float32)


def _model(
    dim: int,
    seed: int,
    hidden: int = HIDDEN,
    noise: float = FEATURE_NOISE,
    dropout: float = DROPOUT,
) -> Any:
    import keras
    from keras import layers

    from pipeline.agegender.models import AGE_BINS

    keras.utils.set_random_seed(seed)
    inp = keras.Input((dim,), name="features")
    x = layers.GaussianNoise(noise)(inp)
    x = layers.Dense(hidden, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    x = layers.Dense(hidden, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    age = layers.Dense(AGE_BINS, name="age")(x)
    gender = layers.Dense(1, name="gender")(x)
    return keras.Model(inp, {"age": age, "gender": gender})


def _age_loss(y_true: Any, logits: Any) -> Any:
    from keras import ops

    from pipeline.agegender.models import AGE_BINS

    y = ops.reshape(ops.cast(y_true, "float32"), (-1, 1))
    bins = ops.cast(ops.arange(AGE_BINS), "float32")[None, :]
    target = ops.exp(-0.5 * ops.square((bins - y) / age_sigma(y)))
    target = target / ops.sum(target, axis=-1, keepdims=True)
    logp = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    ce = -ops.sum(target * logp, axis=-1)
    expected = ops.sum(ops.exp(logp) * bins, axis=-1)
    return ce + AGE_L1 * ops.abs(expected - y[:, 0])


def train_seed(
    x: np.ndarray,
    age: np.ndarray,
    gender: np.ndarray,
    w: np.ndarray,
    seed: int,
    epochs: int = EPOCHS,
    init: dict[str, np.ndarray] | None = None,
    peak_lr: float = LR,
) -> Any:
    """One head; ``init``: start from these weights (an existing single-head file, same
    width) and fine-tune them."""
    import keras

    if init is None:
        model = _model(x.shape[1], seed)
    else:
        model = _model(
            x.shape[1],
            seed,
            hidden=init["W0"].shape[1],
            noise=INIT_NOISE,
            dropout=INIT_DROPOUT,
        )
        dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
        hidden = [d for d in dense if d.name not in ("age", "gender")]
        for i, d in enumerate(hidden):
            d.set_weights([init[f"W{i}"], init[f"b{i}"]])
        model.get_layer("age").set_weights([init["Wa"], init["ba"]])
        model.get_layer("gender").set_weights([init["Wg"], init["bg"]])
    steps = epochs * int(np.ceil(len(x) / BATCH))
    lr = keras.optimizers.schedules.CosineDecay(
        0.0, steps, alpha=0.02, warmup_target=peak_lr, warmup_steps=max(1, steps // 20)
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=lr, weight_decay=1e-4),
        loss={
            "age": _age_loss,
            "gender": keras.losses.BinaryCrossentropy(
                from_logits=True, label_smoothing=GENDER_SMOOTHING
            ),
        },
        loss_weights={"age": 1.0, "gender": GENDER_WEIGHT},
    )
    model.fit(
        x,
        {"age": age.astype(np.float32), "gender": gender.astype(np.float32)[:, None]},
        sample_weight={"age": w, "gender": w},
        batch_size=BATCH,
        epochs=epochs,
        shuffle=True,
        verbose=0,
    )
    return model


def _weights(model: Any) -> dict[str, np.ndarray]:
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    hidden = [d for d in dense if d.name not in ("age", "gender")]
    out: dict[str, np.ndarray] = {}
    for i, d in enumerate(hidden):
        out[f"W{i}"], out[f"b{i}"] = d.get_weights()
    out["Wa"], out["ba"] = model.get_layer("age").get_weights()
    out["Wg"], out["bg"] = model.get_layer("gender").get_weights()
    return out


def stack_seeds(models: list[Any], mean: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    """One ``.npz``'s arrays: ``mean``/``scale`` and every weight with a leading seed axis."""
    per = [_weights(m) for m in models]
    arrays = {k: np.stack([p[k] for p in per]).astype(np.float32) for k in per[0]}
    arrays["mean"] = mean.astype(np.float32)
    arrays["scale"] = scale.astype(np.float32)
    return arrays


def views(feats: np.ndarray, which: str) -> np.ndarray:
    """Rows of the 384-column cache: plain (0), mirrored (1), degraded (2)."""
    cols = {"plain": 0, "mirror": 1, "degraded": 2}[which]
    return feats[:, 128 * cols : 128 * (cols + 1)]


def report_heads(heads: Any, d: dict[str, np.ndarray]) -> dict[str, Any]:
    """Metrics of heads on the cached dev (and validation, if built) files, on the plain
    and the degraded encodings (reported only: nothing is chosen on validation)."""
    from training.agegender.training import evaluate_arrays

    report: dict[str, Any] = {}
    for side in ("dev", "val"):
        m = d["sides"] == side
        if not m.any():
            continue
        for v in ("plain", "degraded"):
            x = views(d["features"][m], v)
            if np.isnan(x).any():  # a view this cache does not hold (or not for every file)
                continue
            probs, pf = heads(x)
            r = evaluate_arrays(probs, pf, d["ages"][m], d["genders"][m])
            report[f"{side}_{v}"] = {
                k: r[k] for k in ("n", "age_mae", "gender_accuracy", "gender_accuracy_13plus")
            }
            log.info("%s %s %s: %s", heads.path.name, side, v, json.dumps(report[f"{side}_{v}"]))
    return report


def mirrored_as_video(partial: bool = False) -> dict[str, np.ndarray]:
    """The plain + mirrored cache (:func:`training.agegender.data.mirrored_cache`) in the
    video cache's layout (384 columns, the degraded view NaN) with ``sides``."""
    from pipeline.agegender.split import sides_of
    from training.agegender import data

    d = dict(data.mirrored_cache(partial=partial))
    f = d["features"]
    d["features"] = np.hstack([f, np.full((len(f), 128), np.nan, dtype=np.float32)])
    d["sides"] = sides_of(d["names"])
    return d


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipeline.agegender.runtime import HeadsRuntime
    from pipeline.agegender.split import group_of
    from training.agegender import video_features

    ap = argparse.ArgumentParser(description="train the v2 transfer heads (seeds, views, groups)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, default=SEEDS)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--views", default="plain,mirror,degraded")
    ap.add_argument("--balance", type=float, default=BALANCE_POWER, help="0: no group weights")
    ap.add_argument("--partial", action="store_true", help="train on the chunks built so far")
    ap.add_argument(
        "--cache",
        choices=["video", "mirrored"],
        default="video",
        help="video: the video-like cache (plain, mirror, degraded; video_features); "
        "mirrored: the plain + mirrored cache of training.agegender.data (no degraded view, "
        "cheaper to build)",
    )
    ap.add_argument(
        "--no-subset-correction",
        action="store_true",
        help="weight groups by their counts among the encoded files, not by their share of "
        "the whole training side (with a partial, balanced-tier cache the encoded files "
        "over-represent rare groups)",
    )
    ap.add_argument(
        "--identity",
        type=float,
        default=0.0,
        help="also weight each adult image by 1/sqrt(its approximate person's photos), people "
        "being chains of encodings closer than this (e.g. 0.42; 0: off)",
    )
    ap.add_argument(
        "--init",
        type=Path,
        default=None,
        help="fine-tune an existing single-head .npz (e.g. the v1 transfer.npz) instead of "
        "training from random weights; keeps its feature standardisation",
    )
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate")
    ap.add_argument("--float16", action="store_true", help="store the weights as float16")
    ap.add_argument("--compare", type=Path, default=None, help="also report these heads")
    args = ap.parse_args(argv)
    d = (
        mirrored_as_video(partial=args.partial)
        if args.cache == "mirrored"
        else video_features.load(partial=args.partial)
    )
    sides = d["sides"]
    tr = sides == "train"
    feats = d["features"]
    chosen = args.views.split(",")
    x = np.concatenate([views(feats[tr], v) for v in chosen])
    rep = len(chosen)
    age = np.tile(d["ages"][tr], rep)
    gender = np.tile(d["genders"][tr], rep)
    population = None if args.no_subset_correction else training_population()
    w1 = group_weights(
        d["ages"][tr], d["genders"][tr], d["races"][tr], args.balance, population=population
    )
    if args.identity > 0:
        w1 = w1 * identity_weights(views(feats[tr], "plain"), d["ages"][tr], args.identity)
        w1 = (w1 / w1.mean()).astype(np.float32)
    w = np.tile(w1, rep)
    ok = ~np.isnan(x).any(axis=1)  # chunks built without the mirrored view leave it NaN
    x, age, gender, w = x[ok], age[ok], gender[ok], w[ok]
    init = None
    if args.init is not None:
        with np.load(args.init, allow_pickle=False) as z:
            init = {k: z[k] for k in z.files}
        mean, scale = init["mean"], init["scale"]
    else:
        mean = views(feats[tr], "plain").mean(axis=0)
        scale = views(feats[tr], "plain").std(axis=0) + 1e-6
    xs = (x - mean) / scale
    log.info("training on %d images, %d examples (%s)", int(tr.sum()), len(x), args.views)
    models = []
    t0 = time.time()
    for s in range(args.seeds):
        models.append(
            train_seed(
                xs,
                age,
                gender,
                w,
                seed=1000 + s,
                epochs=args.epochs,
                init=init,
                peak_lr=args.lr or (INIT_LR if init is not None else LR),
            )
        )
        log.info("seed %d done (%.0f s)", s, time.time() - t0)
    arrays = stack_seeds(models, mean, scale)
    if args.float16:
        arrays = {k: v.astype(np.float16) for k, v in arrays.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(args.out)
    report = report_heads(HeadsRuntime(args.out), d)
    if args.compare is not None:
        report["compare"] = {
            "heads": str(args.compare),
            **report_heads(HeadsRuntime(args.compare), d),
        }
    groups = sorted(
        {
            group_of(a, g, r)
            for a, g, r in zip(d["ages"][tr], d["genders"][tr], d["races"][tr], strict=True)
        }
    )
    info = {
        "what": "transfer heads v2 (training.agegender.heads)",
        "seeds": args.seeds,
        "epochs": args.epochs,
        "hidden": HIDDEN,
        "views": chosen,
        "balance_power": args.balance,
        "identity_threshold": args.identity or None,
        "subset_correction": not args.no_subset_correction,
        "init": str(args.init) if args.init else None,
        "float16": args.float16,
        "train_images": int(tr.sum()),
        "train_examples": int(len(x)),
        "groups": len(groups),
        "metrics": report,
        "seconds": round(time.time() - t0),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.with_suffix(".train.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    sys.exit(main())
