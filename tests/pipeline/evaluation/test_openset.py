"""Open-set identification metrics on synthetic encodings with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluation.openset import (
    Draw,
    decide,
    dir_at_fpir,
    draw,
    evaluate_draw,
    pair_rule,
    people_of,
    rank1,
    summarise,
)

# 4 people with 2+ images, 3 with one
KEYS = [
    "A/A_0002.jpg", "A/A_0001.jpg", "B/B_0001.jpg", "B/B_0002.jpg", "B/B_0003.jpg",
    "C/C_0001.jpg", "C/C_0002.jpg", "D/D_0001.jpg", "D/D_0002.jpg",
    "S/S_0001.jpg", "T/T_0001.jpg", "U/U_0001.jpg",
]  # fmt: skip


def test_people_sorted_by_file_name():
    people = people_of(KEYS)
    assert people["A"] == ["A/A_0001.jpg", "A/A_0002.jpg"]
    assert len(people) == 7


def test_draw_without_padding_enrols_half_the_multi_image_people():
    people = people_of(KEYS)
    d = draw(people, 2, np.random.default_rng(0))
    assert (d.mated_people, d.distractors, len(d.gallery)) == (2, 0, 2)
    enrolled = {k.split("/")[0] for k in d.gallery}
    assert enrolled <= {"A", "B", "C", "D"}
    # the gallery photo is the first image; the others are mated probes
    assert all(k.endswith("_0001.jpg") for k in d.gallery)
    assert sorted(d.mated) == sorted(k for p in enrolled for k in people[p][1:])
    # everyone else, singles included, is a non-mated probe with every image
    assert sorted(d.non_mated) == sorted(k for p in people if p not in enrolled for k in people[p])
    assert len(d.gallery) + len(d.mated) + len(d.non_mated) == len(KEYS)


def test_draw_pads_with_single_image_people_and_is_seeded():
    people = people_of(KEYS)
    d = draw(people, 4, np.random.default_rng(3))
    assert (d.mated_people, d.distractors) == (2, 2)
    pad = {k.split("/")[0] for k in d.gallery[2:]}
    assert pad <= {"S", "T", "U"} and len(pad) == 2
    # distractors are never probed; the one single left over is a non-mated probe
    assert not pad & {k.split("/")[0] for k in d.mated + d.non_mated}
    assert len([k for k in d.non_mated if k[0] in "STU"]) == 1
    assert d == draw(people, 4, np.random.default_rng(3))
    with pytest.raises(ValueError, match="gallery of 6"):
        draw(people, 6, np.random.default_rng(0))  # 2 mated + 4 singles > 3


def test_rank1_and_dir_at_fpir_by_hand():
    idx, dist = rank1(np.array([[0.0, 0.9], [3.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert idx.tolist() == [0, 1] and dist == pytest.approx([0.9, 2.0])
    correct = np.array([True, True, False])
    mated = np.array([0.2, 0.45, 0.1])
    non = np.array([0.9, 0.3, 0.7, 0.5])
    # FPIR 25 %: 1 of 4 non-mated may pass -> threshold just below 0.5: 0.2 and 0.45 pass
    rate, t = dir_at_fpir(correct, mated, non, 0.25)
    assert rate == pytest.approx(2 / 3) and 0.45 < t < 0.5
    # FPIR 0: none may pass -> just below 0.3: only 0.2 (the 0.1 is the wrong person)
    rate, t = dir_at_fpir(correct, mated, non, 0.0)
    assert rate == pytest.approx(1 / 3) and 0.2 < t < 0.3


# gallery A at (0, 0), B at (1, 0); threshold 0.6
GALLERY = {"A/A_0001.jpg": np.array([0.0, 0.0]), "B/B_0001.jpg": np.array([1.0, 0.0])}
PROBES = {
    "A/A_0002.jpg": np.array([0.1, 0.0]),  # A at 0.1: right
    "B/B_0002.jpg": np.array([0.45, 0.0]),  # A at 0.45 < B at 0.55: named A, wrong
    "C/C_0001.jpg": np.array([0.0, 0.5]),  # not enrolled, A at 0.5: named, wrong
    "D/D_0001.jpg": np.array([5.0, 5.0]),  # not enrolled, far: unknown
}
DRAW = Draw(
    gallery=["A/A_0001.jpg", "B/B_0001.jpg"],
    mated=["A/A_0002.jpg", "B/B_0002.jpg"],
    non_mated=["C/C_0001.jpg", "D/D_0001.jpg"],
    mated_people=2,
    distractors=0,
)


def test_product_rule_counts_wrong_names():
    dec, mated, non = decide(DRAW, GALLERY, PROBES, pair_rule(0.6))
    assert mated == ["A", "A"] and non == ["A", None]
    assert (dec.mated_right, dec.mated_wrong, dec.non_mated_named) == (1, 1, 1)
    assert (dec.wrong_names, dec.probes) == (2, 4)
    # a stricter threshold (0.3): B_0002 and C_0001 become unknown, no wrong name
    dec, mated, non = decide(DRAW, GALLERY, PROBES, pair_rule(0.3))
    assert mated == ["A", None] and non == [None, None] and dec.wrong_names == 0


def test_evaluate_draw_and_summary():
    row = evaluate_draw(DRAW, GALLERY, PROBES, pair_rule(0.6), fpirs=(0.0, 0.5))
    assert row["rank1"] == 0.5
    assert row["fpir_default"] == 0.5 and row["mated_wrong_rate"] == 0.5
    assert row["dir_default"] == 0.5 and row["wrong_name_rate"] == 0.5
    # non-mated best distances 0.5 and ~7.07; FPIR 0 -> below 0.5: A_0002 (0.1) accepted
    assert row["dir_at_fpir"]["0"]["dir"] == 0.5
    # FPIR 50 %: one may pass -> just below 7.07; still only the correct rank-1 counts
    assert row["dir_at_fpir"]["0.5"]["dir"] == 0.5
    other = {**row, "wrong_name_rate": 0.0}
    s = summarise([row, other])
    assert s["wrong_name_rate"] == {"mean": 0.25, "min": 0.0, "max": 0.5}
    assert s["draws"] == 2 and s["gallery"] == 2


def test_false_matches_by_group_by_hand():
    from pipeline.evaluation.openset import false_matches_by_group

    # x: 0, 0.5, 3 (group a), 0.4 (group b); threshold 0.6
    enc = np.array([[0.0], [0.5], [3.0], [0.4]])
    out = false_matches_by_group(enc, ["a", "a", "a", "b"], 0.6)
    # within a: pairs (0,.5) match, (0,3) and (.5,3) do not -> 1 of 3
    assert out["a"] == {"pairs": 3, "matches": 1, "fmr": pytest.approx(1 / 3)}
    # across a|b: 0-0.4 (0.4) and 0.5-0.4 (0.1) match, 3-0.4 does not -> 2 of 3
    assert out["a|b"] == {"pairs": 3, "matches": 2, "fmr": pytest.approx(2 / 3)}
    assert out["b"] == {"pairs": 0, "matches": 0, "fmr": pytest.approx(float("nan"), nan_ok=True)}


# ----- the script on a handful of real images (../shared/datasets; skipped when absent) ----


def _script():
    import importlib.util

    from pipeline.datasets import REPO_ROOT

    spec = importlib.util.spec_from_file_location(
        "eval_openset", REPO_ROOT / "scripts" / "eval_openset.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _need(sub: str):
    from pipeline.datasets import datasets_root

    root = datasets_root()
    if root is None or not (root / sub).exists():
        pytest.skip(f"dataset {sub} absent")


@pytest.mark.dataset
@pytest.mark.slow
def test_eval_openset_lfw_on_a_few_people(tmp_path):
    import json

    _need("lfw-pairs-subset")
    argv = ["--people", "4", "--sizes", "2", "4", "--draws", "2", "--gallery-jitters", "1"]
    assert _script().main([*argv, "--runs", str(tmp_path / "runs"), "--docs", str(tmp_path)]) == 0
    rec = json.loads((tmp_path / "openset" / "lfw-gallery-jitter1-people4.json").read_text())
    r = rec["results"]
    assert (r["people_2plus"], r["people_single"], r["max_mated_people"]) == (4, 4, 2)
    big = r["sizes"]["4"]
    assert (big["mated_people"], big["distractors"], big["draws"]) == (2, 2, 2)
    # same-person photos of LFW: the nearest of 2-4 enrolled people is nearly always right
    assert big["rank1"]["mean"] >= 0.5
    md = (tmp_path / "openset.md").read_text()
    assert "| 4 | 2 | 2 |" in md and "pair threshold 0.60" in md
    # the product's rule now beside it, and its margin sweep
    assert "| 4 | open-set (default) |" in md and "| 4 | pair threshold (before) |" in md
    assert set(rec["margin_sweep"]) == {"0", "0.02", "0.04", "0.06", "0.08", "0.1"}


@pytest.mark.dataset
@pytest.mark.slow
def test_eval_openset_utkface_on_a_few_faces(tmp_path):
    import json

    _need("utkface")
    argv = ["--utkface", "--limit", "12", "--runs", str(tmp_path), "--docs", str(tmp_path)]
    assert _script().main(argv) == 0
    rec = json.loads((tmp_path / "openset" / "utkface-limit12.json").read_text())
    assert rec["images"] == 12 and rec["all"]["pairs"] == 66
    assert sum(rec["sizes"].values()) == 12
    assert "## UTKFace" in (tmp_path / "openset.md").read_text()


def test_run_lfw_and_page_on_synthetic_people(tmp_path):
    from pipeline.evaluation.openset import false_matches_by_group, run_lfw, save

    # person i at x = i; their first image on it, the others 0.1 away; people 1 unit apart
    enc = {
        k: np.array([float(i) + (0.0 if n == 0 else 0.1), 0.0])
        for i, ims in enumerate(people_of(KEYS).values())
        for n, k in enumerate(ims)
    }
    r = run_lfw(enc, enc, 0.6, sizes=[2, 4], draws=3)
    assert (r["people_2plus"], r["people_single"], r["max_mated_people"]) == (4, 3, 2)
    two = r["sizes"]["2"]
    # every mated probe is 0.1 from its own photo: named right; no probe lies within 0.6 of
    # another person's photo, so no wrong name at any size
    assert two["dir_default"]["mean"] == 1.0 and two["wrong_name_rate"]["max"] == 0.0
    assert r["sizes"]["4"]["distractors"] == 2
    machine = {"cpu": "test", "cores": 1, "python": "3", "loadavg_start": [0.0]}
    common = {"command": "c", "date": "d", "machine": machine, "draws": 3}
    save(
        {**common, "name": "lfw-gallery-jitter1", "probe_encoder": "p", "gallery_jitters": 1,
         "enroll_jitters": 10, "results": r, "enrolment_check": None},
        tmp_path,
    )  # fmt: skip
    labels = ["x", "x", "y", "y"]
    v = np.array([[0.0], [0.5], [3.0], [5.0]])
    save(
        {**common, "name": "utkface", "encoder": "e", "threshold": 0.6, "min_age": 0,
         "images": 4, "sizes": {"x": 2, "y": 2},
         "race_gender": false_matches_by_group(v, labels, 0.6),
         "race": false_matches_by_group(v, ["white", "white", "black", "black"], 0.6),
         "gender": false_matches_by_group(v, ["male", "female", "male", "female"], 0.6),
         "all": false_matches_by_group(v, ["all"] * 4, 0.6)["all"]},
        tmp_path,
    )  # fmt: skip
    md = (tmp_path / "openset.md").read_text()
    assert md.index("## LFW") < md.index("## UTKFace")
    assert "| 4 | 2 | 2 |" in md and "encoded the gallery with 1" in md
    # x: 1 of 1 pair matches, y: 0 of 1
    assert "| x | 2 | 1 | 1 | 100.000 % |" in md and "| y | 2 | 1 | 0 | 0.000 % |" in md


def test_rules_side_by_side_and_video_section_on_the_page(tmp_path):
    import json

    from pipeline.evaluation.openset import RULE_LABEL, run_lfw, save
    from pipeline.recognition.openset import OpenSetRule

    # person i at x = i; their other images 0.1 away; people 1 unit apart
    enc = {
        k: np.array([float(i) + (0.0 if n == 0 else 0.1), 0.0])
        for i, ims in enumerate(people_of(KEYS).values())
        for n, k in enumerate(ims)
    }
    rule = OpenSetRule()
    r = run_lfw(enc, enc, 0.6, sizes=[2, 4], draws=2, rules={RULE_LABEL: rule})
    now = r["sizes"]["4"]["rules"][RULE_LABEL]
    assert now["threshold"]["mean"] == pytest.approx(rule.gallery_threshold(4))
    # mated probes are 0.1 from their photo, 0.9 from the next: score -0.3, named right
    assert now["dir_default"]["mean"] == 1.0 and now["wrong_name_rate"]["max"] == 0.0
    machine = {"cpu": "test", "cores": 1, "python": "3", "loadavg_start": [0.0]}
    save(
        {"command": "c", "date": "d", "machine": machine, "draws": 2,
         "name": "lfw-gallery-jitter1", "probe_encoder": "p", "gallery_jitters": 1,
         "enroll_jitters": 1, "results": r, "enrolment_check": None},
        tmp_path,
    )  # fmt: skip
    why = {"track": 1, "label": "lin", "frames": 5, "shots": [0], "best_quality": 0.5,
           "why": "lin at 0.3"}  # fmt: skip
    clip = {"events": 2, "events_named": 1, "named_events": {"lin": 1},
            "wrong_names": {"certain": 0, "possible": 0}, "detail": [why]}  # fmt: skip
    aaron = {**clip, "events_named": 0, "named_events": {}}
    rules = {RULE_LABEL: {"gallery_people": 502, "hamilton": clip, "aaron": aaron}}
    video = {"command": "v", "date": "d", "git": "g", "loadavg_start": [1.0],
             "distractors": 500, "enrolled": ["lin", "alex"], "rules": rules}  # fmt: skip
    (tmp_path / "openset" / "video.json").write_text(json.dumps(video))
    save(
        {"command": "c", "date": "d", "machine": machine, "draws": 2,
         "name": "lfw-gallery-jitter1", "probe_encoder": "p", "gallery_jitters": 1,
         "enroll_jitters": 1, "results": r, "enrolment_check": None},
        tmp_path,
    )  # fmt: skip
    md = (tmp_path / "openset.md").read_text()
    assert f"| 4 | {RULE_LABEL} |" in md and "| 4 | pair threshold (before) |" in md
    assert "## Video" in md and f"| {RULE_LABEL} | 502 | 2 | lin 1 | 0 / 0 | 2 | 0 |" in md
    assert "lin named, alex not; 0 wrong name(s)" in md
    assert "hamilton track 1 (5 frames, shot(s) 0; quality 0.50): lin; lin at 0.3" in md


def test_open_set_by_group_counts_strangers_named():
    from pipeline.evaluation.openset import open_set_by_group
    from pipeline.recognition.openset import OpenSetRule

    rng = np.random.default_rng(0)
    # group "tight": faces 0.05 apart at most, every stranger near some enrolled face;
    # group "spread": faces far apart, nobody named
    tight = rng.normal(size=(30, 128)) * 0.002
    spread = rng.normal(size=(30, 128)) * 1.0
    base = rng.normal(size=(15, 128)) * 1.0  # "twins": each face twice (a look-alike)
    twins = np.vstack([base, base + rng.normal(size=(15, 128)) * 0.01])
    x = np.vstack([tight, spread, twins])
    labels = ["tight"] * 30 + ["spread"] * 30 + ["twins"] * 30
    out = open_set_by_group(x, labels, OpenSetRule(), (10,), 2)
    row = out["10"]["groups"]
    assert row["spread"]["named"] == 0 and row["spread"]["strangers"] == 40
    assert row["tight"]["fpir"] == 0.0  # all within the margin of each other: unknown
    assert row["twins"]["named"] > 0  # a look-alike enrolled: a stranger named
    assert out["10"]["threshold"] == OpenSetRule().gallery_threshold(10)


def test_choose_weights_takes_the_smallest_as_good_and_never_falls_with_the_gallery():
    from pipeline.evaluation.openset import choose_weights, weight_lines

    sweep = {  # weight -> size -> DIR at FPIR 1 %
        "0": {"2": {"0.01": 0.950}, "10": {"0.01": 0.900}, "100": {"0.01": 0.700},
              "1000": {"0.01": 0.400}},
        "0.5": {"2": {"0.01": 0.955}, "10": {"0.01": 0.880}, "100": {"0.01": 0.720},
                "1000": {"0.01": 0.550}},
        "1": {"2": {"0.01": 0.930}, "10": {"0.01": 0.870}, "100": {"0.01": 0.730},
              "1000": {"0.01": 0.600}},
    }  # fmt: skip
    # 2: 0 is within a point of 0.5's best; 10: 0 is best; 100: 0.5 within a point of 1;
    # 1000: only 1 is
    assert choose_weights(sweep) == ((2, 0.0), (10, 0.0), (100, 0.5), (1000, 1.0))
    # a size where a smaller weight wins after a larger one keeps the larger
    sweep["0"]["1000"]["0.01"] = 0.7
    assert choose_weights(sweep)[-1] == (1000, 0.5)
    page = "\n".join(weight_lines({"calibration": {"weights_tried": sweep}}))
    assert "| 0.5 | 95.5 % | 88.0 % | 72.0 % | 55.0 % |" in page
