"""YuNet (libfacedetection, Shiqi Yu et al.) through the ``yuface`` package; weights shipped.

``yuface`` (BSD-3) is a pybind11 wrapper of libfacedetection with the YuNet weights
compiled into its shared library, so there is nothing to download. Its C function takes
a contiguous BGR ``uint8`` image at its own resolution (no internal resizing) and returns
one ``int16`` row per face: confidence in percent, box ``x, y, w, h`` (may reach past
the image), then 5 landmarks ``x, y``. It keeps faces with confidence >= 20 % and
applies its own NMS; the Python wrapper's extra threshold and its warning above 960 px
are not used here.

The network runs with OpenMP (the wheel vendors its own ``libgomp``). Its thread count
is set with ``omp_set_num_threads`` of that library right before every call (the
setting is per calling thread in OpenMP, so the detector works from any thread). That
``libgomp`` is loaded with ``OMP_WAIT_POLICY=PASSIVE`` (unless the environment sets a
policy): with libgomp's default, idle OpenMP threads spin, and on a busy 2-core machine
two threads cost ~6x the CPU of one and were ~4x slower in wall time; passive, two
threads cost the same CPU as one (docs/detectors.md). The variable is set only while
``yuface`` is first imported (libgomp reads it when it loads), so other OpenMP runtimes
of the process are not affected. One thread is the default.

Memory: the wheel's own Python entry point (``yuface.yuface.detect``) allocates
libfacedetection's 36 KB result buffer on every call and never frees it (measured: a
detect worker grew from 136 to 1,010 MB in a 30-minute soak at 12 detections a second;
``docs/soak.md``). So the detector calls the library's ``facedetect_cnn`` itself through
``ctypes``, with one result buffer per detector, reused: the same function, the same
rows (but for the 16th, unused column, which the wheel leaves uninitialised); the wheel's
entry point is used only where the library's symbol cannot be found, with a warning.

Input scaling: ``upscale`` multiplies the frame before detection (smaller faces found,
cost grows with the area), ``max_side`` caps the longer side of what the network sees
(faster on large frames); boxes and landmarks are mapped back to the frame's pixels.

Boxes (``box``): YuNet's own boxes run from the forehead to the chin and are taller than
wide; dlib's HOG boxes, which enrolment uses and in which dlib's 5-point landmark model
(the recognition encoder's alignment) was trained, are squares from the eyebrows to
below the lower lip. With ``box="dlib"`` (the default) each box is mapped to HOG's
framing from YuNet's box and 5 landmarks by a linear map fitted on faces both detectors
find (``pipeline/models/yunet/box_map.json``, ``scripts/fit_detector_boxes.py``;
:mod:`pipeline.detectors._boxmap`), before clipping to the frame. The landmarks are
YuNet's own either way. ``box="model"`` keeps YuNet's box.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from pipeline.detectors._boxmap import BoxMap
from pipeline.detectors.base import Detector
from pipeline.record import Face
from pipeline.registry import BackendError, BackendOptions

# libfacedetection's own confidence floor (percent): lower min_score values change nothing
FLOOR_SCORE = 0.2

# the model's landmark order (image left to right for a frontal face), the same as MTCNN's:
# left eye, right eye, nose tip, left mouth corner, right mouth corner (in the image)
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# the fitted map from YuNet's box and landmarks to dlib HOG's framing (MODEL_CARD.md there)
BOX_MAP_PATH = Path(__file__).resolve().parent.parent / "models" / "yunet" / "box_map.json"


def box_map() -> BoxMap:
    """The shipped YuNet -> dlib-HOG box map (loaded once)."""
    global _BOX_MAP
    if _BOX_MAP is None:
        _BOX_MAP = BoxMap.load(BOX_MAP_PATH)
    return _BOX_MAP


_BOX_MAP: BoxMap | None = None

log = logging.getLogger(__name__)

# libfacedetection's DETECT_BUFFER_SIZE: the result buffer its facedetect_cnn fills (an
# int count, then 16 int16 per face: confidence %, x, y, w, h, 5 landmarks x, y, unused)
RESULT_BYTES = 0x9000
ROW = 16
MAX_FACES = (RESULT_BYTES - 4) // (ROW * 2)
# int* facedetect_cnn(unsigned char* result_buffer, unsigned char* bgr, int w, int h, int step)
SYMBOL = "_Z14facedetect_cnnPhS_iii"


class NativeDetect:
    """libfacedetection's ``facedetect_cnn`` called with a result buffer of its own,
    allocated once (the wheel's wrapper allocates one per call and leaks it). Calls must
    be serialised by the caller (the buffer is shared)."""

    def __init__(self, function: Any) -> None:
        function.restype = ctypes.c_void_p
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int] * 3
        self._function = function
        self._buffer = ctypes.create_string_buffer(RESULT_BYTES)

    @classmethod
    def load(cls, module_file: str) -> NativeDetect | None:
        """The function of the library the ``yuface`` extension is linked with (already
        loaded with it: ``dlopen`` of the same file returns the same library), or None."""
        here = Path(module_file).resolve().parent
        # the versioned file is the one the extension links (its rpath is its folder)
        for path in sorted(here.glob("libfacedetection.so*"), key=lambda p: -len(p.name)):
            try:
                return cls(getattr(ctypes.CDLL(str(path)), SYMBOL))
            except (OSError, AttributeError):
                continue
        return None

    def __call__(self, bgr: np.ndarray) -> np.ndarray:
        """``(N, 16)`` int16 rows of the faces in a BGR ``uint8`` image, as the wheel's
        ``yuface.yuface.detect`` returns them."""
        if bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise ValueError(f"a BGR uint8 image is needed, not {bgr.dtype} {bgr.shape}")
        bgr = np.ascontiguousarray(bgr)
        h, w = bgr.shape[:2]
        out = self._function(self._buffer, bgr.ctypes.data, w, h, int(bgr.strides[0]))
        if not out:
            return np.empty((0, ROW), np.int16)
        n = int(np.frombuffer(self._buffer, np.int32, count=1)[0])
        n = max(0, min(n, MAX_FACES))
        return np.frombuffer(self._buffer, np.int16, count=n * ROW, offset=4).reshape(n, ROW).copy()


class YunetOptions(BackendOptions):
    min_score: float = Field(
        0.75,
        ge=FLOOR_SCORE,
        lt=1,
        description="confidence threshold (the library keeps nothing below 0.2; 0.75: "
        "chosen on WIDER, docs/detectors.md)",
    )
    threads: int = Field(1, ge=1, le=16, description="OpenMP threads for the network")
    upscale: float = Field(
        1.0,
        ge=0.25,
        le=4.0,
        description="resize the frame by this factor before detection (> 1: smaller faces "
        "found, cost grows with the area)",
    )
    max_side: int | None = Field(
        None,
        ge=64,
        description="downscale so the longer side the network sees is at most this many "
        "pixels (after upscale; none: no cap)",
    )
    box: Literal["dlib", "model"] = Field(
        "dlib",
        description="dlib: mapped from YuNet's box and landmarks to dlib HOG's framing, "
        "which recognition and age/gender expect; model: YuNet's own (taller) box",
    )


def _import_yuface() -> Any:
    """``yuface``, imported with a passive OpenMP wait policy for its own ``libgomp``."""
    import sys

    if "yuface" in sys.modules:
        return sys.modules["yuface"]
    set_here = "OMP_WAIT_POLICY" not in os.environ
    if set_here:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        import yuface
    except ImportError as exc:  # the wheel exists for CPython 3.11 on x86-64 Linux only
        raise BackendError(
            "detector 'yunet' needs the 'yuface' package, which has wheels for CPython "
            f"3.11 on x86-64 Linux only ({exc}); choose another detector"
        ) from exc
    finally:
        if set_here:
            os.environ.pop("OMP_WAIT_POLICY", None)
    return yuface


def _omp_set_num_threads(module_file: str) -> Any:
    """``omp_set_num_threads`` of the OpenMP runtime the ``yuface`` wheel vendors (already
    loaded with it: ``dlopen`` of the same file returns the same library), or ``None``."""
    libs = Path(module_file).resolve().parent.parent / "yuface.libs"
    for path in sorted(libs.glob("libgomp*.so*")):
        try:
            return ctypes.CDLL(str(path)).omp_set_num_threads
        except (OSError, AttributeError):
            continue
    return None


class YunetDetector(Detector):
    """``yunet``: boxes, confidences (0.2-1.0, in steps of 0.01) and 5 landmarks (eyes,
    nose tip, mouth corners, in MTCNN's order)."""

    name = "yunet"
    Options = YunetOptions
    channel_order = "bgr"  # libfacedetection's network takes BGR, as OpenCV decodes

    # libfacedetection initialises its weights on the first call; calls are serialised
    # (the library makes no promise of thread safety)
    _lock = threading.Lock()

    @classmethod
    def installed(cls) -> bool:
        """Whether the ``yuface`` wheel is installed (CPython 3.11 on x86-64 Linux only)."""
        import importlib.util

        try:
            return importlib.util.find_spec("yuface") is not None
        except (ImportError, ValueError):
            return False

    def __init__(self, options: YunetOptions | None = None) -> None:
        super().__init__(options)
        import cv2

        yuface = _import_yuface()
        from yuface import yuface as extension

        self._cv2 = cv2
        native = NativeDetect.load(extension.__file__)
        if native is None:
            log.warning(
                "yunet: libfacedetection's %s not found next to %s; using the wheel's "
                "detect, which leaks 36 KB per call",
                SYMBOL,
                extension.__file__,
            )
        self._detect_bgr = native if native is not None else extension.detect
        self._set_threads = _omp_set_num_threads(yuface.__file__)
        self._map = box_map() if self.options.box == "dlib" else None

    def input_scale(self, width: int, height: int) -> float:
        return self.scale_for(width, height)

    def scale_for(self, width: int, height: int) -> float:
        """The factor the frame is resized by before the network sees it."""
        scale = self.options.upscale
        cap = self.options.max_side
        if cap is not None and max(width, height) * scale > cap:
            scale = cap / max(width, height)
        return scale

    def _detect(self, image: np.ndarray, min_size: int) -> list[Face]:
        h, w = image.shape[:2]
        if h == 0 or w == 0:
            return []
        cv2 = self._cv2
        scale = self.scale_for(w, h)
        if abs(scale - 1.0) > 1e-6:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = cv2.resize(image, size, interpolation=interp)
            sx, sy = size[0] / w, size[1] / h
        else:
            sx = sy = 1.0
        bgr = np.ascontiguousarray(image)  # channel_order: BGR as it came
        with self._lock:
            if self._set_threads is not None:
                self._set_threads(self.options.threads)
            rows = np.asarray(self._detect_bgr(bgr))
        if rows.size == 0:
            return []
        rows = rows.astype(np.float64)
        keep = rows[:, 0] >= round(self.options.min_score * 100)
        faces = []
        for row in rows[keep]:
            x, y, bw, bh = row[1:5]
            pts = row[5:15].reshape(5, 2)
            box = (x / sx, y / sy, bw / sx, bh / sy)
            landmarks = [(float(px / sx), float(py / sy)) for px, py in pts]
            if self._map is not None:
                box = self._map.apply(box, landmarks)
            faces.append(Face(box=box, score=row[0] / 100.0, landmarks=landmarks))
        return faces
