"""The small-face study's pieces on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.openset_small import (
    CONFIGS,
    evaluate_lfw_small,
    genuine_distances,
    markdown,
    render_small,
)
from pipeline.recognition.openset import OpenSetRule


def test_render_small_scales_the_image_so_the_face_has_the_height_asked():
    image = np.zeros((400, 300, 3), np.uint8)
    small, box = render_small(image, (100, 120, 80, 100), 25)
    assert small.shape[:2] == (100, 75)  # a quarter
    assert box == (25, 30, 20, 25)


def _sets():
    """4 people with 3 photos, 6 with one; the small set L is S moved towards the mean
    face (a blurred encoding sits between people)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 128)) * 0.1
    S, L = {}, {}
    for p in range(10):
        for i in range(3 if p < 4 else 1):
            k = f"P{p}/P{p}_{i + 1:04d}.jpg"
            S[k] = centres[p] + rng.normal(size=128) * 0.02
            L[k] = 0.3 * S[k] + rng.normal(size=128) * 0.01
    return S, L


def test_genuine_distances_take_the_nearer_template():
    S, L = _sets()
    one = genuine_distances(S, [S])
    both = genuine_distances(S, [S, L])
    assert len(one) == 8  # 4 people x 2 photos besides their first
    assert np.all(both <= one + 1e-12)


def test_every_configuration_and_size_is_measured():
    S, L = _sets()
    got = evaluate_lfw_small({"S": S, "L": L}, OpenSetRule(), [2, 3], draws=2)
    # every configuration whose sets are given (not the contrast-stretched one here)
    assert set(got) == {c for c, (p, gs) in CONFIGS.items() if {p, *gs} <= {"S", "L"}}
    assert "Lc->S" not in got
    for row in got.values():
        assert set(row["sizes"]) == {"2", "3"}
        for s in row["sizes"].values():
            assert 0.0 <= s["dir"] <= 1.0 and 0.0 <= s["fpir"] <= 1.0
    # sharp probes against the sharp gallery: distinct people 0.1 x sqrt(2 x 128) apart,
    # photos 0.02 x sqrt(2 x 128) from each other: everyone right, no stranger named
    assert got["S->S"]["sizes"]["2"] == {"dir": 1.0, "fpir": 0.0, "wrong_names": 0.0}
    # small probes are far from every sharp photo (unknown), near their own small
    # template: the multi-resolution gallery names them
    assert got["L->S"]["sizes"]["3"]["dir"] == 0.0
    assert got["L->S+L"]["sizes"]["3"]["dir"] == 1.0


def test_markdown_has_a_row_per_configuration_and_variant():
    lfw = {
        label: {
            "genuine_quantiles": {"10": 0.3, "50": 0.4, "90": 0.5},
            "sizes": {"2": {"dir": 0.9, "fpir": 0.01, "wrong_names": 0.005}},
        }
        for label in CONFIGS
    }
    d = {"alex-lacamoire": {"alex-lacamoire": 0.56, "lin-manuel-miranda": 0.66},
         "lin-manuel-miranda": {"alex-lacamoire": 0.69, "lin-manuel-miranda": 0.5}}  # fmt: skip
    ham = {"face_heights": {"alex-lacamoire": [26, 27], "lin-manuel-miranda": [42, 44]},
           "frames": [2, 3], "probe_variants": {"today": d},
           "enrolment_variants": {"today": d}}  # fmt: skip
    rec = {"command": "c", "date": "d", "machine": {"cpu": "x", "cores": 2,
           "loadavg_start": [1.0], "python": "3", "dlib": "20"}, "face_px": 26,
           "images": 10, "draws": 2, "lfw": lfw, "hamilton": ham}  # fmt: skip
    md = "\n".join(markdown(rec))
    assert md.count("| 90.0 % / 1.0 % / 0.5 % |") == len(CONFIGS)
    assert "Multi-resolution enrolment names no more strangers" in md
    assert "multi-resolution enrolment is not adopted" not in md
    # the contrast-stretched probes: no better here, so not adopted
    assert "no more strangers at 0 of 1 sizes; LFW's faces are well lit" in md
    lfw["L->S+L"]["sizes"]["2"] = {"dir": 0.95, "fpir": 0.03, "wrong_names": 0.03}
    lfw["Lc->S"]["sizes"]["2"] = {"dir": 0.95, "fpir": 0.01, "wrong_names": 0.01}
    md = "\n".join(markdown(rec))
    assert "1.0 % -> 3.0 % at N=2" in md and "multi-resolution enrolment is not adopted" in md
    assert "no more strangers at 1 of 1 sizes." in md
    assert "| probe: today | 0.560 / 0.660 | 0.500 / 0.690 |" in md
    assert "| enrolment: today |" in md and "alex-lacamoire 26-27 px" in md


@pytest.mark.parametrize("face_px", [13, 26])
def test_render_small_keeps_the_aspect(face_px):
    small, box = render_small(np.zeros((200, 200, 3), np.uint8), (50, 50, 52, 52), face_px)
    assert box[3] == face_px and abs(small.shape[0] - small.shape[1]) <= 1
