"""The detector interface: an RGB image in, faces out.

A backend implements :meth:`Detector._detect` (its own model's faces, in pixels of the
image, possibly reaching past its edges); :meth:`Detector.detect` checks the input, clips
every box to the image, drops the empty ones and those shorter than ``min_size``, so this
post-processing is the same for every backend and written once.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import cv2
import numpy as np
from pydantic import Field

from pipeline.frames import ChannelOrder
from pipeline.record import Face
from pipeline.registry import Backend


class Detector(Backend):
    """A face detector backend.

    ``detect`` takes an RGB ``uint8`` array of shape ``(H, W, 3)`` (or BGR, said so with
    ``order``) and returns one :class:`~pipeline.record.Face` per face: ``box``
    ``(x, y, w, h)`` in pixels of the given image (inside it), ``score`` (higher = more
    confident, comparable within one detector) and ``landmarks`` when the model gives
    them. ``min_size`` (pixels, face height) skips faces smaller than that; backends may
    use it to search fewer scales.
    """

    @classmethod
    def installed(cls) -> bool:
        """Whether the backend's libraries are installed here, checked without importing
        them (``detector.backend: auto`` picks the first installed backend). Backends
        whose libraries are optional say so; the others are always installed."""
        return True

    def detect(
        self,
        image: np.ndarray,
        min_size: int = 0,
        frame_size: tuple[int, int] | None = None,
        order: ChannelOrder = "rgb",
    ) -> list[Face]:
        """``frame_size`` ``(width, height)``: ``image`` is that frame decoded smaller
        (:meth:`input_scale`); boxes, landmarks and ``min_size`` are in the frame's pixels.
        ``order``: ``image``'s channel order (``"bgr"``: as OpenCV decodes; a backend whose
        :attr:`channel_order` is the same gets it without a conversion)."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
        image = self._in_order(image, order)
        h, w = image.shape[:2]
        fw, fh = frame_size or (w, h)
        sx, sy = (fw / w, fh / h) if w and h else (1.0, 1.0)
        faces = self._detect(image, max(0, int(min_size / max(sx, sy))))
        if (fw, fh) != (w, h):
            faces = [f.scaled(sx, sy) for f in faces]
        faces = [f.clipped(fw, fh) for f in faces]
        return [f for f in faces if f.box[2] > 0 and f.box[3] > 0 and f.box[3] >= min_size]

    def unclipped(
        self, image: np.ndarray, min_size: int = 0, order: ChannelOrder = "rgb"
    ) -> list[Face]:
        """The backend's own faces in ``image`` (``order``: its channel order), before
        :meth:`detect`'s clipping and filtering (for evaluations of the raw boxes)."""
        return self._detect(self._in_order(np.asarray(image), order), min_size)

    def _in_order(self, image: np.ndarray, order: ChannelOrder) -> np.ndarray:
        """``image`` (channels in ``order``) in the backend's :attr:`channel_order`."""
        if order not in ("rgb", "bgr"):
            raise ValueError(f"order must be 'rgb' or 'bgr', not {order!r}")
        if order != self.channel_order and image.size:
            return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)  # a swap
        return image

    #: the channel order :meth:`_detect` takes its image in: ``"rgb"``, or ``"bgr"`` for
    #: a backend whose network takes BGR as OpenCV decodes it (libfacedetection's YuNet;
    #: the detect stage then reads frames as BGR)
    channel_order: ClassVar[ChannelOrder] = "rgb"

    @abstractmethod
    def _detect(self, image: np.ndarray, min_size: int) -> list[Face]:
        """The backend's faces in ``image`` (in :attr:`channel_order`, checked; RGB unless
        the backend says otherwise), boxes in its pixels; they may
        reach past the image and be smaller than ``min_size`` (a hint: :meth:`detect`
        clips and filters)."""
        raise NotImplementedError

    def input_scale(self, width: int, height: int) -> float:
        """The factor by which this backend resizes a ``width`` x ``height`` frame before
        its network sees it (1.0: as it is). The detect stage uses it to decode a stored
        JPEG frame at 1/2, 1/4 or 1/8 of its size when the network would see it at most
        that large anyway (:func:`pipeline.frames.reduced_factor`): the same input for
        the network, for a fraction of the decoding work."""
        return 1.0

    def warmup(self) -> None:
        """Load weights and run once, so the first real frame is not slow."""
        self.detect(np.zeros((64, 64, 3), dtype=np.uint8))


def upsample_option(most: int, cost: str) -> Any:
    """The ``upsample`` option of the dlib detectors (0 to ``most`` times)."""
    return Field(
        0,
        ge=0,
        le=most,
        description=f"times to upsample the image (finds smaller faces, {cost} slower each)",
    )


def dlib_faces(rects: Any, scores: Any) -> list[Face]:
    """Faces from dlib rectangles and their scores (boxes as dlib gives them, unclipped)."""
    return [
        Face(box=(r.left(), r.top(), r.width(), r.height()), score=float(s))
        for r, s in zip(rects, scores, strict=True)
    ]
