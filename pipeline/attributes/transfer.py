"""Transfer-learning age/gender: small heads on a frozen pre-trained network's features.

Default (``features: dlib``): the 128-d face_recognition/dlib ResNet encodings the
pipeline already computes for identity. In the pipeline, :meth:`estimate` reuses
``Face.encoding`` when the recognition stage filled it in, so age/gender then costs only
a tiny numpy MLP (well under 1 ms); otherwise it computes the encoding (~80-100 ms/face,
5-point landmarks in the detector box, like the recognition stage).

``features: vgg16``: the seed study's frozen ImageNet VGG16 (no top), from a weights file
the user supplies with ``vgg16_weights`` (Keras cannot download it here; absent -> a clear
error), with heads trained by ``facepipe train age-gender --model transfer --features
vgg16 --vgg16-weights PATH``.

Heads: ``pipeline/models/age_gender/transfer.npz`` (+ model card), trained on the
UTKFace training split only (each training image also mirrored: the encoding of the
mirrored face chip is one more example). ``calibrate`` (default on) applies
``transfer.calibration.json`` when present, fitted on held-out training files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from pipeline.agegender.framing import UTKFACE_MARGIN, inner_box
from pipeline.agegender.runtime import MODELS_DIR, HeadsRuntime
from pipeline.agegender.stacker import load_calibration
from pipeline.attributes.base import (
    AgeGender,
    AttributeEstimator,
    CalibratedOptions,
    calibrated,
    crop_face,
    to_attributes,
)
from pipeline.recognition.encoder import DlibEncoder, flip_average
from pipeline.record import Face


class _MirroredChips(DlibEncoder):
    """The recognize stage's encoder (same landmarks, same 150 px chip) on the
    horizontally mirrored chip: the second half of a flip-averaged encoding when the
    first half (``Face.encoding``) is reused."""

    def encode_chips(self, chips: np.ndarray) -> np.ndarray:
        return super().encode_chips(np.ascontiguousarray(np.asarray(chips)[:, :, ::-1]))


class TransferOptions(CalibratedOptions):
    features: Literal["dlib", "vgg16"] = Field(
        "dlib", description="frozen network: dlib 128-d encodings or a user-supplied VGG16"
    )
    heads: str | None = Field(
        None, description="heads .npz (default: the shipped one for these features)"
    )
    vgg16_weights: str | None = Field(
        None, description="Keras VGG16 no-top ImageNet weights file (features: vgg16)"
    )
    num_jitters: int = Field(1, ge=1, le=100, description="dlib encoder re-samplings")
    reuse_encoding: bool = Field(
        True, description="use Face.encoding from the recognition stage when present"
    )
    flip: bool = Field(
        False,
        description="test-time flip (dlib features): the heads get the flip-averaged "
        "encoding of the face chip and its mirror (with a reused encoding only the mirror is "
        "encoded: one more encoder run per face)",
    )


class TransferEstimator(AttributeEstimator):
    name = "transfer"
    Options = TransferOptions
    # context around the detector box in predict() crops: the dlib landmarks need the
    # whole face; the box is recovered from the margin (pipeline.agegender.framing)
    crop_margin = 0.25

    def __init__(self, options: TransferOptions | None = None) -> None:
        super().__init__(options)
        opts = self.options
        if opts.features == "vgg16":
            from pipeline.agegender.vgg16 import Vgg16Features, check_weights

            check_weights(opts.vgg16_weights)  # clear error before anything else
            default = MODELS_DIR / "transfer-vgg16.npz"
            heads = Path(opts.heads) if opts.heads else default
            if not heads.is_file():
                raise FileNotFoundError(
                    f"no heads for VGG16 features at {heads}: train them with `facepipe train "
                    "age-gender --model transfer --features vgg16 --vgg16-weights PATH`"
                )
            self._vgg = Vgg16Features(opts.vgg16_weights)
            self._encoder = None
            self._mirror = None
        else:
            heads = Path(opts.heads) if opts.heads else MODELS_DIR / "transfer.npz"
            # flip: this encoder returns flip-averaged encodings (chip and mirror in one batch)
            self._encoder = DlibEncoder(num_jitters=opts.num_jitters, flip=opts.flip)
            self._mirror = _MirroredChips(num_jitters=opts.num_jitters) if opts.flip else None
            self._vgg = None
        self._heads = HeadsRuntime(heads)
        self.calibration = load_calibration(heads) if opts.calibrate else None

    def _attributes(self, feats: np.ndarray) -> list[AgeGender]:
        return calibrated(self.calibration, to_attributes(*self._heads(feats)))

    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        """Frozen-network features of crops made with ``crop_margin`` around a box."""
        if self._vgg is not None:
            # VGG16 heads were trained on UTKFace framing: re-crop to it
            inner = [inner_box(c.shape[0], c.shape[1], self.crop_margin) for c in crops]
            return self._vgg.images(
                [crop_face(c, f, UTKFACE_MARGIN) for c, f in zip(crops, inner, strict=True)]
            )
        rows = []
        for c in crops:
            c = np.ascontiguousarray(c, dtype=np.uint8)
            if c.ndim != 3 or c.shape[2] != 3:
                raise ValueError(f"expected an RGB crop (H, W, 3), got shape {c.shape}")
            box = inner_box(c.shape[0], c.shape[1], self.crop_margin)
            rows.append(self._encoder.encode(c, [box])[0])  # type: ignore[union-attr]
        return np.asarray(rows, dtype=np.float64)

    def predict(self, crops: list[np.ndarray]) -> list[AgeGender]:
        if not crops:
            return []
        return self._attributes(self.features(crops))

    def warmup(self) -> None:
        if self._encoder is None or not self.options.reuse_encoding:
            super().warmup()
            return
        # in the pipeline the faces carry the recognize stage's encodings: warm the heads
        # only; the encoder network is built on first use, if a face ever comes without one
        self._attributes(np.zeros((1, self._heads.dim), dtype=np.float64))

    def estimate(self, image: np.ndarray, faces: list[Face]) -> list[AgeGender]:
        if not faces:
            return []
        if self._encoder is None:
            return super().estimate(image, faces)
        dim = self._heads.dim
        if self.options.reuse_encoding and all(
            f.encoding is not None and len(f.encoding) == dim for f in faces
        ):
            feats = np.asarray([f.encoding for f in faces], dtype=np.float64)
            if self._mirror is not None:  # test-time flip: encode the mirrored chip too
                image = np.ascontiguousarray(image)
                mirrored = self._mirror.encode(image, faces)
                feats = np.stack([flip_average(a, b) for a, b in zip(feats, mirrored, strict=True)])
        else:
            feats = self._encoder.encode(np.ascontiguousarray(image), faces)
        return self._attributes(feats)
