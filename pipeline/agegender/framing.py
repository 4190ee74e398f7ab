"""How a UTKFace image relates to a face detector's box, measured, not assumed.

UTKFace's "aligned & cropped" images are tight: run on them (at many scales, inside a
neutral canvas) dlib's HOG detector returns a square box covering about 0.89 of the image
side, centred (median over validation images; ``scripts/eval_attributes.py --framing``
re-measures it). So a crop of a HOG box grown by a margin of ``(1/0.89 - 1) / 2 = 0.06`` on
each side looks like a UTKFace training image.

``face_crop_box`` gives the detector-like box inside an image that already is such a crop
(``facepipe analyze --face-crop``, evaluation), so every backend can re-crop it with its
own ``crop_margin`` and see what it was trained on.
"""

from __future__ import annotations

from pipeline.record import Face

UTKFACE_BOX_FRACTION = 0.89
"""Median side of the HOG box on a UTKFace image, as a fraction of the image side."""

UTKFACE_MARGIN = round((1.0 / UTKFACE_BOX_FRACTION - 1.0) / 2.0, 3)
"""``crop_margin`` that turns a HOG box into a UTKFace-like crop (0.062)."""


def face_crop_box(height: int, width: int, fraction: float = UTKFACE_BOX_FRACTION) -> Face:
    """The detector-like box of the face in an already-cropped face image."""
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image {width}x{height}")
    side = min(height, width) * fraction
    x = (width - side) / 2.0
    y = (height - side) / 2.0
    return Face(box=(x, y, side, side))


def inner_box(height: int, width: int, margin: float) -> Face:
    """The box that :func:`pipeline.attributes.base.crop_face` grew by ``margin`` into a
    ``height`` x ``width`` crop (inverse of the crop, up to rounding)."""
    return face_crop_box(height, width, 1.0 / (1.0 + 2.0 * margin))
