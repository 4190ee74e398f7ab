"""`facepipe analyze`: age and gender of the faces in still images.

Contract (other tools rely on it), with ``--json``: one JSON object per image and line::

    {"image": PATH, "faces": [{"box": [x, y, w, h], "age": A, "gender": "male"|"female",
     "gender_confidence": P}], "ms": T}

``box`` is in pixels of the image; ``ms`` is the wall time of detection plus age/gender
for that image (decoding and model loading excluded). An image that cannot be read gives
``{"image": PATH, "error": MESSAGE}`` and the run goes on (exit status 1 at the end).

``--face-crop`` treats each image as one already-cropped, roughly aligned face (as
UTKFace images are): detection is skipped and the box is the whole image. Inside it the
face is taken where a detector puts it on such crops (:mod:`pipeline.agegender.framing`),
so every backend gets the framing it was built for.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from pipeline.commands import Context, pass_ctx
from pipeline.commands.detect import options_flag

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def expand_paths(paths: tuple[str, ...]) -> list[Path]:
    """Files as given; directories expand to their images (sorted, not recursive)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out


def analyze_image(
    image: Any, estimator: Any, detector: Any | None, min_size: int = 0
) -> list[dict[str, Any]]:
    """Faces with age/gender in one RGB image (``detector`` None: the image is a face)."""
    from pipeline.agegender.framing import face_crop_box
    from pipeline.record import Face

    h, w = image.shape[:2]
    if detector is None:
        boxes = [Face(box=(0, 0, w, h))]
        inner = [face_crop_box(h, w)]
    else:
        boxes = detector.detect(image, min_size=min_size)
        inner = boxes
    results = estimator.estimate(image, inner)
    return [
        {
            "box": list(face.box),
            "age": round(float(r.age), 1),
            "gender": r.gender,
            "gender_confidence": round(float(r.gender_confidence), 4),
        }
        for face, r in zip(boxes, results, strict=True)
    ]


@click.command("analyze")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--attributes",
    "attributes",
    default=None,
    help="age/gender backend (default: attributes.backend of the config)",
)
@click.option(
    "--detector",
    "detector_name",
    default=None,
    help="face detector backend (default: detector.backend of the config)",
)
@options_flag("an attributes-backend option, repeatable (e.g. -o flip=false)")
@click.option("--face-crop", is_flag=True, help="each image is one cropped face: no detection")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per image and line")
@pass_ctx
def analyze(
    ctx: Context,
    paths: tuple[str, ...],
    attributes: str | None,
    detector_name: str | None,
    option_pairs: tuple[str, ...],
    face_crop: bool,
    as_json: bool,
) -> None:
    """Estimate age and gender of the faces in images (files or folders)."""
    from pipeline.attributes import registry as attr_registry
    from pipeline.commands.detect import chosen_backend
    from pipeline.detectors import registry as det_registry
    from pipeline.images import read_image
    from pipeline.registry import BackendError

    cfg = ctx.config
    try:
        estimator = attr_registry.create(*chosen_backend(cfg.attributes, attributes, option_pairs))
        detector = None
        if not face_crop:
            detector = det_registry.create(*chosen_backend(cfg.detector, detector_name, ()))
        # load lazily-initialised models now, so "ms" measures inference only
        estimator.warmup()
        if detector is not None:
            detector.warmup()
    except (BackendError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    min_size = 0 if face_crop else cfg.detector.min_size
    failed = 0
    for path in expand_paths(paths):
        try:
            image = read_image(path, cfg.limits.max_image_pixels)
            t0 = time.perf_counter()
            faces = analyze_image(image, estimator, detector, min_size)
            ms = (time.perf_counter() - t0) * 1000.0
        except (OSError, ValueError) as exc:
            failed += 1
            record: dict[str, Any] = {"image": str(path), "error": str(exc)}
            if as_json:
                click.echo(json.dumps(record))
            else:
                click.echo(f"{path}: error: {exc}", err=True)
            continue
        if as_json:
            click.echo(json.dumps({"image": str(path), "faces": faces, "ms": round(ms, 2)}))
        else:
            click.echo(f"{path}: {len(faces)} face(s), {ms:.1f} ms")
            for f in faces:
                click.echo(
                    f"  box {f['box']}: age {f['age']:.0f}, {f['gender']} "
                    f"({f['gender_confidence']:.0%})"
                )
    if failed:
        raise SystemExit(1)


COMMANDS = [analyze]
