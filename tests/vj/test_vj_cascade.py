"""Cascade logic: stage thresholds, early rejection, scan/crop consistency, file format."""

import json

import numpy as np
import pytest

from pipeline.vj.cascade import Cascade, Stage
from pipeline.vj.features import HaarFeatures
from pipeline.vj.scan import level_windows
from training.vj.train import train_stage


@pytest.fixture(scope="module")
def small_cascade(lfw_subset) -> tuple[Cascade, np.ndarray, np.ndarray]:
    faces, non = lfw_subset
    pos, neg = faces[:80], non[:80]
    rng = np.random.default_rng(0)
    feats = HaarFeatures.sample(25, 2000, rng)
    cascade = Cascade(25)
    for _ in range(3):
        p = pos[cascade.classify(pos)[0]] if cascade.stages else pos
        n = neg[cascade.classify(neg)[0]] if cascade.stages else neg
        stage, _ = train_stage(p, n, feats, hit_target=0.97, fa_target=0.7, max_stumps=1)
        cascade.stages.append(stage)
    return cascade, pos, neg


def test_stage_threshold_meets_the_detection_target(lfw_subset) -> None:
    faces, non = lfw_subset
    feats = HaarFeatures.sample(25, 1500, np.random.default_rng(1))
    for target in (0.9, 0.97, 1.0):
        stage, info = train_stage(faces[:80], non[:80], feats, hit_target=target, max_stumps=4)
        passed, _ = Cascade(25, [stage]).classify(faces[:80])
        assert passed.mean() >= target
        assert info["hit"] == pytest.approx(passed.mean())


def test_stage_stops_when_false_alarm_target_is_met(lfw_subset) -> None:
    faces, non = lfw_subset
    feats = HaarFeatures.sample(25, 1500, np.random.default_rng(2))
    stage, info = train_stage(
        faces[:80], non[:80], feats, hit_target=0.95, fa_target=0.3, max_stumps=40
    )
    assert info["false_alarms"] <= 0.3 and len(stage) < 40
    passed, _ = Cascade(25, [stage]).classify(non[:80])
    assert passed.mean() == pytest.approx(info["false_alarms"])


def test_rejected_windows_are_never_evaluated_again(small_cascade, monkeypatch) -> None:
    cascade, pos, neg = small_cascade
    seen: list[tuple[int, set[int], set[int]]] = []
    original = Stage.window_votes

    def spy(self, ii_flat, ii_width, bases, inv_std):
        votes = original(self, ii_flat, ii_width, bases, inv_std)
        seen.append(
            (
                next(i for i, st in enumerate(cascade.stages) if st is self),
                set(bases[votes >= self.threshold].tolist()),
                set(bases.tolist()),
            )
        )
        return votes

    monkeypatch.setattr(Stage, "window_votes", spy)
    passed, depth = cascade.classify(np.concatenate([pos, neg]))
    assert [s[0] for s in seen] == [0, 1, 2]
    for (_, passed_k, _), (_, _, evaluated_next) in zip(seen, seen[1:], strict=False):
        assert evaluated_next == passed_k  # exactly the survivors, nothing rejected earlier
    assert len(seen[0][2]) == len(pos) + len(neg)
    assert (depth[passed] == 3).all() and (depth[~passed] < 3).all()


def test_scan_windows_agree_with_cropped_patches(small_cascade) -> None:
    cascade, _, _ = small_cascade
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(60, 70)).astype(np.uint8)
    img[10:40, 20:50] = np.linspace(0, 255, 30)[None, :].astype(np.uint8)
    ii, bases, inv, width, pos, grid = level_windows(img, 25, step=3, offset=(1, 2))
    depth, margin = cascade.evaluate_windows(ii, width, bases, inv)
    patches = np.stack([img[y : y + 25, x : x + 25] for x, y in pos])
    _, depth_crops = cascade.classify(patches)
    np.testing.assert_array_equal(depth, depth_crops)
    # the strided-view path over the whole grid gives the same answers
    depth_grid, margin_grid = cascade.evaluate_windows(ii, width, bases, inv, grid=grid)
    np.testing.assert_array_equal(depth_grid, depth)
    np.testing.assert_allclose(margin_grid, margin)


def test_json_round_trip(small_cascade, tmp_path) -> None:
    cascade, pos, neg = small_cascade
    cascade.meta = {"note": "test"}
    path = tmp_path / "c.json"
    cascade.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "facepipe-viola-jones-cascade" and len(data["stages"]) == 3
    again = Cascade.load(path)
    both = np.concatenate([pos, neg])
    np.testing.assert_array_equal(again.classify(both)[1], cascade.classify(both)[1])
    assert again.meta == {"note": "test"} and again.n_features == cascade.n_features


def test_bad_cascade_files_give_clear_errors(tmp_path) -> None:
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Cascade.load(p)
    p.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a facepipe"):
        Cascade.load(p)
