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
    dec, mated, non = decide(DRAW, GALLERY, PROBES, 0.6)
    assert mated == ["A", "A"] and non == ["A", None]
    assert (dec.mated_right, dec.mated_wrong, dec.non_mated_named) == (1, 1, 1)
    assert (dec.wrong_names, dec.probes) == (2, 4)
    # a stricter threshold (0.3): B_0002 and C_0001 become unknown, no wrong name
    dec, mated, non = decide(DRAW, GALLERY, PROBES, 0.3)
    assert mated == ["A", None] and non == [None, None] and dec.wrong_names == 0


def test_evaluate_draw_and_summary():
    row = evaluate_draw(DRAW, GALLERY, PROBES, 0.6, fpirs=(0.0, 0.5))
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
