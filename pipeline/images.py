"""Reading image files: one reader for every command and stage that opens a picture.

:func:`read_image` returns RGB ``uint8`` ``(H, W, 3)`` whatever the file holds (grey is
replicated to three channels, alpha dropped, 16-bit scaled to 8, the EXIF orientation
applied), or raises :class:`ImageError` with a message that names the file. The image's
size is read from its header first, so a file that would decode to more than
``max_pixels`` pixels (a decompression bomb, or just a huge scan) is refused before any
memory is spent on it.

Pillow decodes. On the project's datasets (LFW, WIDER FACE, UTKFace JPEGs and the PNGs)
its pixels are identical to OpenCV's ``imdecode``, which the commands used before.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

DEFAULT_MAX_PIXELS = 50_000_000  # 50 megapixels: an ~8700 x 5800 photo; 150 MB as RGB


class ImageError(ValueError):
    """An image file that cannot be used (missing, not an image, corrupt, too large)."""


def read_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image file at ``path`` as an RGB ``uint8`` array ``(H, W, 3)``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image not found: {p}" if not p.exists() else f"not a file: {p}")
    try:
        with warnings.catch_warnings():  # our own limit applies, not Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                width, height = im.size  # from the header: nothing decoded yet
                if width * height > max_pixels:
                    raise ImageError(
                        f"image {p} is too large: {width} x {height} pixels, "
                        f"more than {max_pixels:,}"
                    )
                im = ImageOps.exif_transpose(im)
                if im.mode.startswith("I;16"):  # 16-bit grey: keep the high byte
                    im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8))
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # beyond even Pillow's hard limit
        raise ImageError(f"image {p} is too large: {exc}") from None
    except UnidentifiedImageError:
        raise ImageError(f"cannot read image {p}: not a readable image (unknown format)") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated, corrupt
        raise ImageError(f"cannot read image {p}: not a readable image ({exc})") from None
    return np.ascontiguousarray(rgb)
