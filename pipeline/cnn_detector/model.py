"""The two small networks of the CNN face detector (a two-stage cascade, MTCNN-style).

* **proposal** net: fully convolutional, looks at 32x32 windows with a stride of 8 pixels.
  Run over an image pyramid, every output cell says "face / not face" for one window and
  regresses the face box inside it. Cheap: about 0.5 GMAC for a 640x360 frame at scale 1.
* **refine** net: looks at each surviving candidate again, cropped at 48x48 from the
  original image, with more context and capacity; it re-scores and re-regresses the box.

Both output 5 numbers per window: a face logit and 4 box offsets (see ``boxes.encode``).
Inputs are RGB float32 in 0..255; scaling to -1..1 is the first layer, so callers pass
pixels as they are.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROPOSAL = "proposal"
REFINE = "refine"
STAGES = (PROPOSAL, REFINE)


@dataclass(frozen=True)
class StageSpec:
    """Geometry and width of one stage's network."""

    window: int
    stride: int
    filters: tuple[int, ...]
    dense: int = 0  # refine only: width of the dense layer (0 = fully convolutional)


SPECS: dict[str, StageSpec] = {
    PROPOSAL: StageSpec(window=32, stride=8, filters=(16, 32, 64, 128)),
    REFINE: StageSpec(window=48, stride=0, filters=(16, 48, 64, 128), dense=128),
}


@dataclass
class DetectorConfig:
    """What the shipped weights need besides themselves (written as JSON next to them)."""

    proposal_window: int = SPECS[PROPOSAL].window
    proposal_stride: int = SPECS[PROPOSAL].stride
    refine_window: int = SPECS[REFINE].window
    trained: dict[str, Any] = field(default_factory=dict)  # data, epochs, time, ...

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> DetectorConfig:
        data = json.loads(path.read_text())
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown config key(s) {sorted(unknown)}")
        return cls(**data)


def _conv_block(x: Any, filters: int, kernel: int, name: str) -> Any:
    from keras import layers

    x = layers.Conv2D(filters, kernel, padding="valid", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _trunk(x: Any, filters: tuple[int, int, int, int]) -> Any:
    """Both nets' convolutions: three 3x3 blocks each followed by 2x2 pooling, a 2x2 block."""
    from keras import layers

    f1, f2, f3, f4 = filters
    for i, f in enumerate((f1, f2, f3), start=1):
        x = _conv_block(x, f, 3, f"c{i}")
        x = layers.MaxPooling2D(2, name=f"p{i}")(x)
    return _conv_block(x, f4, 2, "c4")


def build_proposal_net() -> Any:
    """Fully convolutional 32x32 / stride-8 face classifier + box regressor.

    Input ``(N, H, W, 3)`` with H, W >= 32; output ``(N, h, w, 5)`` with
    ``h = (H - 32) // 8 + 1`` (likewise w): channel 0 is the face logit of the window at
    ``(8j, 8i)``, channels 1-4 its box offsets.
    """
    import keras
    from keras import layers

    f1, f2, f3, f4 = SPECS[PROPOSAL].filters
    inp = keras.Input((None, None, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inp)
    x = _trunk(x, (f1, f2, f3, f4))  # 32 -> 30 -> 15 -> 13 -> 6 -> 4 -> 2 -> 1
    out = layers.Conv2D(5, 1, name="head")(x)
    return keras.Model(inp, out, name=PROPOSAL)


def build_refine_net() -> Any:
    """48x48 crop classifier + box regressor: input ``(N, 48, 48, 3)``, output ``(N, 5)``."""
    import keras
    from keras import layers

    spec = SPECS[REFINE]
    f1, f2, f3, f4 = spec.filters
    w = spec.window
    inp = keras.Input((w, w, 3), name="crop")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale")(inp)
    x = _trunk(x, (f1, f2, f3, f4))  # 48 -> 46 -> 23 -> 21 -> 10 -> 8 -> 4 -> 3
    x = layers.Flatten(name="flat")(x)
    x = layers.Dense(spec.dense, use_bias=False, name="fc")(x)
    x = layers.BatchNormalization(momentum=0.9, name="fc_bn")(x)
    x = layers.ReLU(name="fc_relu")(x)
    x = layers.Dropout(0.25, name="drop")(x)
    out = layers.Dense(5, name="head")(x)
    return keras.Model(inp, out, name=REFINE)


def build(stage: str) -> Any:
    """The untrained network of ``stage`` (``proposal`` or ``refine``)."""
    if stage == PROPOSAL:
        return build_proposal_net()
    if stage == REFINE:
        return build_refine_net()
    raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")


def weights_name(stage: str) -> str:
    return f"{stage}.weights.h5"
