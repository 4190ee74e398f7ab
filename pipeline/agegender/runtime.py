"""Light inference for the models facepipe trains: no TensorFlow at run time.

* :class:`ScratchRuntime`: the from-scratch CNN exported to LiteRT (``.tflite``), run with
  ``ai_edge_litert`` (or ``tf.lite`` when only TensorFlow is installed);
* :class:`HeadsRuntime`: transfer heads (a small MLP) stored as an ``.npz`` of weight
  arrays and run in numpy.

Both return ``(age_probs (N, AGE_BINS), p_female (N,))``;
:func:`pipeline.attributes.base.to_attributes` turns those into
:class:`~pipeline.attributes.base.AgeGender`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.agegender.models import AGE_BINS

MODELS_DIR = Path(__file__).resolve().parent.parent / "models" / "age_gender"


def read_card(path: Path) -> dict[str, Any]:
    """The JSON model card next to a weights file (``NAME.json``)."""
    card = path.with_suffix(".json")
    if not card.is_file():
        raise FileNotFoundError(f"model card missing: {card}")
    return json.loads(card.read_text())


def _interpreter(path: Path) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - fallback when only TensorFlow is installed
        from tensorflow.lite import Interpreter  # type: ignore[no-redef]
    return Interpreter(model_path=str(path), num_threads=1)


class ScratchRuntime:
    """The exported from-scratch CNN: RGB crops -> (age probabilities, p(female)).

    With ``flip=True`` each crop is also run mirrored and the two outputs are averaged
    (test-time augmentation: faces are roughly symmetric, the errors of the two views
    partly cancel; twice the network cost, still a few ms).
    """

    def __init__(self, path: str | Path, flip: bool = True) -> None:
        import cv2  # noqa: F401  (fail early when OpenCV is missing)

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"model file not found: {self.path} (train it with "
                "`facepipe train age-gender --model scratch`)"
            )
        self.card = read_card(self.path)
        self.size = int(self.card["input"]["size"])
        self._interp = _interpreter(self.path)
        self._in = self._interp.get_input_details()[0]
        self._out = self._interp.get_output_details()[0]
        self._batch = 0
        self.flip = flip

    def _prepare(self, crops: list[np.ndarray]) -> np.ndarray:
        from pipeline.agegender.images import resize

        x = np.empty((len(crops), self.size, self.size, 3), dtype=np.float32)
        for i, c in enumerate(crops):
            c = np.asarray(c)
            if c.ndim != 3 or c.shape[2] != 3 or c.shape[0] < 2 or c.shape[1] < 2:
                raise ValueError(f"expected an RGB crop (H, W, 3), got shape {c.shape}")
            x[i] = resize(np.ascontiguousarray(c, dtype=np.uint8), self.size)
        return x

    def __call__(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if not crops:
            return np.zeros((0, AGE_BINS)), np.zeros(0)
        x = self._prepare(crops)
        n = len(x)
        if self.flip:
            x = np.concatenate([x, x[:, :, ::-1]])
        if self._batch != len(x):
            self._interp.resize_tensor_input(self._in["index"], list(x.shape))
            self._interp.allocate_tensors()
            self._batch = len(x)
        self._interp.set_tensor(self._in["index"], x)
        self._interp.invoke()
        out = np.asarray(self._interp.get_tensor(self._out["index"]), dtype=np.float64)
        if self.flip:
            out = (out[:n] + out[n:]) / 2.0
        return out[:, :AGE_BINS], out[:, AGE_BINS]


class HeadsRuntime:
    """Transfer heads in numpy: features ``(N, D)`` -> (age probabilities, p(female)).

    The ``.npz`` holds ``mean``/``scale`` (feature standardisation) and ``W0, b0, ...``
    for the shared ReLU layers, ``Wa, ba`` (age logits) and ``Wg, bg`` (gender logit).
    Weights with a leading axis (``W0`` of shape ``(S, D, H)``) are ``S`` heads trained
    with different seeds: their age distributions and gender logits are averaged.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"heads file not found: {self.path} (train them with "
                "`facepipe train age-gender --model transfer`)"
            )
        with np.load(self.path, allow_pickle=False) as z:
            self.w = {k: z[k].astype(np.float64) for k in z.files}
        self.hidden = sorted(
            (k for k in self.w if k.startswith("W") and k[1:].isdigit()), key=lambda k: int(k[1:])
        )
        self.dim = int(self.w["mean"].shape[0])
        self.seeds = int(self.w["Wa"].shape[0]) if self.w["Wa"].ndim == 3 else 0

    def _one(self, x: np.ndarray, w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        for k in self.hidden:
            x = np.maximum(x @ w[k] + w["b" + k[1:]], 0.0)
        logits = x @ w["Wa"] + w["ba"]
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs, (x @ w["Wg"] + w["bg"])[:, 0]

    def __call__(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {x.shape}")
        x = (x - self.w["mean"]) / self.w["scale"]
        if not self.seeds:
            probs, g = self._one(x, self.w)
        else:
            keys = [*self.hidden, *("b" + k[1:] for k in self.hidden), "Wa", "ba", "Wg", "bg"]
            outs = [self._one(x, {k: self.w[k][s] for k in keys}) for s in range(self.seeds)]
            probs = np.mean([o[0] for o in outs], axis=0)
            g = np.mean([o[1] for o in outs], axis=0)
        return probs, 1.0 / (1.0 + np.exp(-g))
