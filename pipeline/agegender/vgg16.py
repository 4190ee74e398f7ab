"""VGG16 features for the ``transfer`` backend, from a weights file the user supplies.

The seed study froze Keras' ImageNet VGG16 (no top) and trained new dense layers on it.
Keras downloads those weights at run time, which machines without internet cannot do, so
facepipe never downloads them: pass the file (``vgg16_weights_tf_dim_ordering_tf_kernels_
notop.h5`` from a machine with internet, or any compatible Keras VGG16 no-top weights)
with ``--vgg16-weights`` / the ``vgg16_weights`` option. Features are the global average
of the last conv block (512-d) of a ``VGG16_SIZE`` x ``VGG16_SIZE`` face crop.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

VGG16_SIZE = 112
DIM = 512

MISSING = (
    "VGG16 weights are not bundled and cannot be downloaded here. Supply Keras' ImageNet "
    "VGG16 no-top weights file (vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5, copied "
    "from a machine with internet) with --vgg16-weights PATH or the attributes option "
    "`vgg16_weights: PATH`"
)


def check_weights(path: str | Path | None) -> Path:
    """The weights file as a Path, or FileNotFoundError with what to do."""
    if not path:
        raise FileNotFoundError(MISSING + " (none given).")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(MISSING + f" (not found: {p}).")
    return p


class Vgg16Features:
    """Frozen VGG16 (no top) -> 512-d features of RGB face crops."""

    def __init__(self, weights: str | Path | None, size: int = VGG16_SIZE) -> None:
        path = check_weights(weights)
        import keras

        self.size = size
        try:
            self.model = keras.applications.VGG16(
                include_top=False, weights=str(path), input_shape=(size, size, 3), pooling="avg"
            )
        except Exception as exc:  # bad file: say which one and why
            raise ValueError(f"cannot load VGG16 no-top weights from {path}: {exc}") from exc
        self.model.trainable = False
        self.digest = hashlib.sha1(path.read_bytes()[: 1 << 20]).hexdigest()[:10]

    def images(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(N, 512)`` features of RGB uint8 crops (any size; resized here)."""
        from keras.applications.vgg16 import preprocess_input

        from pipeline.agegender.images import resize

        if not crops:
            return np.zeros((0, DIM), dtype=np.float32)
        x = np.stack([resize(np.asarray(c, dtype=np.uint8), self.size) for c in crops])
        x = preprocess_input(x.astype(np.float32))
        out: Any = self.model(x, training=False)
        return np.asarray(out, dtype=np.float32)
