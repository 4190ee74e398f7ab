"""The `facepipe detect` command-line contract (JSON lines, error objects, folders)."""

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
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder: the astronaut (one face), a blank image in a sub-folder, a corrupt JPEG
    and a text file that is not an image."""
    root = tmp_path_factory.mktemp("imgs")
    bgr = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(root / "astronaut.jpg"), bgr)
    (root / "sub").mkdir()
    cv2.imwrite(str(root / "sub" / "blank.png"), np.full((120, 160, 3), 127, np.uint8))
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def run(*args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(main, ["detect", *args], env={"FACEPIPE_CONFIG": None})
    lines = [json.loads(ln) for ln in result.stdout.splitlines() if ln.startswith("{")]
    return result.exit_code, lines, result.output


def test_json_line_per_image_with_boxes_in_original_pixels(images: Path) -> None:
    code, lines, _ = run("--detector", "haar", "--json", str(images / "astronaut.jpg"))
    assert code == 0
    assert len(lines) == 1
    rec = lines[0]
    assert rec["image"] == str(images / "astronaut.jpg")
    assert set(rec) == {"image", "faces", "ms"} and rec["ms"] >= 0
    assert len(rec["faces"]) >= 1
    x, y, w, h = max(rec["faces"], key=lambda f: f["score"])["box"]
    assert 150 <= x <= 200 and 50 <= y <= 100 and 70 <= w <= 130 and 70 <= h <= 130


def test_corrupt_file_gives_an_error_object_and_the_run_goes_on(images: Path) -> None:
    code, lines, _ = run(
        "-d", "haar", "--json", str(images / "corrupt.jpg"), str(images / "astronaut.jpg")
    )
    assert code == 0
    assert [set(r) for r in lines] == [{"image", "error"}, {"image", "faces", "ms"}]
    assert lines[0]["image"] == str(images / "corrupt.jpg")
    assert "readable" in lines[0]["error"]


def test_folder_is_searched_recursively_for_images(images: Path) -> None:
    code, lines, _ = run("-d", "haar", "--json", str(images))
    assert code == 0
    names = sorted(Path(r["image"]).name for r in lines)
    assert names == ["astronaut.jpg", "blank.png", "corrupt.jpg"]  # not notes.txt
    blank = next(r for r in lines if r["image"].endswith("blank.png"))
    assert blank["faces"] == []


def test_min_size_and_options_are_applied(images: Path) -> None:
    img = str(images / "astronaut.jpg")
    _, lines, _ = run("-d", "haar", "--min-size", "200", "--json", img)
    assert lines[0]["faces"] == []
    _, lines, _ = run("-d", "blazeface", "-o", "model=short", "--json", img)
    assert len(lines[0]["faces"][0]["landmarks"]) == 6


def test_nothing_processable_is_a_failure(images: Path) -> None:
    code, lines, _ = run("-d", "haar", "--json", str(images / "corrupt.jpg"), "missing.png")
    assert code != 0
    assert [r["error"] for r in lines] == [lines[0]["error"], "image not found: missing.png"]


def test_unknown_detector_lists_the_available_ones(images: Path) -> None:
    code, lines, output = run("--detector", "nosuch", "--json", str(images))
    assert code != 0 and lines == []
    assert "nosuch" in output and "haar" in output and "blazeface" in output


def test_unknown_option_is_named(images: Path) -> None:
    code, _, output = run("-d", "haar", "-o", "colour=red", str(images / "astronaut.jpg"))
    assert code != 0 and "colour" in output


def test_table_output_without_json(images: Path) -> None:
    code, lines, output = run("-d", "haar", str(images))
    assert code == 0 and lines == []
    assert "astronaut.jpg: 1 face(s)" in output
    assert "corrupt.jpg: ERROR" in output


def test_auto_runs_the_backend_it_stands_for(images: Path) -> None:
    from pipeline.detectors import resolve

    code, lines, output = run("-d", "auto", "--json", str(images / "astronaut.jpg"))
    assert code == 0, output
    (rec,) = lines
    assert len(rec["faces"]) >= 1, f"{resolve('auto')} found no face"
    code, expected, _ = run("-d", resolve("auto"), "--json", str(images / "astronaut.jpg"))
    assert code == 0
    assert [f["box"] for f in rec["faces"]] == [f["box"] for f in expected[0]["faces"]]
