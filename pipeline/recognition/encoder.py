"""128-d face encodings with dlib's ResNet model (the face_recognition models).

Landmarks use the 5-point model (public domain), not the 68-point one (iBUG 300-W,
non-commercial). Distances are Euclidean; dlib's published operating point is 0.6.

``engine="onnx"`` (the default, ``recognition.engine``) runs dlib's network in
onnxruntime (``pipeline/recognition/dlib_onnx.py``: the same weights, read from the same
model file, the same encodings to ~1e-6) at a few ms per face instead of dlib's ~100 ms
on 2-core machines without AVX in the dlib wheel; the face chip is dlib's own in both
engines. The network is loaded once per process and shared by every encoder.
``engine="dlib"`` runs dlib's own implementation.

``flip=True`` (off by default) is test-time flip augmentation: the aligned 150x150 face
chip and its horizontal mirror go through the network as one batch and the face's
encoding is :func:`flip_average` of the two (about 2x the cost of one encoding).
Flip-averaged encodings are closer together than plain ones, so they need their own
threshold (``docs/recognition.md``), and a gallery should be encoded the same way as the
probes it is compared with.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Literal

import numpy as np

from pipeline.record import Face

if TYPE_CHECKING:
    from pipeline.config import RecognitionConfig
    from pipeline.recognition.dlib_onnx import OnnxResNet

Engine = Literal["onnx", "dlib"]
ENGINES: tuple[str, ...] = ("onnx", "dlib")

_onnx_net: OnnxResNet | None = None
_onnx_lock = threading.Lock()


def onnx_network() -> OnnxResNet:
    """The process's one onnxruntime copy of dlib's network (built on first use)."""
    global _onnx_net
    with _onnx_lock:
        if _onnx_net is None:
            from pipeline.recognition.dlib_onnx import OnnxResNet

            _onnx_net = OnnxResNet()
        return _onnx_net

# dlib's face chip for the ResNet encoder: 150x150 px, 25 % padding around the landmarks
# (the values compute_face_descriptor(image, shape) uses internally).
CHIP_SIZE = 150
CHIP_PADDING = 0.25


def flip_average(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The encoding of a face from its chip's encoding ``a`` and its mirror's ``b``.

    The mean of the two, rescaled to the mean of their lengths: averaging two close
    vectors shortens them a little, and dlib encodings are not unit vectors, so the
    rescaling keeps flip-averaged encodings on the same scale as plain ones.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mean = (a + b) / 2.0
    norm = float(np.linalg.norm(mean))
    if norm == 0.0:
        return mean
    return mean * ((float(np.linalg.norm(a)) + float(np.linalg.norm(b))) / 2.0 / norm)


class DlibEncoder:
    """Loads the dlib models once; ``encode`` returns one 128-d row per face.

    ``num_jitters``: dlib re-samplings per face (slower, slightly steadier).
    ``min_face_px``: shorter faces are upscaled before landmarks and encoding.
    ``flip``: also encode the mirrored face chip and return :func:`flip_average` of the
    two (2x the network cost; off by default).
    ``engine``: ``onnx`` (dlib's network in onnxruntime, the default) or ``dlib``.
    """

    dim = 128

    def __init__(
        self,
        num_jitters: int = 1,
        min_face_px: int = 80,
        flip: bool = False,
        engine: Engine = "onnx",
    ) -> None:
        import dlib
        import face_recognition_models as frm

        if engine not in ENGINES:
            raise ValueError(f"unknown encoder engine {engine!r} (one of {', '.join(ENGINES)})")
        self.num_jitters = num_jitters
        self.min_face_px = min_face_px
        self.flip = flip
        self.engine = engine
        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        if engine == "dlib":
            self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        # the onnx network is built on first use (onnx_network): an attributes worker that
        # reuses the recognize stage's encodings never needs it

    @classmethod
    def from_config(cls, config: RecognitionConfig) -> DlibEncoder:
        """The recognize stage's encoder, as the ``recognition`` config section sets it."""
        return cls(
            num_jitters=config.num_jitters,
            min_face_px=config.upscale_below_px,
            flip=config.flip,
            engine=config.engine,
        )

    def encode(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """RGB uint8 image and boxes in it -> ``(len(faces), 128)`` float array."""
        return self.encode_with_landmarks(image, faces)[0]

    def encode_with_landmarks(
        self, image: np.ndarray, faces: list[Face]
    ) -> tuple[np.ndarray, list[list[tuple[float, float]]]]:
        """Encodings and the 5 landmarks used for each (in ``image`` coordinates)."""
        import dlib

        if not faces:
            return np.zeros((0, self.dim), dtype=np.float64), []
        image = np.ascontiguousarray(image)
        marks = []
        chips = []
        for face in faces:
            img, (x, y, w, h), (ox, oy, scale) = self._upscaled(image, face)
            shape = self._shape(img, dlib.rectangle(x, y, x + w, y + h))
            # the chip dlib's compute_face_descriptor(img, shape) would cut itself
            chips.append(dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
            marks.append([(ox + p.x / scale, oy + p.y / scale) for p in shape.parts()])
        return self.encode_chips(np.stack(chips)), marks

    def encode_chips(self, chips: np.ndarray) -> np.ndarray:
        """Aligned 150x150 RGB face chips (dlib's, ``(N, 150, 150, 3)`` uint8) ->
        ``(N, 128)`` encodings, with this encoder's jitters and flip, in one batch."""
        import dlib

        chips = np.asarray(chips, dtype=np.uint8)
        n, jitters = len(chips), self.num_jitters
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float64)
        views = [chips, chips[:, :, ::-1]] if self.flip else [chips]
        batch = [np.ascontiguousarray(c) for c in np.concatenate(views)]
        if self.engine == "dlib":
            enc = np.asarray(self._net.compute_face_descriptor(batch, jitters), np.float64)
        else:
            if jitters > 1:  # as dlib's compute_face_descriptor: the mean over its jitters
                batch = [j for c in batch for j in dlib.jitter_image(c, jitters)]
            enc = onnx_network()(np.stack(batch)).astype(np.float64)
            enc = enc.reshape(len(views) * n, jitters, -1).mean(axis=1)
        enc = enc.reshape(len(views), n, -1)
        if not self.flip:
            return enc[0]
        return np.stack([flip_average(a, b) for a, b in zip(enc[0], enc[1], strict=True)])

    def _upscaled(
        self, image: np.ndarray, face: Face
    ) -> tuple[np.ndarray, tuple[int, ...], tuple[int, int, float]]:
        """Small faces: crop with context and upscale (bicubic) to ``min_face_px`` tall."""
        x, y, w, h = face.box
        if h >= self.min_face_px or h <= 0:
            return image, (x, y, w, h), (0, 0, 1.0)
        import cv2

        scale = self.min_face_px / h
        m = int(round(0.5 * max(w, h)))
        ih, iw = image.shape[:2]
        x1, y1 = max(0, x - m), max(0, y - m)
        x2, y2 = min(iw, x + w + m), min(ih, y + h + m)
        crop = cv2.resize(
            image[y1:y2, x1:x2], None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC
        )
        box = tuple(int(round(v * scale)) for v in (x - x1, y - y1, w, h))
        return np.ascontiguousarray(crop), box, (x1, y1, scale)
