"""Running the trained cascade on a whole image: pyramid -> proposals -> refine -> NMS.

The proposal net runs fully convolutionally over an image pyramid (one call per scale,
through a ``tf.function`` with a dynamic input shape so it is traced once); its windows
above ``proposal_threshold`` are decoded into boxes, merged by NMS and capped. The refine
net then re-boxes and re-scores all candidate crops in one batch; the detector's score is
the geometric mean of the two nets' face probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.cnn_detector.boxes import decode, decode_score_map, nms, pyramid_scales, square_around
from pipeline.cnn_detector.crops import crop_windows
from pipeline.cnn_detector.model import (
    PROPOSAL,
    REFINE,
    SPECS,
    DetectorConfig,
    build,
    weights_name,
)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "cnn_detector"


@dataclass
class CascadeSettings:
    """Search and threshold settings (the backend's options map onto these)."""

    min_face: float = 32.0
    max_face: float = 0.0  # 0 = no upper limit
    scale_factor: float = 0.75
    proposal_threshold: float = 0.5
    proposal_nms: float = 0.6
    max_candidates: int = 300
    score_threshold: float = 0.5
    nms_iou: float = 0.4
    refine: bool = True


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _sane(boxes: np.ndarray, min_side: float = 4.0) -> np.ndarray:
    """Mask of boxes whose regressed width and height are at least ``min_side`` pixels."""
    return ((boxes[:, 2] - boxes[:, 0]) >= min_side) & ((boxes[:, 3] - boxes[:, 1]) >= min_side)


class Cascade:
    """The two trained nets and the code that runs them on whole images."""

    def __init__(self, proposal: Any, refine: Any | None) -> None:
        import tensorflow as tf

        self.proposal = proposal
        self.refine = refine
        self.window = SPECS[PROPOSAL].window
        self.stride = SPECS[PROPOSAL].stride
        self.refine_window = SPECS[REFINE].window
        self._proposal_fn = tf.function(
            lambda x: proposal(x, training=False),
            input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)],
            reduce_retracing=True,
        )
        self._refine_fn = None
        if refine is not None:
            self._refine_fn = tf.function(
                lambda x: refine(x, training=False),
                input_signature=[
                    tf.TensorSpec([None, self.refine_window, self.refine_window, 3], tf.float32)
                ],
            )

    @classmethod
    def load(
        cls, model_dir: Path | str | None = None, stages: tuple[str, ...] = (PROPOSAL, REFINE)
    ) -> Cascade:
        """Build the nets and load their weights from ``model_dir`` (default: the shipped ones)."""
        model_dir = Path(model_dir) if model_dir is not None else DEFAULT_MODEL_DIR
        config_path = model_dir / "config.json"
        if config_path.exists():
            cfg = DetectorConfig.load(config_path)
            if (cfg.proposal_window, cfg.proposal_stride, cfg.refine_window) != (
                SPECS[PROPOSAL].window,
                SPECS[PROPOSAL].stride,
                SPECS[REFINE].window,
            ):
                raise ValueError(f"{config_path} describes nets of another geometry than this code")
        nets: dict[str, Any] = {}
        for stage in stages:
            path = model_dir / weights_name(stage)
            if not path.exists():
                raise FileNotFoundError(
                    f"CNN detector weights {path} are missing; train them with "
                    f"`facepipe train cnn` (see docs/cnn-detector.md)"
                )
            net = build(stage)
            net.load_weights(str(path))
            nets[stage] = net
        return cls(nets[PROPOSAL], nets.get(REFINE))

    def proposals(self, image: np.ndarray, s: CascadeSettings) -> tuple[np.ndarray, np.ndarray]:
        """Candidate boxes (x1, y1, x2, y2) and proposal scores over the image pyramid."""
        h, w = image.shape[:2]
        all_boxes, all_scores = [], []
        for scale in pyramid_scales(h, w, self.window, s.min_face, s.scale_factor, s.max_face):
            sw, sh = (
                max(self.window, int(round(w * scale))),
                max(self.window, int(round(h * scale))),
            )
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            resized = cv2.resize(image, (sw, sh), interpolation=interp)
            out = self._proposal_fn(resized[None].astype(np.float32)).numpy()[0]
            boxes, scores = decode_score_map(
                _sigmoid(out[..., 0]), out[..., 1:], sw / w, self.window, self.stride,
                s.proposal_threshold,
            )  # fmt: skip
            ok = _sane(boxes)
            boxes, scores = boxes[ok], scores[ok]
            if len(scores) > s.max_candidates * 4:  # bound the NMS work on busy levels
                top = np.argsort(-scores)[: s.max_candidates * 4]
                boxes, scores = boxes[top], scores[top]
            if len(boxes):
                keep = nms(boxes, scores, 0.5)
                all_boxes.append(boxes[keep])
                all_scores.append(scores[keep])
        if not all_boxes:
            return np.zeros((0, 4)), np.zeros((0,))
        boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
        keep = nms(boxes, scores, s.proposal_nms)[: s.max_candidates]
        return boxes[keep], scores[keep]

    def refine_boxes(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Refine-net boxes and scores for candidate ``boxes`` of ``image``."""
        if self._refine_fn is None:
            raise RuntimeError("this cascade was loaded without its refine net")
        if len(boxes) == 0:
            return np.zeros((0, 4)), np.zeros((0,))
        windows = square_around(boxes)
        crops = crop_windows(image, windows, self.refine_window).astype(np.float32)
        out = self._refine_fn(crops).numpy()
        return decode(windows, out[:, 1:]), _sigmoid(out[:, 0]).astype(np.float64)

    def detect(
        self, image: np.ndarray, settings: CascadeSettings | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Face boxes (x1, y1, x2, y2, float pixels) and scores in an RGB uint8 image."""
        s = settings or CascadeSettings()
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an RGB uint8 image of shape (H, W, 3), got {image.dtype} {image.shape}"
            )
        boxes, scores = self.proposals(image, s)
        if s.refine and self._refine_fn is not None and len(boxes):
            boxes, refine_scores = self.refine_boxes(image, boxes)
            # both nets vote: the geometric mean ranked WIDER faces better than either
            # net's probability alone (docs/cnn-detector.md)
            scores = np.sqrt(scores * refine_scores)
            ok = _sane(boxes)
            boxes, scores = boxes[ok], scores[ok]
        ok = scores >= s.score_threshold
        boxes, scores = boxes[ok], scores[ok]
        if len(boxes):
            keep = nms(boxes, scores, s.nms_iou)
            boxes, scores = boxes[keep], scores[keep]
        return boxes, scores
