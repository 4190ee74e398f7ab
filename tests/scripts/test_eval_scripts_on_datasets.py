"""The evaluation scripts end to end on a handful of real files (``../shared/datasets``;
skipped when absent). Outputs go to temporary folders, never to docs/."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pipeline.datasets import REPO_ROOT, datasets_root

ROOT = datasets_root()
pytestmark = [pytest.mark.dataset, pytest.mark.slow]


def need(sub: str) -> Path:
    if ROOT is None or not (ROOT / sub).exists():
        pytest.skip(f"dataset {sub} absent")
    return ROOT / sub


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_eval_detectors_on_two_images(tmp_path, monkeypatch, capsys):
    need("wider-face-val-subset")
    mod = script("eval_detectors")
    monkeypatch.setattr(mod, "CACHE_DIR", tmp_path)
    assert (
        mod.main(["--detectors", "hog", "--limit", "2", "--timing-images", "0", "--no-docs"]) == 0
    )
    out = capsys.readouterr().out
    assert "Partial run: 2 of the 418 images." in out and "| `hog` | 2 |" in out


def test_eval_attributes_on_five_faces(tmp_path):
    need("utkface")
    mod = script("eval_attributes")
    out = tmp_path / "eval"
    args = ["--backends", "scratch", "--limit", "5", "--time-n", "1", "--out", str(out)]
    assert mod.main([*args, "--runs", str(tmp_path / "runs")]) == 0
    r = json.loads(out.with_suffix(".json").read_text())
    m = r["results"]["scratch"]
    assert r["meta"]["images"] == 5 and m["n"] == 5
    assert 0 <= m["age_mae"] < 40 and 0 <= m["gender_accuracy"] <= 1


def test_eval_tracking_on_one_clip(tmp_path, monkeypatch, capsys):
    need("youtube-faces-clips")
    mod = script("eval_tracking")
    monkeypatch.setattr(mod, "CACHE", tmp_path)
    assert mod.main(["--clips", "Aaron_Guiel", "--no-docs"]) == 0
    out = capsys.readouterr().out
    assert "### Aaron_Guiel (132 labelled frames" in out
    assert "| every frame | kalman |" in out


def test_verification_encoder_separates_one_genuine_from_one_impostor_pair():
    data = need("lfw-pairs-subset")
    from pipeline.evaluation.verification import VariantEncoder
    from pipeline.recognition import verify as V
    from pipeline.record import Face

    pairs = V.load_pairs(data / "pairs.tsv")
    genuine = next(p for p in pairs if p.same)
    impostor = next(p for p in pairs if not p.same)
    enc = VariantEncoder()
    pe = V.PairEncoder(encoder=object())

    def encode(key: str):
        img = V.load_rgb(data / "images" / key)
        h, w = img.shape[:2]
        face = V.central_face(pe.detect(img), w, h) or Face(box=V.fallback_box(w, h))
        return enc.encode(img, [face])[0]

    d_same = V.pair_distance(encode(genuine.a), encode(genuine.b))
    d_diff = V.pair_distance(encode(impostor.a), encode(impostor.b))
    assert d_same < d_diff


def test_encoder_engines_agree_on_lfw_pairs(capsys):
    need("lfw-pairs-subset")
    mod = script("eval_encoder_engines")
    assert mod.main(["--pairs", "4"]) == 0
    out = capsys.readouterr().out
    assert "pairs: largest |onnx - dlib|" in out
    worst = float(out.split("largest |onnx - dlib| ")[1].split(";")[0])
    assert worst < 1e-5
    assert "verdicts at 0.6 that differ: 0;" in out
