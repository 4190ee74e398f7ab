"""`facepipe train age-gender`: train the age/gender models facepipe ships.

Resumable (checkpoint after every epoch under ``runs/agegender/NAME/``), with a progress
bar, and writes the weights plus a model card (JSON + markdown: data, split, metrics)
to ``pipeline/models/age_gender/`` (or ``--export-dir``). See docs/attributes.md.
"""

from __future__ import annotations

import json

import click


@click.command("age-gender")
@click.option(
    "--model",
    type=click.Choice(["scratch", "transfer"]),
    default="scratch",
    show_default=True,
    help="scratch: CNN on UTKFace images; transfer: heads on frozen face features",
)
@click.option(
    "--epochs",
    type=click.IntRange(1),
    default=None,
    help="total epochs of the run (default 40 scratch / 60 transfer; --resume: the run's own)",
)
@click.option("--resume", is_flag=True, help="continue the run in the run folder")
@click.option("--restart", is_flag=True, help="delete the run folder's checkpoint and start over")
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--learning-rate", type=float, default=None, help="peak learning rate")
@click.option(
    "--features",
    type=click.Choice(["dlib", "vgg16"]),
    default="dlib",
    show_default=True,
    help="transfer: frozen network (dlib 128-d encodings, or VGG16 with --vgg16-weights)",
)
@click.option(
    "--vgg16-weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="Keras VGG16 no-top ImageNet weights file (cannot be downloaded here)",
)
@click.option("--max-minutes", type=float, default=None, help="stop after the epoch past this")
@click.option("--limit", type=click.IntRange(1), default=None, help="train on N images only")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None)
@click.option("--export-dir", type=click.Path(file_okay=False), default=None)
@click.option("--no-bf16", is_flag=True, help="train the CNN in float32 (slower on AMX CPUs)")
@click.option(
    "--available-features",
    is_flag=True,
    help="transfer: train on the feature chunks computed so far (a random subset) "
    "instead of computing the rest first",
)
@click.option(
    "--degrade",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="scratch: probability of video-like degradations (low resolution, blur, noise, "
    "JPEG) per training image; 0 = the shipped model's augmentation",
)
@click.option(
    "--balance",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="group-balanced example weights (race x gender x age band), "
    "(mean size / group size) ** POWER; 0 = none",
)
@click.option("--synthetic", is_flag=True, help="generated data (smoke test, no dataset)")
def COMMAND(  # noqa: N802 - the training-command convention of training.commands
    model: str,
    epochs: int | None,
    resume: bool,
    restart: bool,
    batch_size: int | None,
    learning_rate: float | None,
    features: str,
    vgg16_weights: str | None,
    max_minutes: float | None,
    limit: int | None,
    run_dir: str | None,
    export_dir: str | None,
    no_bf16: bool,
    available_features: bool,
    degrade: float,
    balance: float,
    synthetic: bool,
) -> None:
    """Train the age/gender model (resumable; writes weights + model card)."""
    import shutil
    import sys

    from training.agegender.training import TrainConfig, synthetic_dataset, train

    if resume and restart:
        raise click.UsageError("--resume and --restart exclude each other")
    defaults = {"scratch": (40, 64, 2e-3), "transfer": (60, 128, 1e-3)}[model]
    cfg = TrainConfig(
        model=model,
        epochs=epochs or defaults[0],
        batch_size=batch_size or defaults[1],
        learning_rate=learning_rate or defaults[2],
        features=features,
        vgg16_weights=vgg16_weights,
        max_minutes=max_minutes,
        limit=limit,
        run_dir=run_dir,
        export_dir=export_dir,
        bf16=not no_bf16,
        extra={
            "partial_features": available_features,
            "epochs_given": epochs is not None,
            "degrade": degrade,
            "balance": balance,
        },
    )
    if model == "transfer" and features == "vgg16":
        from pipeline.agegender.vgg16 import check_weights

        try:
            check_weights(vgg16_weights)
        except FileNotFoundError as exc:
            raise click.ClickException(str(exc)) from None
    if restart and cfg.run_path().exists():
        shutil.rmtree(cfg.run_path())
    dataset = None
    if synthetic:
        dim = 0 if model == "scratch" else 32
        dataset = synthetic_dataset(n=256, dim=dim)
    try:
        # a progress bar on a terminal, one line per epoch in a log file
        verbose = 1 if sys.stdout.isatty() else 2
        card = train(cfg, resume=resume, dataset=dataset, verbose=verbose)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps({"model": card["name"], "file": card["file"], **card["metrics"]}))
