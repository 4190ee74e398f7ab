"""`facepipe train viola-jones`: train the from-scratch Viola-Jones cascade.

Builds 24 x 24 face crops from UTKFace and LFW and a pool of face-free images (see
:mod:`training.vj.data`), then trains the cascade stage by stage with hard-negative mining
(:mod:`training.vj.train`), writing the JSON cascade after every stage. ``--resume``
continues an interrupted run from that file. The shipped cascade
(``pipeline/models/viola_jones/cascade.json``) was made by this command; see
docs/viola-jones.md for the exact invocation, data and timings.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from pipeline.datasets import REPO_ROOT, datasets_root

# The window is dlib's HOG box; reported boxes are the window grown by 8 % with the centre
# moved up by a tenth of the side: the median relation between OpenCV's
# haarcascade_frontalface_default boxes and dlib's boxes on LFW (measured on 262 images),
# so our boxes follow the same convention as OpenCV's Viola-Jones detector.
REPORTED_BOX = {"scale": 1.08, "dx": 0.0, "dy": -0.1}
WINDOW = 24


@click.command("viola-jones")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=REPO_ROOT / "runs" / "viola-jones" / "cascade.json",
    show_default=True,
    help="cascade JSON to write after every stage",
)
@click.option("--stages", type=click.IntRange(1, 60), default=20, show_default=True)
@click.option("--resume", is_flag=True, help="continue from the stages already in --out")
@click.option(
    "--features",
    type=click.IntRange(100, 162336),
    default=12000,
    show_default=True,
    help="Haar features sampled (afresh) for each stage, of 162,336",
)
@click.option("--positives", type=click.IntRange(10), default=5000, show_default=True,
              help="face crops per stage (subset of those the cascade still accepts)")  # fmt: skip
@click.option("--negatives", type=click.IntRange(10), default=5000, show_default=True,
              help="hard negatives mined per stage")  # fmt: skip
@click.option("--hit-rate", type=click.FloatRange(0.5, 1.0), default=0.995, show_default=True,
              help="per-stage detection-rate target on the training faces")  # fmt: skip
@click.option("--false-alarm", type=click.FloatRange(0.01, 1.0), default=0.5,
              show_default=True, help="per-stage false-positive-rate target")  # fmt: skip
@click.option("--utkface", "n_utk", type=click.IntRange(0), default=3500, show_default=True,
              help="UTKFace images to use (faces and negative backgrounds)")  # fmt: skip
@click.option("--lfw", "n_lfw", type=click.IntRange(0), default=1500, show_default=True,
              help="LFW images used as faces (all 2,320 give backgrounds)")  # fmt: skip
@click.option("--min-std", type=click.FloatRange(0), default=10.0, show_default=True,
              help="windows with less grey-level contrast are rejected outright")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--time-limit", type=click.FloatRange(1), default=40.0, show_default=True,
              help="minutes; no new stage starts after this (then use --resume)")  # fmt: skip
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=REPO_ROOT / "runs" / "viola-jones" / "cache",
    show_default=True,
    help="scratch folder for dlib face boxes of the training images",
)
def COMMAND(
    out: Path,
    stages: int,
    resume: bool,
    features: int,
    positives: int,
    negatives: int,
    hit_rate: float,
    false_alarm: float,
    n_utk: int,
    n_lfw: int,
    min_std: float,
    seed: int,
    time_limit: float,
    cache: Path,
) -> None:
    """Train the from-scratch Viola-Jones cascade (UTKFace + LFW faces, mined negatives)."""
    from training.vj.data import build_training_set
    from training.vj.train import train_cascade

    root = datasets_root()
    if root is None:
        raise click.ClickException(
            "datasets not found: set FACEPIPE_DATASETS or place them at ../shared/datasets"
        )
    if out.exists() and not resume:
        raise click.ClickException(f"{out} exists: pass --resume to continue it, or remove it")
    t0 = time.monotonic()

    def log(msg: str) -> None:
        click.echo(f"[{time.monotonic() - t0:7.0f} s] {msg}")
        sys.stdout.flush()

    def progress(items):  # type: ignore[no-untyped-def]
        with click.progressbar(list(items), label="  face boxes", file=sys.stderr) as bar:
            yield from bar

    data = build_training_set(
        root, cache, WINDOW, n_utk=n_utk, n_lfw=n_lfw, seed=seed, log=log, progress=progress
    )
    meta = {
        "trained_on": "UTKFace + LFW faces (dlib HOG boxes); negatives from scikit-image "
        "sample photos, synthetic textures and UTKFace/LFW backgrounds; no WIDER FACE",
        "data": data.info,
        "command": "facepipe train viola-jones " + " ".join(sys.argv[3:]),
        "settings": {
            "features_per_stage": features,
            "positives": positives,
            "negatives": negatives,
            "hit_rate": hit_rate,
            "false_alarm": false_alarm,
            "min_std": min_std,
            "seed": seed,
        },
    }
    cascade = train_cascade(
        out,
        data.faces,
        data.pool,
        stages=stages,
        n_features=features,
        n_pos=positives,
        n_neg=negatives,
        hit_target=hit_rate,
        fa_target=false_alarm,
        seed=seed,
        resume=resume,
        time_limit=time_limit * 60.0 - (time.monotonic() - t0),
        holdout=data.holdout,
        box=REPORTED_BOX,
        min_std=min_std,
        meta=meta,
        log=log,
    )
    log(f"done: {len(cascade.stages)} stages, {cascade.n_features} stumps -> {out}")
