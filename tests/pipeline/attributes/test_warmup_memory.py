"""The attributes worker's warm-up does not load the face encoder network it never uses.

In the pipeline the attributes stage gets every face with the recognize stage's encoding,
so the ``transfer`` heads (alone or in the default ``ensemble``) never encode a face; the
encoder network (~100 MiB while it is built) is built on first use only. Checked in a fresh
interpreter, where nothing else has built it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.datasets import REPO_ROOT

CHECK = """
import numpy as np
from pipeline.attributes import registry
from pipeline.recognition import encoder
from pipeline.record import Face
est = registry.create({backend!r}, None)
est.warmup()
print("after warmup:", encoder._onnx_net is not None)
face = Face(box=(8, 8, 48, 48))
est.estimate(np.zeros((64, 64, 3), np.uint8), [face])  # no encoding: it must encode
print("after a face without encoding:", encoder._onnx_net is not None)
"""


@pytest.mark.parametrize("backend", ["transfer", "ensemble"])
def test_warmup_leaves_the_encoder_unbuilt_until_a_face_needs_it(backend: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(backend=backend)],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "after warmup: False" in out.stdout
    assert "after a face without encoding: True" in out.stdout
