"""The video open-set evaluation's own steps on a synthetic store (the clips need the
datasets and minutes of pipeline; `scripts/eval_openset_video.py --help` is tested with
the other scripts)."""

import numpy as np
import pytest

from pipeline.evaluation.openset_video import (
    _brief,
    enrol_distractors,
    explain_events,
    markdown,
    store_url,
)
from pipeline.evaluation.tracking_pipeline import facepipe_env
from pipeline.record import Face, FrameRecord
from pipeline.store import EventStore


def test_distractors_go_to_the_runs_home_and_events_are_explained(tmp_path):
    env = facepipe_env(tmp_path, reid=True)
    rng = np.random.default_rng(0)
    people = {f"P{i}/P{i}_0001.jpg": rng.normal(size=128) * 0.1 for i in range(20)}
    assert enrol_distractors(tmp_path, env, people) == 20
    assert (tmp_path / "events.db").exists()
    store = EventStore(store_url(env))
    assert len({p["name"] for p in store.people()}) == 20
    face = people["P3/P3_0001.jpg"] + 0.01
    f = Face(box=(0, 0, 50, 50), track_id=4, quality=0.5, encoding=list(face))
    rec = FrameRecord(stream="cam", session="s", seq=1, ts=1.0, faces=[f])
    store.observe([rec])
    store.add_samples(rec, "identity")
    why = explain_events(env)["cam"][4]
    assert why["nearest"] == "P3" and why["best_quality"] == 0.5
    assert "P3 at" in why["why"] and why["threshold"] is not None
    assert (why["samples"], why["agreeing"]) == (1, 1)
    detail = {"track": 4, "label": "P3", "frames": 1, "shots": None, "wrong_name": None}
    run = {"events": 1, "captured": 1, "per_person": {"P3": 1}, "event_detail": [detail]}
    brief = _brief(run, 1.0, {4: why})
    assert brief["named_events"] == {"P3": 1} and brief["detail"][0]["nearest"] == "P3"
    clips = {"hamilton": {**brief, "wrong_names": None},
             "aaron": {**brief, "events_named": 0, "named_events": {}}}  # fmt: skip
    rec_ = {"command": "c", "date": "d", "git": "g", "loadavg_start": [0.0],
            "distractors": 20, "enrolled": ["P3"],
            "rules": {"r": {"gallery_people": 20, **clips}}}  # fmt: skip
    md = "\n".join(markdown(rec_))
    assert "r: P3 named; 0 wrong name(s) on the two clips, Aaron Guiel unknown." in md
    assert "samples nearest P3 alone: 1 of 1" in md


@pytest.mark.dataset
@pytest.mark.slow
def test_eval_openset_video_on_the_clips(tmp_path):
    """The whole evaluation, the default rule only and 20 LFW distractors (the docs' run
    has 500): no wrong name on either clip; skipped without the datasets."""
    import importlib.util
    import json

    from pipeline.datasets import REPO_ROOT, datasets_root

    root = datasets_root()
    for sub in ("lfw-pairs-subset", "video", "youtube-faces-clips"):
        if root is None or not (root / sub).exists():
            pytest.skip(f"dataset {sub} absent")
    spec = importlib.util.spec_from_file_location(
        "eval_openset_video", REPO_ROOT / "scripts" / "eval_openset_video.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rule = "open-set (default)"
    argv = ["--distractors", "20", "--rule", rule, "--runs", str(tmp_path), "--docs", str(tmp_path)]
    assert script.main(argv) == 0
    rec = json.loads((tmp_path / "openset" / "video.json").read_text())
    r = rec["rules"][rule]
    assert r["gallery_people"] == 22
    assert r["aaron"]["events_named"] == 0  # not enrolled: never named
    assert not sum((r["hamilton"]["wrong_names"] or {}).values())
    assert "## Video" in (tmp_path / "openset.md").read_text()


def test_the_vote_paragraph_names_strangers_whose_samples_all_agree():
    from pipeline.evaluation.openset_video import _vote_lines

    def ev(track, nearest, k, n, wrong=None):
        return {"track": track, "nearest": nearest, "agreeing": k, "samples": n,
                "wrong_name": wrong}  # fmt: skip

    ham = {"detail": [ev(1, "alex", 2, 5), ev(2, "Aretha", 5, 5), ev(3, "Colin", 2, 2),
                      ev(4, "Diana", 3, 5)]}  # fmt: skip
    aaron = {"detail": [ev(1, "Craig", 4, 4)]}
    rec = {"enrolled": ["alex"], "rules": {"r": {"hamilton": ham, "aaron": aaron}}}
    (blank, text) = _vote_lines(rec)
    assert "2 track(s)" in text
    assert "hamilton track 2 (Aretha, 5 of 5)" in text and "aaron track 1 (Craig, 4 of 4)" in text
    assert "Colin" not in text and "Diana" not in text  # too few samples; not unanimous
    assert "own tracks have hamilton track 1 (alex, 2 of 5)" in text
    ham["detail"] = ham["detail"][:1]
    rec["rules"]["r"]["aaron"] = {"detail": []}
    assert _vote_lines(rec) == []
