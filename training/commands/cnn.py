"""`facepipe train cnn`: train the from-scratch two-stage CNN face detector."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click


@click.command("cnn")
@click.option("--epochs", type=int, default=None, help="epochs of each stage (default 8 / 8)")
@click.option("--proposal-epochs", type=int, default=None, help="epochs of the 32x32 proposal net")
@click.option("--refine-epochs", type=int, default=None, help="epochs of the 48x48 refine net")
@click.option(
    "--stage",
    "stages",
    type=click.Choice(["proposal", "refine"]),
    multiple=True,
    help="train only these stages (default: both, proposal first)",
)
@click.option("--per-epoch", type=int, default=40_000, show_default=True, help="crops per epoch")
@click.option("--batch", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True, help="peak learning rate")
@click.option(
    "--mine-every",
    type=int,
    default=3,
    show_default=True,
    help="epochs between hard-negative mining",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/cnn"),
    show_default=True,
    help="checkpoints, mined negatives, HOG box cache, state.json",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs/cnn/model"),
    show_default=True,
    help="where the weights + config.json go (pipeline/models/cnn_detector to ship them)",
)
@click.option("--resume", is_flag=True, help="continue the run in --work from its last checkpoint")
@click.option("--restart", is_flag=True, help="discard the run in --work and start over")
def COMMAND(  # noqa: N802 - the training registry looks for this name
    epochs: int | None,
    proposal_epochs: int | None,
    refine_epochs: int | None,
    stages: tuple[str, ...],
    per_epoch: int,
    batch: int,
    lr: float,
    mine_every: int,
    seed: int,
    work: Path,
    out: Path,
    resume: bool,
    restart: bool,
) -> None:
    """Train the CNN face detector (proposal 32x32 + refine 48x48) from scratch.

    Faces: UTKFace + LFW from the datasets folder; non-faces: scikit-image photos,
    a YouTube Faces clip's background, synthetic textures, mined hard negatives.
    Checkpoints every epoch; run it in the background with nice and a log, e.g.
    `nice -n 10 facepipe train cnn --out pipeline/models/cnn_detector > runs/cnn.log`.
    """
    from pipeline.cnn_detector.model import PROPOSAL, REFINE, STAGES
    from training.cnn_detector.train import TrainConfig, train

    if resume and restart:
        raise click.UsageError("--resume and --restart exclude each other")
    for name, value in (
        ("--per-epoch", per_epoch),
        ("--batch", batch),
        ("--mine-every", mine_every),
    ):
        if value <= 0:
            raise click.BadParameter(f"must be > 0, got {value}", param_hint=name)
    cfg = TrainConfig(
        work=str(work),
        out=str(out),
        stages=tuple(s for s in STAGES if not stages or s in stages),
        per_epoch=per_epoch,
        batch=batch,
        lr=lr,
        mine_every=mine_every,
        seed=seed,
    )
    if epochs is not None:
        cfg.epochs = {PROPOSAL: epochs, REFINE: epochs}
    if proposal_epochs is not None:
        cfg.epochs[PROPOSAL] = proposal_epochs
    if refine_epochs is not None:
        cfg.epochs[REFINE] = refine_epochs
    if any(e <= 0 for e in cfg.epochs.values()):
        raise click.BadParameter("epochs must be > 0")
    if restart and work.exists():
        for sub in work.iterdir():
            if sub.name.startswith(("ckpt_", "pool_", "state.json")):
                shutil.rmtree(sub) if sub.is_dir() else sub.unlink()

    def log(msg: str) -> None:
        click.echo(msg)
        sys.stdout.flush()

    try:
        train(cfg, resume=resume, log=log)
    except (FileExistsError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
