"""The resumable training loop for facepipe's age/gender models, and their model cards.

``train(cfg)`` trains one model (``scratch``: the CNN on UTKFace images; ``transfer``:
heads on frozen features) with checkpoints after every epoch under ``cfg.run_dir`` (a
``.keras`` file with optimizer state plus ``state.json``), so ``resume=True`` continues
where a run stopped (time limit, Ctrl-C, session end). At the end of every run it exports
the inference artefact (``.tflite`` / ``.npz``) and a model card (``.json`` + ``.md``:
data, split, training, validation metrics) to ``cfg.export_dir``.

Data: the fixed split of :mod:`pipeline.agegender.split`. The validation split is never
trained on and never used to choose anything; training progress is monitored on a small
"dev" part of the training files (``DEV_BUCKETS``), and the last epoch is kept.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.agegender import split as splitmod
from pipeline.agegender.models import AGE_BINS, INPUT_SIZE, age_from_probs
from pipeline.agegender.split import DEV_BUCKETS, sides_of
from pipeline.datasets import REPO_ROOT, require
from pipeline.machine import describe

log = logging.getLogger(__name__)

RUNS_DIR = REPO_ROOT / "runs" / "agegender"
HEADS_HIDDEN = 512
HEADS_DROPOUT = 0.4
"""Transfer heads: width of the two hidden layers and their dropout (chosen on dev)."""


@dataclass
class TrainConfig:
    model: str = "scratch"  # scratch | transfer
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    features: str = "dlib"  # transfer only: dlib | vgg16
    vgg16_weights: str | None = None
    run_dir: str | None = None
    export_dir: str | None = None
    max_minutes: float | None = None  # stop after the epoch that passes this
    limit: int | None = None  # use only the first N training images (quick runs)
    bf16: bool = True  # mixed bfloat16 for the CNN (AMX/AVX512-BF16 CPUs train ~1.5x faster)
    seed: int = 1234
    widths: tuple[int, ...] = (32, 48, 96, 160)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        if self.model == "transfer" and self.features != "dlib":
            return f"transfer-{self.features}"
        return self.model

    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else RUNS_DIR / self.name

    def export_path(self) -> Path:
        from pipeline.agegender.runtime import MODELS_DIR

        return Path(self.export_dir) if self.export_dir else MODELS_DIR


@dataclass
class Dataset:
    """Arrays for one model: inputs ``x`` (images or features) and labels, with sides."""

    x: np.ndarray
    ages: np.ndarray
    genders: np.ndarray
    side: np.ndarray  # "train" | "dev" | "val"
    source: dict[str, Any]
    races: np.ndarray | None = None  # UTKFace race labels (group-balanced weights)

    def part(
        self, side: str, limit: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.flatnonzero(self.side == side)
        if limit is not None:
            idx = idx[:limit]
        return self.x[idx], self.ages[idx].astype(np.float32), self.genders[idx].astype(np.float32)


def utkface_dataset(
    cfg: TrainConfig, progress: Callable[[int, int], None] | None = None
) -> Dataset:
    """The cached UTKFace arrays the model needs (built on first use)."""
    from training.agegender import data

    if cfg.model == "scratch":
        d = data.image_cache(80)
        return Dataset(
            d["images"], d["ages"], d["genders"], sides_of(d["names"]), _source(d), d["races"]
        )
    elif cfg.features == "dlib":
        # plain and mirrored encodings of every image: with ``mirror`` (default) the
        # mirrored face is one more training example with the same labels (training files
        # only; dev and val stay plain, as the pipeline computes them)
        d = data.mirrored_cache(partial=bool(cfg.extra.get("partial_features")))
        side = sides_of(d["names"])
        if not cfg.extra.get("mirror", True):
            return Dataset(d["features"][:, :128], d["ages"], d["genders"], side, _source(d))
        mirrored_side = np.where(side == "train", "train", "mirror-unused")
        source = _source(d, "dlib 128-d encodings of each image and of its mirrored chip")
        return Dataset(
            np.concatenate([d["features"][:, :128], d["features"][:, 128:]]),
            np.concatenate([d["ages"], d["ages"]]),
            np.concatenate([d["genders"], d["genders"]]),
            np.concatenate([side, mirrored_side]),
            source,
        )
    elif cfg.features == "vgg16":
        from pipeline.agegender.vgg16 import Vgg16Features

        fx = Vgg16Features(cfg.vgg16_weights)
        d = data.feature_cache(f"vgg16_{fx.digest}", fx.images, progress=progress)
        x = d["features"]
    else:
        raise ValueError(f"unknown features {cfg.features!r} (dlib or vgg16)")
    return Dataset(x, d["ages"], d["genders"], sides_of(d["names"]), _source(d))


def _source(d: dict[str, np.ndarray], inputs: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "dataset": "UTKFace aligned & cropped (../shared/datasets/utkface)",
        "images": int(len(d["names"])),
        "images_in_dataset": len(splitmod.list_samples(require("utkface"))),
        "split": split_description(),
    }
    if inputs:
        out["inputs"] = inputs
    return out


def split_description() -> str:
    return (
        f"validation = files whose SHA-1('{splitmod.SALT}:' + file name) mod 100 < "
        f"{splitmod.VAL_PERCENT} (pipeline/agegender/split.py); dev (never trained on: training "
        f"monitor, calibration and ensemble fitting) = buckets {DEV_BUCKETS.start}-"
        f"{DEV_BUCKETS.stop - 1}; train = the rest; malformed names skipped"
    )


def synthetic_dataset(n: int = 512, size: int = 80, dim: int = 0, seed: int = 0) -> Dataset:
    """Generated data whose labels are learnable (tests and smoke runs, no dataset needed).

    Images: brightness encodes age, a red or blue square encodes gender. Features
    (``dim`` > 0): linear functions of age and gender plus noise.
    """
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 90, n)
    genders = rng.integers(0, 2, n)
    if dim:
        proj = rng.normal(size=(2, dim))
        x = (np.stack([ages / 50.0 - 1.0, genders * 2.0 - 1.0], 1) @ proj).astype(np.float32)
        x += rng.normal(scale=0.1, size=x.shape).astype(np.float32)
    else:
        x = np.empty((n, size, size, 3), dtype=np.uint8)
        for i in range(n):
            level = int(30 + 2.4 * ages[i])
            img = np.full((size, size, 3), level, dtype=np.uint8)
            c = (200, 30, 30) if genders[i] else (30, 30, 200)
            img[size // 4 : size * 3 // 4, size // 4 : size * 3 // 4] = c
            x[i] = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255)
    side = np.array(["train"] * (n - n // 4) + ["dev"] * (n // 8) + ["val"] * (n // 4 - n // 8))
    races = rng.integers(0, 5, n)
    source = {"dataset": "synthetic (generated)", "images": n}
    return Dataset(x, ages, genders, side, source, races)


def machine() -> str:
    """CPU model, core count and Python version (for model cards and result tables)."""
    return describe()


# --------------------------------------------------------------------------- training


class _TimeLimit:
    """Keras callback factory: stop after the epoch that passes ``minutes``."""

    @staticmethod
    def make(minutes: float | None) -> Any:
        import keras

        class TimeLimit(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.t0 = time.time()
                self.hit = False

            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                if minutes is not None and time.time() - self.t0 > minutes * 60:
                    self.hit = True
                    self.model.stop_training = True

        return TimeLimit()


class _State:
    """``state.json`` in the run folder: config, epochs done, per-epoch history."""

    def __init__(self, run: Path) -> None:
        self.path = run / "state.json"
        self.data: dict[str, Any] = (
            json.loads(self.path.read_text()) if self.path.exists() else {"epoch": 0, "history": []}
        )

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def balance_weights(ds: Dataset, power: float, limit: int | None = None) -> np.ndarray:
    """Per-example weights (mean 1) of the training part that even out race x gender x
    age-band groups: ``(mean group size / group size) ** power``, capped (the transfer
    heads' :func:`training.agegender.heads.group_weights`). ``power`` 0: all ones."""
    from training.agegender.heads import group_weights

    idx = np.flatnonzero(ds.side == "train")
    if limit is not None:
        idx = idx[:limit]
    if power <= 0:
        return np.ones(len(idx), dtype=np.float32)
    if ds.races is None:
        raise ValueError("group-balanced weights need race labels (Dataset.races)")
    return group_weights(ds.ages[idx], ds.genders[idx], ds.races[idx], power)


def _tf_datasets(cfg: TrainConfig, ds: Dataset) -> tuple[Any, Any, int]:
    import tensorflow as tf

    from training.agegender.augment import augment_batch, center_batch

    xt, at, gt = ds.part("train", cfg.limit)
    xd, ad, gd = ds.part("dev")
    steps = max(1, len(xt) // cfg.batch_size)
    power = float(cfg.extra.get("balance", 0.0))
    degrade = float(cfg.extra.get("degrade", 0.0))
    if cfg.model == "scratch":

        def aug(x: Any, y: Any, *w: Any) -> Any:
            return (augment_batch(x, INPUT_SIZE, degrade=degrade), y, *w)

        def cen(x: Any, y: Any) -> Any:
            return center_batch(x, INPUT_SIZE), y

    else:
        noise = float(cfg.extra.get("feature_noise", 0.02))

        def aug(x: Any, y: Any, *w: Any) -> Any:
            return (x + tf.random.normal(tf.shape(x), stddev=noise), y, *w)

        def cen(x: Any, y: Any) -> Any:
            return x, y

    labels = {"age": at, "gender": gt}
    if power > 0:
        w = balance_weights(ds, power, cfg.limit)
        parts: tuple[Any, ...] = (xt, labels, {"age": w, "gender": w})
    else:
        parts = (xt, labels)
    train = (
        tf.data.Dataset.from_tensor_slices(parts)
        .shuffle(len(xt), seed=cfg.seed, reshuffle_each_iteration=True)
        .batch(cfg.batch_size, drop_remainder=True)
        .map(aug, num_parallel_calls=1)
        .repeat()
        .prefetch(2)
    )
    dev = (
        tf.data.Dataset.from_tensor_slices((xd, {"age": ad, "gender": gd}))
        .batch(256)
        .map(cen)
        .prefetch(1)
    )
    return train, dev, steps


def _build(cfg: TrainConfig, ds: Dataset, steps: int) -> Any:
    import keras

    from training.agegender.models import build_heads, build_scratch, compile_multitask

    keras.utils.set_random_seed(cfg.seed)
    if cfg.model == "scratch":
        model = build_scratch(widths=tuple(cfg.widths))
    else:
        model = build_heads(
            dim=ds.x.shape[1],
            hidden=int(cfg.extra.get("hidden", HEADS_HIDDEN)),
            dropout=float(cfg.extra.get("dropout", HEADS_DROPOUT)),
        )
    total = steps * cfg.epochs
    warmup = min(steps * 2, total // 5)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.learning_rate * 0.05,
        decay_steps=max(1, total - warmup),
        alpha=0.01,
        warmup_target=cfg.learning_rate,
        warmup_steps=warmup,
    )
    compile_multitask(model, schedule)
    return model


def train(
    cfg: TrainConfig,
    resume: bool = False,
    dataset: Dataset | None = None,
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Train (or continue) one model; export it with its card. Returns the card."""
    import keras

    from training.agegender.models import age_loss, age_mae

    run = cfg.run_path()
    ckpt = run / "checkpoint.keras"
    if ckpt.exists() and not resume:
        raise FileExistsError(
            f"a run exists in {run}: pass --resume to continue it, or --restart to start over"
        )
    if resume and not ckpt.exists():
        log.warning("nothing to resume in %s: starting a new run", run)
        resume = False
    run.mkdir(parents=True, exist_ok=True)
    state = _State(run)
    if resume:
        saved = state.data.get("config", {})
        for key in ("model", "features", "widths", "batch_size", "learning_rate", "limit"):
            if key in saved:
                setattr(cfg, key, tuple(saved[key]) if key == "widths" else saved[key])
        for key in ("balance", "degrade"):  # the run's own augmentation and weights
            if key in saved.get("extra", {}):
                cfg.extra[key] = saved["extra"][key]
        if not cfg.extra.get("epochs_given", True):  # keep the run's own length
            cfg.epochs = int(saved.get("epochs", cfg.epochs))
    if cfg.bf16 and cfg.model == "scratch":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    ds = dataset if dataset is not None else utkface_dataset(cfg)
    train_ds, dev_ds, steps = _tf_datasets(cfg, ds)
    if resume:
        model = keras.models.load_model(
            ckpt, custom_objects={"age_loss": age_loss, "age_mae": age_mae}
        )
    else:
        model = _build(cfg, ds, steps)
        state.data = {"epoch": 0, "history": [], "seconds": 0.0}
    state.data["config"] = {**asdict(cfg), "widths": list(cfg.widths)}
    state.save()
    start_epoch = int(state.data["epoch"])
    limit_cb = _TimeLimit.make(cfg.max_minutes)

    class Checkpoint(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.t = time.time()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            tmp = run / "checkpoint.tmp.keras"
            self.model.save(tmp)
            tmp.replace(ckpt)
            now = time.time()
            state.data["epoch"] = epoch + 1
            state.data["seconds"] = float(state.data.get("seconds", 0.0)) + now - self.t
            self.t = now
            state.data["history"].append(
                {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            )
            state.save()

    if start_epoch < cfg.epochs:
        log.info("training %s epochs %d..%d in %s", cfg.name, start_epoch + 1, cfg.epochs, run)
        model.fit(
            train_ds,
            validation_data=dev_ds,
            epochs=cfg.epochs,
            initial_epoch=start_epoch,
            steps_per_epoch=steps,
            callbacks=[Checkpoint(), limit_cb],
            verbose=verbose,
        )
    card = export(cfg, model, ds, state.data)
    return card


# --------------------------------------------------------------------------- export


def evaluate_arrays(
    probs: np.ndarray, p_female: np.ndarray, ages: np.ndarray, genders: np.ndarray
) -> dict[str, Any]:
    """Metrics of age-bin probabilities and p(female) (see :func:`metrics`)."""
    pred_age, _ = age_from_probs(probs)
    return metrics(pred_age, p_female, ages, genders)


def metrics(
    pred_age: np.ndarray, p_female: np.ndarray, ages: np.ndarray, genders: np.ndarray
) -> dict[str, Any]:
    """Age MAE (overall and by true age group) and gender accuracy of predictions."""
    from pipeline.evaluation.attributes import age_gender_metrics

    return age_gender_metrics(pred_age, p_female, ages, genders)


def _predict_keras(model: Any, x: np.ndarray, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow as tf

    from training.agegender.augment import center_batch

    probs, pf = [], []
    for i in range(0, len(x), 256):
        xb = x[i : i + 256]
        if cfg.model == "scratch":
            xb = center_batch(tf.constant(xb), INPUT_SIZE)
        out = model(xb, training=False)
        probs.append(tf.nn.softmax(tf.cast(out["age"], tf.float32)).numpy())
        pf.append(tf.sigmoid(tf.cast(out["gender"], tf.float32)).numpy()[:, 0])
    return np.concatenate(probs), np.concatenate(pf)


def _float32_copy(model: Any, cfg: TrainConfig, ds: Dataset) -> Any:
    """The same network with float32 weights and a single (N, AGE_BINS + 1) output:
    age probabilities then p(female) - what the LiteRT runtime reads."""
    import keras

    from training.agegender.models import build_scratch

    keras.mixed_precision.set_global_policy("float32")
    clean = build_scratch(widths=tuple(cfg.widths))
    clean.set_weights([np.asarray(w, dtype=np.float32) for w in model.get_weights()])
    out = clean.outputs
    probs = keras.layers.Softmax(name="age_probs")(clean.get_layer("age").output)
    pf = keras.layers.Activation("sigmoid", name="p_female")(clean.get_layer("gender").output)
    del out
    merged = keras.layers.Concatenate(name="age_probs_p_female")([probs, pf])
    return keras.Model(clean.input, merged)


def _export_heads(model: Any, path: Path, ds: Dataset) -> None:
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    arrays: dict[str, np.ndarray] = {
        "mean": np.zeros(ds.x.shape[1], dtype=np.float32),
        "scale": np.ones(ds.x.shape[1], dtype=np.float32),
    }
    hidden = [d for d in dense if d.name not in ("age", "gender")]
    for i, d in enumerate(hidden):
        w, b = d.get_weights()
        arrays[f"W{i}"], arrays[f"b{i}"] = w, b
    arrays["Wa"], arrays["ba"] = model.get_layer("age").get_weights()
    arrays["Wg"], arrays["bg"] = model.get_layer("gender").get_weights()
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
    tmp.replace(path)


def export(cfg: TrainConfig, model: Any, ds: Dataset, state: dict[str, Any]) -> dict[str, Any]:
    """Write the inference artefact and its model card; returns the card."""
    out = cfg.export_path()
    out.mkdir(parents=True, exist_ok=True)
    xv, av, gv = ds.part("val")
    xd, ad, gd = ds.part("dev")
    metrics = {}
    if len(xv):
        metrics["val"] = evaluate_arrays(*_predict_keras(model, xv, cfg), av, gv)
    if len(xd):
        metrics["dev"] = evaluate_arrays(*_predict_keras(model, xd, cfg), ad, gd)
    if cfg.model == "scratch":
        path = out / f"{cfg.name}.tflite"
        clean = _float32_copy(model, cfg, ds)
        tmpdir = cfg.run_path() / "export"
        tmpdir.mkdir(parents=True, exist_ok=True)
        clean.export(str(tmpdir / "model.tflite"), format="litert", verbose=False)
        (tmpdir / "model.tflite").replace(path)
        inputs = {"kind": "image", "size": INPUT_SIZE, "color": "RGB", "range": "0..255"}
        arch = f"CNN widths {list(cfg.widths)}, {model.count_params()} parameters"
    else:
        path = out / f"{cfg.name}.npz"
        _export_heads(model, path, ds)
        inputs = {"kind": "features", "features": cfg.features, "dim": int(ds.x.shape[1])}
        arch = f"MLP heads on {cfg.features} features, {model.count_params()} parameters"
    card = {
        "name": cfg.name,
        "backend": "scratch" if cfg.model == "scratch" else "transfer",
        "file": path.name,
        "bytes": path.stat().st_size,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": inputs,
        "outputs": f"age: expected value over {AGE_BINS} one-year bins (0-100); gender: p(female)",
        "architecture": arch,
        "data": ds.source,
        "train_images": _train_images(cfg, ds),
        "training": {
            "epochs_done": int(state.get("epoch", 0)),
            "epochs_planned": cfg.epochs,
            "seconds": round(float(state.get("seconds", 0.0)), 1),
            "batch_size": cfg.batch_size,
            "learning_rate": cfg.learning_rate,
            "degrade": float(cfg.extra.get("degrade", 0.0)),
            "balance_power": float(cfg.extra.get("balance", 0.0)),
            "machine": machine(),
            "final_epoch_logs": state.get("history", [{}])[-1] if state.get("history") else {},
        },
        "metrics": metrics,
        "licence": "weights trained by facepipe (MIT code); training data UTKFace is for "
        "non-commercial research only - check before commercial use",
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=1))
    path.with_suffix(".md").write_text(card_markdown(card))
    return card


def _train_images(cfg: TrainConfig, ds: Dataset) -> int:
    """Training images (a mirrored copy of an image is not another image)."""
    n = int((ds.side == "train").sum())
    if cfg.limit is not None:
        n = min(cfg.limit, n)
    return n // 2 if ds.source.get("inputs", "").endswith("mirrored chip") else n


def card_markdown(card: dict[str, Any]) -> str:
    lines = [
        f"# Model card: `{card['name']}` ({card['file']}, {card['bytes'] / 1e6:.2f} MB)",
        "",
        f"- backend: `{card['backend']}`; input: {card['input']}",
        f"- architecture: {card['architecture']}",
        f"- outputs: {card['outputs']}",
        f"- data: {card['data'].get('dataset')}, {card['data'].get('images')} images; "
        f"{card['train_images']} trained on"
        + (f" ({card['data']['inputs']})" if card["data"].get("inputs") else ""),
        f"- split: {card['data'].get('split', 'n/a')}",
        f"- training: {card['training']['epochs_done']}/{card['training']['epochs_planned']} "
        f"epochs, {card['training']['seconds']:.0f} s on {card['training']['machine']}",
        f"- augmentation: video-like degradations with probability "
        f"{card['training'].get('degrade', 0.0):g}; group-balanced weights power "
        f"{card['training'].get('balance_power', 0.0):g} (0: none)",
        f"- licence: {card['licence']}",
        f"- created: {card['created']}",
        "",
        "| split | n | age MAE (years) | gender accuracy |",
        "|---|---|---|---|",
    ]
    for side, m in card["metrics"].items():
        lines.append(f"| {side} | {m['n']} | {m['age_mae']:.2f} | {m['gender_accuracy']:.1%} |")
    val = card["metrics"].get("val")
    if val:
        lines += [
            "",
            "Validation by age group:",
            "",
            "| age | n | MAE | gender |",
            "|---|---|---|---|",
        ]
        for g, m in val["by_age_group"].items():
            lines.append(f"| {g} | {m['n']} | {m['age_mae']:.2f} | {m['gender_accuracy']:.1%} |")
    return "\n".join(lines) + "\n"
