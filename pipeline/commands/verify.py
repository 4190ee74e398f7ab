"""`facepipe verify`: decide same / not same for each pair of face images in a pairs file.

Uses the project's decision rule (same iff encoding distance <= threshold, see
:mod:`pipeline.recognition.verify`), with the calibrated default threshold unless
``--threshold`` is given.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.commands import Context, pass_ctx
from pipeline.recognition.thresholds import CALIBRATED
from pipeline.recognition.verify import DEFAULT_FLIP, DEFAULT_GRAY, GRAY_MODES

if TYPE_CHECKING:
    from pipeline.recognition.verify import Pair, PairEncoder

log = logging.getLogger(__name__)


@click.command()
@click.option(
    "--pairs",
    "pairs_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="pairs file: FOLD<TAB>IMAGE_A<TAB>IMAGE_B<TAB>SAME(1/0) (also FOLD A B, or A B)",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="folder the image paths are relative to (default: the pairs file's folder)",
)
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, min_open=True, max=2),
    default=None,
    help="same iff distance <= this (default: the accuracy-optimal value calibrated for "
    "--num-jitters and --flip/--no-flip, pipeline/recognition/thresholds.py: "
    + ", ".join(
        f"{j} jitter(s) {'flip' if f else 'plain'} {p.accuracy:.2f}"
        for (j, f), p in sorted(CALIBRATED.items())
    )
    + ")",
)
@click.option(
    "--flip/--no-flip",
    default=DEFAULT_FLIP,
    show_default=True,
    help="average each face's encoding with its mirror image's (2x the cost; held-out LFW "
    "accuracy 99.00 %% vs 98.39 %% with gray images tinted, 98.67 %% vs 98.39 %% without)",
)
@click.option(
    "--gray",
    type=click.Choice(GRAY_MODES),
    default=DEFAULT_GRAY,
    show_default=True,
    help="grayscale images: 'tint' colours them with the mean face colour before encoding "
    "(gray LFW with flip: 99.00 %% vs 98.67 %% held-out accuracy), 'replicate' encodes the "
    "gray value as it is (the behaviour before); colour images are never changed",
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per pair on stdout")
@click.option(
    "--num-jitters",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="dlib encoder re-samplings per face (slower, slightly more stable)",
)
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="directory to cache encodings in (.npy + .json, keyed by absolute image path and "
    "face box, one sub-folder per --num-jitters), reused across runs",
)
@pass_ctx
def verify(
    ctx: Context,
    pairs_path: Path,
    root: Path | None,
    threshold: float | None,
    as_json: bool,
    num_jitters: int,
    cache_dir: Path | None,
    flip: bool,
    gray: str,
) -> None:
    """Verify pairs of face images: same person or not, with the encoding distance.

    Each image is read (grayscale becomes RGB), its face found with dlib HOG (the face
    nearest the centre; a fixed central box when none is found) and encoded. A pair
    whose image is missing or unreadable is reported as an error and the run goes on.
    """
    from pipeline.recognition import verify as V

    try:
        pairs = V.load_pairs(pairs_path)
    except (FileNotFoundError, V.PairsFormatError) as exc:
        raise click.ClickException(str(exc)) from None
    root = pairs_path.parent if root is None else root
    if not root.is_dir():
        raise click.ClickException(f"--root is not a directory: {root}")
    t = V.calibrated_threshold(num_jitters, flip) if threshold is None else threshold

    # one sub-folder per encoder setting, so a cache never mixes jitter counts
    cache = V.EncodingCache(cache_dir / f"5pt-jitter{num_jitters}") if cache_dir else None
    encoder = V.PairEncoder(
        num_jitters=num_jitters, cache=cache, flip=flip,
        max_pixels=ctx.config.limits.max_image_pixels, gray=gray,
    )  # fmt: skip
    failed: dict[str, str] = {}

    def encode(rel: str) -> V.Encoded:
        if rel in failed:
            raise V.ImageError(failed[rel])
        path = root / rel
        try:
            # cache keys are absolute, so one cache serves several roots
            return encoder.encode_file(path, key=str(path.resolve()))
        except V.ImageError as exc:
            failed[rel] = str(exc)
            raise
        except RuntimeError as exc:  # dlib raises RuntimeError on images it cannot use
            failed[rel] = f"cannot encode {path}: {exc}"
            raise V.ImageError(failed[rel]) from None

    results: list[dict[str, object]] = []
    for i, pair in enumerate(pairs, 1):
        rec: dict[str, object] = {"a": pair.a, "b": pair.b}
        try:
            d = V.pair_distance(encode(pair.a).encoding, encode(pair.b).encoding)
            rec["same"] = V.is_same(d, t)
            rec["distance"] = round(d, 6)
        except V.ImageError as exc:
            rec["error"] = str(exc)
        if as_json:
            click.echo(json.dumps(rec))
        results.append(rec)
        if cache is not None and i % 50 == 0:
            cache.flush()
        if i % 100 == 0:
            log.info("verified %d/%d pairs", i, len(pairs))
    if cache is not None:
        cache.flush()
    if not as_json:
        _summary(pairs, results, t, encoder)


def _summary(
    pairs: list[Pair], results: list[dict[str, object]], threshold: float, encoder: PairEncoder
) -> None:
    """The human-readable report: counts, errors, wrong decisions and accuracy."""
    errors = [r for r in results if "error" in r]
    done = [(p, r) for p, r in zip(pairs, results, strict=True) if "error" not in r]
    click.echo(f"pairs: {len(pairs)}  verified: {len(done)}  errors: {len(errors)}")
    gray = {"tint": "tinted", "replicate": "replicated"}[encoder.gray]
    click.echo(
        f"rule: same iff distance <= {threshold:g} (encodings: "
        f"{'flip-averaged' if encoder.flip else 'plain'}, gray images {gray})"
    )
    click.echo(
        f"images: {encoder.images} encoded, {len(encoder.fallbacks)} with no HOG face "
        f"(fixed central box used)"
    )
    n_same = sum(1 for _, r in done if r["same"])
    click.echo(f"decided same: {n_same}  different: {len(done) - n_same}")
    labelled = [(p, r) for p, r in done if p.same is not None]
    if labelled:
        wrong = [(p, r) for p, r in labelled if r["same"] != p.same]
        genuine = [r for p, r in labelled if p.same]
        impostor = [r for p, r in labelled if not p.same]
        acc = 1 - len(wrong) / len(labelled)
        line = f"accuracy: {100 * acc:.2f} % on {len(labelled)} labelled pairs"
        if genuine:
            tar = sum(1 for r in genuine if r["same"]) / len(genuine)
            line += f"  TAR {100 * tar:.2f} % ({len(genuine)} same)"
        if impostor:
            far = sum(1 for r in impostor if r["same"]) / len(impostor)
            line += f"  FAR {100 * far:.2f} % ({len(impostor)} different)"
        click.echo(line)
        for p, r in wrong:
            kind = "false accept" if r["same"] else "false reject"
            click.echo(f"  {kind}: {p.a}  {p.b}  distance {r['distance']:.4f}")
    for r in errors:
        click.echo(f"  error: {r['a']}  {r['b']}: {r['error']}")


COMMANDS = [verify]
