"""The ``yunet`` backend (libfacedetection's YuNet via the ``yuface`` wheel)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from pipeline.detectors import registry
from pipeline.detectors.yunet import YunetDetector, box_map
from pipeline.evaluation import iou_matrix
from pipeline.recognition.quality import detector_frontal_factor
from pipeline.record import Face
from pipeline.registry import BackendError
from tests.helpers import Refuse as _Refuse

REPO = Path(__file__).resolve().parents[3]

# Eileen Collins' face in skimage.data.astronaut() (512 x 512): x 160-270, y 60-190
EXPECTED = np.array([[160, 60, 110, 130]])

_cache: dict[str, YunetDetector] = {}


def make(**options: object) -> YunetDetector:
    key = repr(sorted(options.items()))
    if key not in _cache:
        det = registry.create("yunet", options)
        assert isinstance(det, YunetDetector)
        _cache[key] = det
    return _cache[key]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def best(faces: list[Face]) -> Face:
    assert faces, "no face found"
    return max(faces, key=lambda f: f.score)


def inside(faces: list[Face], width: int, height: int) -> bool:
    return all(
        f.box[0] >= 0 and f.box[1] >= 0 and f.box[0] + f.box[2] <= width
        and f.box[1] + f.box[3] <= height and f.box[2] > 0 and f.box[3] > 0
        for f in faces
    )  # fmt: skip


def test_registry_lists_yunet() -> None:
    assert "yunet" in registry.names()


def test_finds_the_astronaut_with_five_landmarks(astronaut: np.ndarray) -> None:
    faces = make().detect(astronaut)
    face = best(faces)
    assert iou_matrix(np.array([face.box]), EXPECTED)[0, 0] >= 0.5, face.box
    assert 0.5 <= face.score <= 1.0
    assert inside(faces, 512, 512)
    assert face.landmarks is not None and len(face.landmarks) == 5
    pts = np.array(face.landmarks)
    x, y, w, h = face.box
    assert (pts[:, 0] > x).all() and (pts[:, 0] < x + w).all()
    assert (pts[:, 1] > y).all() and (pts[:, 1] < y + h).all()


def test_landmarks_follow_mtcnns_order(astronaut: np.ndarray) -> None:
    """Eye, eye, nose, mouth corner, mouth corner; each pair left to right in the image
    (as MTCNN's left_eye, right_eye, nose, mouth_left, mouth_right), so the track stage's
    frontal-pose factor (eyes = the first two points, nose = the third) works."""
    for image in (astronaut, np.ascontiguousarray(astronaut[:, ::-1])):
        (le, re, nose, ml, mr) = np.array(best(make().detect(image)).landmarks)
        assert le[0] < re[0] and ml[0] < mr[0]
        assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])
        assert le[0] < nose[0] < re[0]
    assert detector_frontal_factor(best(make().detect(astronaut)).landmarks) > 0.6


def test_rgb_input_is_converted_to_bgr(astronaut: np.ndarray) -> None:
    """The frame is RGB, the library wants BGR: the face is the one the library finds in
    the BGR image (with red and blue swapped, the score and landmarks differ)."""
    from yuface.yuface import detect

    rows = detect(np.ascontiguousarray(astronaut[:, :, ::-1]))
    row = rows[np.argmax(rows[:, 0])]
    face = best(make(box="model").detect(astronaut))
    assert face.box == tuple(int(v) for v in row[1:5])
    assert face.score == pytest.approx(row[0] / 100.0)
    assert np.array(face.landmarks).ravel().tolist() == [float(v) for v in row[5:15]]
    swapped = best(make(box="model").detect(np.ascontiguousarray(astronaut[:, :, ::-1])))
    assert (swapped.score, swapped.landmarks) != (face.score, face.landmarks)


def _rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_the_library_is_called_without_the_wheels_leaking_wrapper(astronaut: np.ndarray) -> None:
    """The wheel's ``yuface.yuface.detect`` leaks its 36 KB result buffer on every call
    (a detect worker grew by ~30 MB a minute in a soak); the detector calls
    libfacedetection itself with one buffer, and gets the wheel's rows (columns 0-14: the
    16th is unused and left uninitialised by the wheel)."""
    from yuface.yuface import detect as wheel

    from pipeline.detectors.yunet import NativeDetect

    det = make()
    assert isinstance(det._detect_bgr, NativeDetect)
    canvas = np.zeros((700, 900, 3), dtype=np.uint8)
    canvas[150:662, 300:812] = astronaut
    crowd = np.ascontiguousarray(np.tile(astronaut[::2, ::2], (2, 3, 1)))  # six faces
    for rgb in (astronaut, canvas, crowd, np.zeros((120, 160, 3), np.uint8)):
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        ours, theirs = det._detect_bgr(bgr), np.asarray(wheel(bgr))
        assert ours.shape == theirs.shape and ours.dtype == np.int16
        assert np.array_equal(ours[:, :15], theirs[:, :15])
    assert len(det._detect_bgr(np.ascontiguousarray(crowd[:, :, ::-1]))) >= 6
    # a strided view is copied, not read past its rows
    view = np.ascontiguousarray(canvas[:, :, ::-1])[100:, 200:]
    assert np.array_equal(
        det._detect_bgr(view)[:, :15], np.asarray(wheel(np.ascontiguousarray(view)))[:, :15]
    )
    with pytest.raises(ValueError, match="BGR uint8"):
        det._detect_bgr(np.zeros((10, 10), np.uint8))


def test_detecting_does_not_grow_memory() -> None:
    """1,500 calls: the wheel's wrapper would keep ~53 MB of result buffers."""
    det = make()
    image = np.zeros((96, 128, 3), np.uint8)
    for _ in range(50):
        det.detect(image)
    before = _rss_mib()
    for _ in range(1500):
        det.detect(image)
    assert _rss_mib() - before < 10


def test_offset_frame_gives_offset_boxes(astronaut: np.ndarray) -> None:
    canvas = np.zeros((700, 900, 3), dtype=np.uint8)
    canvas[150:662, 300:812] = astronaut
    plain = best(make().detect(astronaut))
    moved = best(make().detect(canvas))
    x, y, w, h = plain.box
    assert np.allclose(moved.box, (x + 300, y + 150, w, h), atol=4), (moved.box, plain.box)
    assert inside(make().detect(canvas), 900, 700)


@pytest.mark.parametrize("options", [{"upscale": 2.0}, {"max_side": 300}, {"upscale": 0.6}])
def test_scaled_input_gives_boxes_in_frame_pixels(astronaut: np.ndarray, options: dict) -> None:
    det = make(**options)
    assert det.scale_for(512, 512) != 1.0
    plain = best(make().detect(astronaut))
    scaled = best(det.detect(astronaut))
    assert iou_matrix(np.array([scaled.box]), np.array([plain.box]))[0, 0] >= 0.75
    assert np.abs(np.array(scaled.landmarks) - np.array(plain.landmarks)).max() < 10
    assert inside(det.detect(astronaut), 512, 512)


def test_scale_for_caps_the_longer_side() -> None:
    assert make().scale_for(640, 360) == 1.0
    assert make(max_side=320).scale_for(640, 360) == pytest.approx(0.5)
    assert make(max_side=320).scale_for(200, 100) == 1.0  # never enlarged by the cap
    assert make(upscale=2.0, max_side=800).scale_for(640, 360) == pytest.approx(1.25)
    assert make(upscale=2.0).scale_for(640, 360) == 2.0


def test_boxes_are_clipped_to_the_frame(astronaut: np.ndarray) -> None:
    """A face cut by the left edge: the model's box reaches past it, the detector's not."""
    cut = np.ascontiguousarray(astronaut[:, 200:])
    raw = make().unclipped(cut)
    assert raw and min(f.box[0] for f in raw) < 0  # the model's own box sticks out
    faces = make().detect(cut)
    assert faces and inside(faces, cut.shape[1], cut.shape[0])


def test_min_score_and_min_size_filter(astronaut: np.ndarray) -> None:
    score = best(make().detect(astronaut)).score
    assert make(min_score=min(0.99, round(score + 0.01, 2))).detect(astronaut) == []
    assert make(min_score=0.2).detect(astronaut)
    height = best(make().detect(astronaut)).box[3]
    assert make().detect(astronaut, min_size=height)
    assert make().detect(astronaut, min_size=height + 1) == []


def test_threads_are_set_and_do_not_change_the_result(astronaut: np.ndarray) -> None:
    one, two = make(threads=1), make(threads=2)
    assert one._set_threads is not None  # the wheel's OpenMP runtime was found
    a, b = best(one.detect(astronaut)), best(two.detect(astronaut))
    assert (a.box, a.score, a.landmarks) == (b.box, b.score, b.landmarks)


def test_blank_and_tiny_images_give_no_faces() -> None:
    det = make()
    assert det.detect(np.zeros((240, 320, 3), dtype=np.uint8)) == []
    assert det.detect(np.zeros((8, 8, 3), dtype=np.uint8)) == []
    assert det.detect(np.zeros((0, 10, 3), dtype=np.uint8)) == []


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"min_scor": 0.3}, "detector.options.min_scor: unknown option"),
        ({"min_score": 0.1}, "detector.options.min_score"),
        ({"threads": 0}, "detector.options.threads"),
        ({"upscale": 10}, "detector.options.upscale"),
        ({"max_side": 10}, "detector.options.max_side"),
        ({"box": "square"}, "detector.options.box"),
    ],
)
def test_bad_options_are_named(options: dict, key: str) -> None:
    with pytest.raises(BackendError, match=key):
        registry.create("yunet", options)


def test_defaults() -> None:
    o = registry.options("yunet")
    assert (o.min_score, o.threads, o.upscale, o.max_side, o.box) == (0.75, 1, 1.0, None, "dlib")


def test_the_shipped_box_map_loads_and_names_its_data() -> None:
    m = box_map()
    assert m.coef.shape == (12, 4)
    assert set(m.source["sources"]) == {"wider", "utkface", "crowd"}  # LFW held out
    assert "lfw" in m.source["held_out_iou_with_dlib"]


def test_dlib_boxes_are_the_mapped_model_boxes(astronaut: np.ndarray) -> None:
    """box="dlib" = the model's box mapped (before clipping) by the shipped map; same
    scores and landmarks; the mapped box is squarer than YuNet's tall one."""
    dl, own = make(), make(box="model")
    raw = own.unclipped(astronaut)
    mapped = dl.unclipped(astronaut)
    assert len(raw) == len(mapped)
    for r, m in zip(raw, mapped, strict=True):
        assert (r.score, r.landmarks) == (m.score, m.landmarks)
        expected = Face(box=box_map().apply(r.box, r.landmarks)).box
        assert m.box == expected
    r, m = best(raw), best(mapped)
    assert abs(m.box[2] / m.box[3] - 1) < abs(r.box[2] / r.box[3] - 1)
    assert inside(dl.detect(astronaut), 512, 512)


def test_dlib_boxes_frame_the_face_as_hog_does_for_the_encoder(astronaut: np.ndarray) -> None:
    """What the map is for: dlib HOG's box of the astronaut (the framing of enrolment and
    of the 5-point landmark model) overlaps the mapped box more than YuNet's own, and the
    128-d encoding made in the mapped box is nearer the one made in HOG's box."""
    import dlib

    from pipeline.recognition.encoder import DlibEncoder

    hog = [
        (r.left(), r.top(), r.width(), r.height())
        for r in dlib.get_frontal_face_detector()(astronaut, 1)
    ]
    ref = max(hog, key=lambda b: iou_matrix(np.array([b]), EXPECTED)[0, 0])
    mapped, own = best(make().detect(astronaut)), best(make(box="model").detect(astronaut))

    def iou(box: tuple) -> float:
        return float(iou_matrix(np.array([box]), np.array([ref]))[0, 0])

    assert iou(mapped.box) > iou(own.box)
    enc = DlibEncoder()
    target = enc.encode(astronaut, [Face(box=ref)])[0]
    d_mapped = np.linalg.norm(enc.encode(astronaut, [mapped])[0] - target)
    d_own = np.linalg.norm(enc.encode(astronaut, [own])[0] - target)
    assert d_mapped < d_own, (d_mapped, d_own)


def test_openmp_waits_passively_without_changing_the_environment() -> None:
    """The wheel's libgomp is loaded with OMP_WAIT_POLICY=PASSIVE, i.e. no spinning (it
    prints its settings at load with OMP_DISPLAY_ENV=verbose; unset, the policy also reads
    'PASSIVE' but threads spin 300000 times), and the variable is gone again afterwards."""
    code = (
        "import os\n"
        "from pipeline.detectors import registry\n"
        "registry.create('yunet')\n"
        "print('after:', os.environ.get('OMP_WAIT_POLICY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(OMP_DISPLAY_ENV="verbose", PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert "GOMP_SPINCOUNT = '0'" in out.stderr, out.stderr
    assert "after: None" in out.stdout


def test_a_missing_yuface_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """yuface has wheels for CPython 3.11 on x86-64 Linux only (a conditional dependency):
    elsewhere choosing the backend says why instead of an ImportError."""
    from pipeline.detectors import yunet

    monkeypatch.delitem(sys.modules, "yuface", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Refuse("yuface"), *sys.meta_path])
    with pytest.raises(BackendError, match="yuface"):
        yunet._import_yuface()
