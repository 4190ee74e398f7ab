"""Training loop of the two-stage CNN face detector: resumable, checkpointed every epoch.

Stage 1 (proposal, 32x32): every epoch draws fresh augmented crops: faces, part faces,
missed-face windows of the face photos, random non-face scene windows, and hard negatives
mined from the net's own false detections on the scenes every ``mine_every`` epochs.

Stage 2 (refine, 48x48): the same crop sources at 48x48 plus the trained proposal net's
candidates on scenes and face photos (labelled by IoU with the face boxes), re-mined
every ``mine_every`` epochs, so the refine net learns on the distribution it will see.

State lives in a work directory (``runs/cnn`` by default): ``state.json`` (epochs done,
history), TensorFlow checkpoints of each net with its optimizer, the hard-negative pools
as ``.npy``, and the cached HOG calibration boxes. ``resume=True`` continues from there.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cnn_detector.boxes import iou_matrix, square_around, window_boxes
from pipeline.cnn_detector.crops import augment, crop_windows
from pipeline.cnn_detector.model import (
    PROPOSAL,
    REFINE,
    SPECS,
    STAGES,
    DetectorConfig,
    build,
    weights_name,
)
from training.cnn_detector.data import (
    NEG,
    NEG_IOU,
    PART,
    PART_IOU,
    POS,
    POS_IOU,
    CropSet,
    FaceImage,
    Scene,
    face_crops,
    load_face_images,
    scene_crops,
    skimage_scenes,
    split_holdout,
    synthetic_scene,
    youtube_scenes,
)

Log = Callable[[str], None]


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in the work dir's ``state.json``)."""

    work: str = "runs/cnn"
    out: str = "runs/cnn/model"
    stages: tuple[str, ...] = STAGES
    epochs: dict[str, int] = field(default_factory=lambda: {PROPOSAL: 8, REFINE: 8})
    per_epoch: int = 40_000  # crops per epoch
    batch: int = 256
    lr: float = 2e-3
    box_weight: dict[str, float] = field(default_factory=lambda: {PROPOSAL: 1.0, REFINE: 2.0})
    mine_every: int = 3
    hard_pool: int = 40_000
    utk_every: int = 2  # use every n-th UTKFace image (sorted by name)
    seed: int = 0


def loss_terms(out: Any, y: Any, t: Any, box_weight: float) -> tuple[Any, Any, Any]:
    """Masked losses: face/non-face cross-entropy (not on parts) and box L2 (not on negatives)."""
    import tensorflow as tf

    out = tf.reshape(out, (-1, 5))
    logits, pred = out[:, 0], out[:, 1:]
    cls_mask = tf.cast(tf.not_equal(y, PART), tf.float32)
    box_mask = tf.cast(tf.not_equal(y, NEG), tf.float32)
    labels = tf.cast(tf.equal(y, POS), tf.float32)
    ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    cls = tf.reduce_sum(ce * cls_mask) / tf.maximum(tf.reduce_sum(cls_mask), 1.0)
    se = tf.reduce_sum(tf.square(pred - t), axis=1)
    box = tf.reduce_sum(se * box_mask) / tf.maximum(tf.reduce_sum(box_mask), 1.0)
    return cls + box_weight * box, cls, box


class StageTrainer:
    """One network, its optimizer, checkpoint manager and compiled train/eval steps."""

    def __init__(self, stage: str, cfg: TrainConfig, work: Path) -> None:
        import keras
        import tensorflow as tf

        self.stage = stage
        self.model = build(stage)
        self.optimizer = keras.optimizers.Adam(cfg.lr)
        self.box_weight = float(cfg.box_weight[stage])
        self.optimizer.build(self.model.trainable_variables)
        self.ckpt = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(work / f"ckpt_{stage}"), 2)
        bw = self.box_weight

        @tf.function(reduce_retracing=True)
        def train_step(x: Any, y: Any, t: Any) -> Any:
            with tf.GradientTape() as tape:
                out = self.model(x, training=True)
                loss, cls, box = loss_terms(out, y, t, bw)
            grads = tape.gradient(loss, self.model.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
            return loss, cls, box

        @tf.function(reduce_retracing=True)
        def predict(x: Any) -> Any:
            return tf.reshape(self.model(x, training=False), (-1, 5))

        self.train_step = train_step
        self.predict_fn = predict

    def set_lr(self, lr: float) -> None:
        self.optimizer.learning_rate.assign(lr)

    def predict(self, x: np.ndarray, batch: int = 1024) -> np.ndarray:
        outs = [
            self.predict_fn(x[i : i + batch].astype(np.float32)).numpy()
            for i in range(0, len(x), batch)
        ]
        return np.concatenate(outs) if outs else np.zeros((0, 5), np.float32)


def evaluate(trainer: StageTrainer, val: CropSet) -> dict[str, float]:
    """Held-out crop metrics: losses, accuracy, recall and false-positive rate at 0.5."""
    import tensorflow as tf

    out = trainer.predict(val.x)
    loss, cls, box = loss_terms(
        tf.constant(out), tf.constant(val.y), tf.constant(val.t), trainer.box_weight
    )
    prob = 1.0 / (1.0 + np.exp(-out[:, 0]))
    pos, neg = val.y == POS, val.y == NEG
    return {
        "val_loss": float(loss),
        "val_cls": float(cls),
        "val_box": float(box),
        "val_recall": float((prob[pos] > 0.5).mean()) if pos.any() else math.nan,
        "val_fpr": float((prob[neg] > 0.5).mean()) if neg.any() else math.nan,
        "val_acc": float(np.concatenate([prob[pos] > 0.5, prob[neg] <= 0.5]).mean()),
    }


def run_epoch(
    trainer: StageTrainer, data: CropSet, batch: int, log: Log, label: str
) -> dict[str, float]:
    """One pass over ``data`` with a progress line every ~10 %; returns mean losses."""
    import tensorflow as tf

    steps = max(1, len(data) // batch)
    sums = np.zeros(3)
    t0 = time.time()
    report = max(1, steps // 10)
    for k in range(steps):
        sl = slice(k * batch, (k + 1) * batch)
        loss, cls, box = trainer.train_step(
            tf.constant(data.x[sl], tf.float32), tf.constant(data.y[sl]), tf.constant(data.t[sl])
        )
        sums += [float(loss), float(cls), float(box)]
        if (k + 1) % report == 0 or k + 1 == steps:
            el = time.time() - t0
            eta = el / (k + 1) * (steps - k - 1)
            m = sums / (k + 1)
            bar = "#" * int(20 * (k + 1) / steps)
            log(
                f"  {label} [{bar:<20}] {k + 1}/{steps} loss {m[0]:.4f} "
                f"(cls {m[1]:.4f} box {m[2]:.4f}) {el:.0f}s, eta {eta:.0f}s"
            )
    m = sums / steps
    return {
        "loss": float(m[0]),
        "cls": float(m[1]),
        "box": float(m[2]),
        "seconds": time.time() - t0,
    }


def mine(
    stage: str,
    proposal_model: Any,
    scenes: list[Scene],
    faces: list[FaceImage],
    size: int,
    log: Log,
    proposal_threshold: float,
) -> CropSet:
    """Run the proposal net over scenes and face photos; label its windows by IoU.

    Windows on scenes are negatives. On face photos windows with IoU < 0.3 are negatives;
    for the refine stage those with IoU >= 0.6 / 0.4 become positives / parts (with box
    targets), so the refine net learns on real proposals.
    """
    from pipeline.cnn_detector.boxes import encode
    from pipeline.cnn_detector.inference import Cascade, CascadeSettings

    cascade = Cascade(proposal_model, None)
    settings = CascadeSettings(
        min_face=20, proposal_threshold=proposal_threshold, proposal_nms=0.7, max_candidates=200
    )
    sets: list[CropSet] = []
    t0 = time.time()
    counts = {POS: 0, PART: 0, NEG: 0}
    items: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
        (sc.image, sc.forbidden, np.zeros((0, 4))) for sc in scenes
    ] + [(fi.image, fi.boxes, fi.boxes) for fi in faces]
    for image, forbidden, gt in items:
        boxes, _ = cascade.proposals(image, settings)
        if not len(boxes):
            continue
        wins = square_around(boxes)
        wb = window_boxes(wins)
        y = np.full(len(wins), NEG, np.int8)
        t = np.zeros((len(wins), 4), np.float32)
        keep = np.ones(len(wins), bool)
        if len(forbidden):
            fiou = iou_matrix(wb, forbidden)
            keep = fiou.max(axis=1) < NEG_IOU
        if len(gt) and stage == REFINE:
            giou = iou_matrix(wb, gt)
            best = giou.argmax(axis=1)
            bi = giou.max(axis=1)
            y[bi >= POS_IOU] = POS
            y[(bi >= PART_IOU) & (bi < POS_IOU)] = PART
            faceish = bi >= PART_IOU
            t[faceish] = encode(wins[faceish], gt[best[faceish]])
            keep = keep | faceish
        wins, y, t = wins[keep], y[keep], t[keep]
        if not len(wins):
            continue
        sets.append(CropSet(crop_windows(image, wins, size), y, t))
        for k in counts:
            counts[k] += int((y == k).sum())
    log(
        f"  mined with the proposal net on {len(items)} images in {time.time() - t0:.0f}s: "
        f"{counts[NEG]} negatives, {counts[POS]} positives, {counts[PART]} parts"
    )
    return CropSet.concat(sets) if sets else CropSet.empty(size)


def _load_state(work: Path) -> dict[str, Any]:
    path = work / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(work: Path, state: dict[str, Any]) -> None:
    tmp = work / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(work / "state.json")


def _save_pool(path: Path, pool: CropSet) -> None:
    np.savez(path, x=pool.x, y=pool.y, t=pool.t)


def _load_pool(path: Path, size: int) -> CropSet:
    if not path.exists():
        return CropSet.empty(size)
    with np.load(path, allow_pickle=False) as z:
        return CropSet(z["x"], z["y"], z["t"])


def _cap_pool(pool: CropSet, cap: int, rng: np.random.Generator) -> CropSet:
    if len(pool) <= cap:
        return pool
    keep = np.sort(rng.choice(len(pool), cap, replace=False))
    return CropSet(pool.x[keep], pool.y[keep], pool.t[keep])


def build_epoch(
    stage: str,
    faces: list[FaceImage],
    scenes: list[Scene],
    pool: CropSet,
    n: int,
    rng: np.random.Generator,
) -> CropSet:
    """One epoch's crops: 25 % faces, 12.5 % parts, 12.5 % missed-face windows,
    25 % random scene windows (fresh synthetic scenes included) and 25 % from the
    mined pool (scene windows instead while the pool is small)."""
    size = SPECS[stage].window
    n_pos, n_part, n_near = n // 4, n // 8, n // 8
    n_pool = min(len(pool), n // 4)
    n_scene = n - n_pos - n_part - n_near - n_pool
    fresh = scenes + [synthetic_scene(rng) for _ in range(20)]
    parts = [
        face_crops(faces, n_pos, n_part, n_near, size, rng),
        scene_crops(fresh, n_scene, size, rng),
    ]
    if n_pool:
        idx = rng.choice(len(pool), n_pool, replace=False)
        parts.append(CropSet(pool.x[idx], pool.y[idx], pool.t[idx]))
    data = CropSet.concat(parts)
    x, t = augment(data.x, data.t, rng)
    return CropSet(x, data.y, t).shuffled(rng)


def train(cfg: TrainConfig, resume: bool = False, log: Log = print) -> dict[str, Any]:
    """Train (or continue training) the requested stages; export weights to ``cfg.out``."""
    from pipeline.datasets import require

    work, out = Path(cfg.work), Path(cfg.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    state = _load_state(work)
    if state and not resume:
        raise FileExistsError(
            f"{work} already holds a training run; pass --resume to continue it or "
            f"--restart to discard it"
        )
    if not state:
        state = {"config": asdict(cfg), "stages": {}}
    else:
        saved = {k: v for k, v in state["config"].items() if k not in ("epochs", "stages", "out")}
        now = {k: v for k, v in asdict(cfg).items() if k not in ("epochs", "stages", "out")}
        if json.loads(json.dumps(saved)) != json.loads(json.dumps(now)):
            log(f"note: resuming with changed settings (saved: {saved})")
        state["config"] = asdict(cfg)
    rng = np.random.default_rng(cfg.seed + sum(s.get("done", 0) for s in state["stages"].values()))

    root = require("utkface").parent
    t0 = time.time()
    log(f"loading face images from {root} (HOG calibration cached in {work})")
    faces = load_face_images(
        root,
        work / "hog_boxes.json",
        cfg.utk_every,
        lambda k, n: log(f"  HOG calibration {k}/{n}"),
    )
    train_faces, held_faces = split_holdout(faces)
    scenes = skimage_scenes() + youtube_scenes(root)
    val_rng = np.random.default_rng(12345)
    val_scenes = [synthetic_scene(val_rng) for _ in range(8)]
    log(
        f"{len(train_faces)} training / {len(held_faces)} held-out face images, "
        f"{len(scenes)} non-face scenes (+ synthetic) in {time.time() - t0:.0f}s"
    )

    nets: dict[str, StageTrainer] = {}
    for stage in cfg.stages:
        spec = SPECS[stage]
        size = spec.window
        epochs = cfg.epochs[stage]
        st = state["stages"].setdefault(stage, {"done": 0, "history": []})
        trainer = StageTrainer(stage, cfg, work)
        nets[stage] = trainer
        if trainer.manager.latest_checkpoint and st["done"] > 0:
            trainer.ckpt.restore(trainer.manager.latest_checkpoint).expect_partial()
            log(
                f"[{stage}] resumed from {trainer.manager.latest_checkpoint} "
                f"({st['done']} epochs done)"
            )
        if stage == REFINE and PROPOSAL not in nets:
            prop = StageTrainer(PROPOSAL, cfg, work)
            if not prop.manager.latest_checkpoint:
                raise FileNotFoundError("the refine stage needs a trained proposal net first")
            prop.ckpt.restore(prop.manager.latest_checkpoint).expect_partial()
            nets[PROPOSAL] = prop
        pool_path = work / f"pool_{stage}.npz"
        pool = _load_pool(pool_path, size)
        vr = np.random.default_rng(777)
        val = face_crops(held_faces, 1500, 500, 1000, size, vr)
        val = CropSet.concat([val, scene_crops(val_scenes, 2000, size, vr)])
        vx, vt = augment(val.x, val.t, vr, strength=0.5)
        val = CropSet(vx, val.y, vt)
        mine_faces_n = 300
        first = st["done"]
        for epoch in range(first, epochs):
            te = time.time()
            # the refine stage mines proposals at its (re)start: its pool must not be empty
            need_mine = (stage == REFINE and (epoch == first or epoch % cfg.mine_every == 0)) or (
                stage == PROPOSAL and epoch > 0 and epoch % cfg.mine_every == 0
            )
            if need_mine:
                src_model = nets[PROPOSAL].model if stage == REFINE else trainer.model
                idx = rng.choice(
                    len(train_faces), min(mine_faces_n, len(train_faces)), replace=False
                )
                mined = mine(
                    stage,
                    src_model,
                    scenes + [synthetic_scene(rng) for _ in range(30)],
                    [train_faces[i] for i in idx],
                    size,
                    log,
                    proposal_threshold=0.5 if stage == PROPOSAL else 0.3,
                )
                pool = _cap_pool(CropSet.concat([pool, mined]), cfg.hard_pool, rng)
                _save_pool(pool_path, pool)
            frac = epoch / max(1, epochs - 1)
            lr = cfg.lr * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * frac)))
            trainer.set_lr(lr)
            data = build_epoch(stage, train_faces, scenes, pool, cfg.per_epoch, rng)
            prep = time.time() - te
            label = f"[{stage} {epoch + 1}/{epochs}]"
            stats = run_epoch(trainer, data, cfg.batch, log, label)
            stats.update(evaluate(trainer, val))
            stats.update({"epoch": epoch + 1, "lr": lr, "prep_seconds": prep, "pool": len(pool)})
            trainer.manager.save(checkpoint_number=epoch + 1)
            st["done"] = epoch + 1
            st["history"].append(stats)
            st["seconds"] = st.get("seconds", 0.0) + time.time() - te
            _save_state(work, state)
            trainer.model.save_weights(str(out / weights_name(stage)))
            log(
                f"{label} done in {time.time() - te:.0f}s (data {prep:.0f}s): "
                f"loss {stats['loss']:.4f} val loss {stats['val_loss']:.4f} "
                f"acc {stats['val_acc']:.4f} recall {stats['val_recall']:.4f} "
                f"fpr {stats['val_fpr']:.4f} box {stats['val_box']:.4f}"
            )
        trainer.model.save_weights(str(out / weights_name(stage)))
    DetectorConfig(
        trained={
            "data": "UTKFace (every 2nd name) + LFW-a folds 1-3 faces, HOG-calibrated boxes; "
            "skimage sample photos, YouTube Faces clip background, synthetic textures",
            "stages": {
                s: {
                    "epochs": v["done"],
                    "seconds": round(v.get("seconds", 0.0)),
                    "last": v["history"][-1] if v["history"] else {},
                }
                for s, v in state["stages"].items()
            },
            "config": asdict(cfg),
        }
    ).save(out / "config.json")
    log(f"weights and config written to {out}")
    return state
