"""The tracking evaluation (pipeline.evaluation.tracking) on synthetic clips: the metrics by
hand, and the runs through the track stage's StreamTracker (no dataset, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import SamplingConfig, TrackerConfig
from pipeline.evaluation import tracking as ev


def clip(n: int, x0: float = 100, step: float = 2, size: int = 60) -> ev.Detections:
    """One face moving right ``step`` px per frame, detected in every frame."""
    return [
        [{"box": [x0 + step * i, 80, size, size], "score": 0.9, "encoding": [0.0] * 128}]
        for i in range(n)
    ]


def labels_of(frames: ev.Detections) -> list:
    return [(f"{i}.jpg", tuple(d[0]["box"])) for i, d in enumerate(frames)]


def test_score_counts_switches_and_coverage_by_hand():
    truth = [(f"{i}", (0, 0, 10, 10)) for i in range(5)]
    tracked = [
        {1: (0, 0, 10, 10)}, {1: (1, 0, 10, 10)}, {}, {2: (0, 0, 10, 10)}, {7: (50, 50, 5, 5)},
    ]  # fmt: skip
    s = ev.score(tracked, truth)
    assert s["id_switches"] == 1  # 1, 1, -, 2
    assert s["track_ids"] == 3 and s["false_track_ids"] == 1  # id 7 never on the face
    assert s["coverage"] == pytest.approx(3 / 5)
    assert s["main_id_coverage"] == pytest.approx(2 / 5)


def test_mean_scores_and_detector_only():
    rows = [
        {"id_switches": 0, "track_ids": 1, "false_track_ids": 0, "coverage": 1.0,
         "main_id_coverage": 1.0},
        {"id_switches": 2, "track_ids": 3, "false_track_ids": 1, "coverage": 0.5,
         "main_id_coverage": 0.25},
    ]  # fmt: skip
    m = ev.mean_scores(rows)
    assert (m["id_switches"], m["worst_coverage"]) == (1, 0.5)
    assert (m["max_id_switches"], m["runs"]) == (2, 2)
    frames = clip(4)
    assert ev.detector_only(frames, labels_of(frames), [True, False, True, True]) == 0.75


def test_regimes_cover_every_phase_and_seeded_drops():
    r = ev.regimes(6)
    names = [name for name, _, _ in r]
    assert names.count("every frame") == 1
    assert names.count("every 2nd frame") == 2 and names.count("every 3rd frame") == 3
    phases = [run_on for name, run_on, _ in r if name == "every 3rd frame"]
    assert phases[0] == [True, False, False, True, False, False]  # the capture's schedule
    assert sum(phases[k][i] for k in range(3) for i in range(6)) == 6
    drops = [d for name, _, d in r if d is not None]
    assert len(drops) == 5 and drops == [d for _, _, d in ev.regimes(6) if d is not None]


def test_run_stream_reports_confirmed_tracks_like_the_stage():
    frames = clip(10)
    run = ev.run_stream(frames, TrackerConfig(min_hits=3), SamplingConfig())
    # a track is reported from its third hit on (min_hits), always with one id
    assert [len(b) for b in run.boxes] == [0, 0] + [1] * 8
    assert {tid for b in run.boxes for tid in b} == {1}
    s = ev.score(run.boxes, labels_of(frames))
    assert s["coverage"] == pytest.approx(0.8) and s["id_switches"] == 0
    # the first sample at confirmation, then one per window of 5 frames
    assert run.samples >= 2


def test_skipped_frames_report_the_prediction():
    frames = clip(12)
    run_on = [i % 3 == 0 for i in range(12)]
    run = ev.run_stream(frames, TrackerConfig(min_hits=2), SamplingConfig(), run_on=run_on)
    # confirmed at frame 3 (second detection run); frames 4, 5 are predicted, near the truth
    assert run.boxes[3] and run.boxes[4] and run.boxes[5]
    assert ev.iou(run.boxes[5][1], frames[5][0]["box"]) > 0.8
    assert run.faces[4] == []  # no detected face on a skipped frame


def test_a_shot_cut_ends_every_track():
    frames = clip(12)
    run = ev.run_stream(frames, TrackerConfig(min_hits=1), SamplingConfig(), cuts=[6])
    before = {t for b in run.boxes[:6] for t in b}
    after = {t for b in run.boxes[6:] for t in b}
    assert before and after and not before & after
    assert ev.tracks_across_cuts(run, [6]) == 0
    no_cut = ev.run_stream(frames, TrackerConfig(min_hits=1), SamplingConfig())
    assert ev.tracks_across_cuts(no_cut, [6]) == 1


def test_observed_encodings_merge_a_track_that_comes_back():
    # the face is seen, disappears for 10 frames, comes back elsewhere with the same encoding
    enc = list(np.linspace(-0.1, 0.1, 128))
    frames: ev.Detections = []
    for i in range(30):
        if 10 <= i < 20:
            frames.append([])
            continue
        x = 100 if i < 10 else 400
        frames.append([{"box": [x, 80, 60, 60], "score": 0.9, "encoding": enc, "quality": 0.8}])
    cfg = TrackerConfig(min_hits=2, max_missed=5)
    plain = ev.run_stream(frames, cfg, SamplingConfig(), encodings="none")
    assert len({t for b in plain.boxes for t in b}) == 2
    reid = ev.run_stream(frames, cfg, SamplingConfig(), encodings="observe")
    assert reid.merges == 1
    assert len({t for b in reid.boxes for t in b}) == 1
    # below the stage's minimum quality the encodings are not used
    low = ev.run_stream(frames, cfg, SamplingConfig(), encodings="observe", min_quality=0.9)
    assert low.merges == 0


def test_name_faces_and_people_per_track():
    def row(a: list[float], b: list[float]) -> list[dict]:
        return [{"box": [0, 0, 10, 10], "encoding": a}, {"box": [50, 0, 10, 10], "encoding": b}]

    frames = [row([0.0, 0.0], [1.0, 0.0]), row([0.1, 0.0], [5.0, 5.0])]
    labels = ev.name_faces(frames, [[0.0, 0.0], [1.0, 0.1]], ["ann", "bob"])
    assert labels == [["ann", "bob"], ["ann", None]]
    run = ev.StreamRun(boxes=[{}, {}], faces=[[(0, 1), (1, 2)], [(0, 2), (1, 3)]])
    p = ev.people_per_track(run, labels, ["ann", "bob"])
    # track 1: ann; track 2: bob then ann (mixed, 1 minority face); track 3: unnamed
    assert p["tracks"] == 3
    # a tie goes to the label seen first (bob on track 2)
    assert p["tracks_per_person"] == {"ann": 1, "bob": 1}
    assert p["unnamed_tracks"] == 1 and p["mixed_tracks"] == 1
    assert p["minority_faces_in_mixed"] == 1


def test_shot_cuts_use_the_capture_detector():
    grey = np.full((120, 320, 3), 128, np.uint8)
    red = np.zeros((120, 320, 3), np.uint8)
    red[..., 2] = 255
    assert ev.shot_cuts([grey, grey, red, red, grey], 0.4) == [2, 4]
    assert ev.shot_cuts([grey, red], None) == []


def test_synthetic_speed_reports_every_tracker():
    out = ev.synthetic_speed(TrackerConfig(), SamplingConfig(), n_faces=2, n_frames=20)
    for k in ("iou", "kalman", "kalman+appearance", "kalman, with JSON round trip"):
        assert out[k]["tracks"] == 2 and out[k]["median_us"] > 0
