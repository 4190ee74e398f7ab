"""dlib's face-recognition ResNet read from its model file and run by onnxruntime.

The real model file (face_recognition_models); dlib's own implementation is the reference.
No dataset needed: scikit-image's astronaut() and LFW subset.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.recognition.dlib_onnx import DlibModelError, OnnxResNet, load_network
from pipeline.recognition.encoder import DlibEncoder, onnx_network
from pipeline.record import Face


@pytest.fixture(scope="module")
def model_path() -> str:
    import face_recognition_models as frm

    return frm.face_recognition_model_location()


@pytest.fixture(scope="module")
def dlib_net(model_path: str) -> object:
    import dlib

    return dlib.face_recognition_model_v1(model_path)


def test_the_file_holds_dlibs_29_layer_resnet(model_path: str) -> None:
    layers = load_network(model_path)
    kinds = [x.kind for x in layers]
    assert kinds[0] == "input" and layers[0].params["size"] == (150, 150)
    # dlib's channel means, as its input layer subtracts them
    assert np.allclose(layers[0].params["mean"], [122.782, 117.001, 104.298], atol=1e-3)
    assert kinds.count("conv") == 29 and kinds.count("affine") == 29
    assert kinds.count("add_prev") == 14 and kinds.count("avg_pool") == 5
    first = layers[1].params
    assert first["w"].shape == (32, 3, 7, 7) and first["stride"] == (2, 2)
    assert kinds[-1] == "fc" and layers[-1].params["w"].shape == (256, 128)


def test_encodings_are_dlibs_on_real_faces(dlib_net: object) -> None:
    """Aligned chips of 40 LFW faces and the astronaut: onnxruntime == dlib, to 1e-5."""
    import cv2
    from skimage import data

    net = onnx_network()
    faces = data.lfw_subset()[:40]  # 25x25 grey faces: upscaled to chip size
    chips = [
        cv2.resize(cv2.cvtColor((f * 255).astype(np.uint8), cv2.COLOR_GRAY2RGB), (150, 150))
        for f in faces
    ]
    chips.append(cv2.resize(data.astronaut()[0:220, 140:330], (150, 150)))
    batch = np.stack(chips)
    ours = net(batch)
    theirs = np.asarray([np.asarray(dlib_net.compute_face_descriptor(c)) for c in chips])
    assert ours.shape == (41, 128)
    assert np.abs(ours - theirs).max() < 1e-5
    # the batch gives what one chip at a time gives
    assert np.abs(net(batch[3]) - ours[3]).max() < 1e-6
    # and the faces are not all the same vector (the comparison above could not fail else)
    assert np.linalg.norm(ours[0] - ours[1]) > 0.1


JITTER_CHECK = """
import dlib, json, numpy as np
from skimage import data
from pipeline.recognition.encoder import DlibEncoder
from pipeline.record import Face
img = np.ascontiguousarray(data.astronaut())
r = min(dlib.get_frontal_face_detector()(img, 1), key=lambda r: r.top())
face = Face(box=(r.left(), r.top(), r.width(), r.height()))
engine = {engine!r}
print(json.dumps(DlibEncoder(num_jitters=5, engine=engine).encode(img, [face])[0].tolist()))
"""


def _jittered_in_a_fresh_process(engine: str) -> np.ndarray:
    """dlib draws its jitters from a process-wide generator: a fresh process starts it
    where dlib's own code starts it, whatever other tests drew before."""
    import subprocess
    import sys

    from pipeline.datasets import REPO_ROOT

    out = subprocess.run(
        [sys.executable, "-c", JITTER_CHECK.format(engine=engine)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, check=True,
    )  # fmt: skip
    return np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))


def test_jittered_encodings_are_dlibs() -> None:
    ours, theirs = _jittered_in_a_fresh_process("onnx"), _jittered_in_a_fresh_process("dlib")
    assert ours.shape == (128,)
    assert np.linalg.norm(ours - theirs) < 1e-4  # the same jitters, the same network
    import dlib
    from skimage import data

    img = np.ascontiguousarray(data.astronaut())
    r = min(dlib.get_frontal_face_detector()(img, 1), key=lambda r: r.top())
    plain = DlibEncoder().encode(img, [Face(box=(r.left(), r.top(), r.width(), r.height()))])[0]
    assert 1e-3 < np.linalg.norm(ours - plain) < 0.3  # jittering changed it, same face


def test_a_different_or_damaged_file_is_refused(tmp_path: Path, model_path: str) -> None:
    bad = tmp_path / "garbage.dat"
    bad.write_bytes(b"\x01\x01\x01\x0dloss_metric_2" + bytes(range(256)) * 10)
    with pytest.raises(DlibModelError):
        load_network(bad)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(Path(model_path).read_bytes()[: 5_000_000])  # the first third only
    with pytest.raises((DlibModelError, ValueError)):
        load_network(cut)
    with pytest.raises(DlibModelError):
        OnnxResNet(bad)


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="engine"):
        DlibEncoder(engine="tensorrt")  # type: ignore[arg-type]
