"""`facepipe detect`: run one detector backend on images or folders of images.

Contract (other tools parse it): with ``--json``, one JSON object per image on stdout,
``{"image": PATH, "faces": [{"box": [x, y, w, h], "score": S}, ...], "ms": T}`` with boxes
in pixels of the original image and ``ms`` the detector's time on that image (decoding
excluded; the detector is warmed up first so the first image is not charged for loading).
Faces also carry ``"landmarks": [[x, y], ...]`` when the backend gives them. An image that
cannot be read gives ``{"image": PATH, "error": "..."}`` and the run goes on. The exit
status is non-zero only when no image could be processed, or the detector is unknown or
misconfigured.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from pipeline.commands import Context, pass_ctx
from pipeline.images import read_image

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm"}
)


# the reader of every command (the name stays for scripts that import it from here)
load_rgb = read_image


def iter_images(paths: Iterable[str]) -> Iterator[str]:
    """Each given file as is, and every image file under each given folder (recursively,
    sorted, by extension)."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                    yield str(f)
        else:
            yield raw


def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict; values parsed as YAML scalars (``3``, ``0.5``,
    ``true``, ``short``)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        out[key.strip()] = yaml.safe_load(value) if value != "" else None
    return out


def options_flag(help_text: str) -> Any:
    """The ``--option/-o KEY=VALUE`` flag (repeatable) of the commands that run a backend."""
    return click.option(
        "--option", "-o", "option_pairs", multiple=True, metavar="KEY=VALUE", help=help_text
    )


def chosen_backend(
    section: Any, name: str | None, option_pairs: Iterable[str]
) -> tuple[str, dict[str, Any]]:
    """The backend a command runs and its options: ``name`` (default: the config section's
    backend), with the section's options when it is the section's backend, then the
    ``KEY=VALUE`` pairs of the command line on top."""
    name = name or section.backend
    options = section.options.model_dump(exclude_unset=True) if name == section.backend else {}
    options.update(parse_options(option_pairs))
    return name, options


def face_json(face: Any) -> dict[str, Any]:
    """The JSON form of one detected face (box, score, and landmarks when present)."""
    out: dict[str, Any] = {"box": [int(v) for v in face.box], "score": round(face.score, 6)}
    if face.landmarks:
        out["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks]
    return out


def _table_lines(result: dict[str, Any]) -> list[str]:
    if "error" in result:
        return [f"{result['image']}: ERROR {result['error']}"]
    faces = result["faces"]
    lines = [f"{result['image']}: {len(faces)} face(s), {result['ms']:.1f} ms"]
    for i, f in enumerate(faces, 1):
        x, y, w, h = f["box"]
        lines.append(f"  {i:3d}  x={x:<5d} y={y:<5d} w={w:<5d} h={h:<5d} score={f['score']:.3f}")
    return lines


@click.command()
@click.option(
    "--detector",
    "-d",
    "detector_name",
    default=None,
    help="detector backend (default: the config's detector.backend); "
    "an unknown name lists the available ones",
)
@click.option(
    "--min-size",
    type=click.IntRange(min=0),
    default=None,
    help="skip faces shorter than this many pixels (default: the config's detector.min_size)",
)
@options_flag("a backend option, repeatable (e.g. -o model=short); unknown keys are errors")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per image on stdout")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@pass_ctx
def detect(
    ctx: Context,
    detector_name: str | None,
    min_size: int | None,
    option_pairs: tuple[str, ...],
    as_json: bool,
    paths: tuple[str, ...],
) -> None:
    """Detect faces in images (files, or folders searched recursively)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pipeline.detectors import registry, resolve
    from pipeline.registry import BackendError

    config = ctx.config.detector
    if detector_name is not None:
        detector_name = resolve(detector_name)  # "auto": the backend it stands for here
    detector_name, options = chosen_backend(config, detector_name, option_pairs)
    if min_size is None:
        min_size = config.min_size

    try:
        detector = registry.create(detector_name, options)
    except BackendError as exc:
        raise click.ClickException(str(exc)) from None
    detector.warmup()

    processed = 0
    for image_path in iter_images(paths):
        result: dict[str, Any]
        try:
            image = read_image(image_path, ctx.config.limits.max_image_pixels)
        except (ValueError, OSError) as exc:
            result = {"image": image_path, "error": str(exc)}
        else:
            t0 = time.perf_counter()
            faces = detector.detect(image, min_size=min_size)
            ms = (time.perf_counter() - t0) * 1000.0
            result = {
                "image": image_path,
                "faces": [face_json(f) for f in faces],
                "ms": round(ms, 2),
            }
            processed += 1
        if as_json:
            click.echo(json.dumps(result))
        else:
            for line in _table_lines(result):
                click.echo(line)
        sys.stdout.flush()
    if processed == 0:
        raise click.ClickException("no image could be processed")


COMMANDS = [detect]
