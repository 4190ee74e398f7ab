"""The fixed UTKFace split: deterministic, disjoint, about VAL_PERCENT, malformed skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.agegender import split


def _names(n: int) -> list[str]:
    rng = np.random.default_rng(1)
    return [
        f"{rng.integers(1, 100)}_{rng.integers(0, 2)}_{rng.integers(0, 5)}_{i:015d}.jpg.chip.jpg"
        for i in range(n)
    ]


def test_parse_name_reads_labels_and_rejects_malformed() -> None:
    s = split.parse_name("/x/26_1_2_20170116174525125.jpg.chip.jpg")
    assert s is not None and (s.age, s.gender, s.race) == (26, 1, 2)
    assert s.gender_name == "female"
    assert split.parse_name("39_1_20170116174525125.jpg.chip.jpg") is None  # missing field
    assert split.parse_name("a_1_2_3.jpg") is None
    assert split.parse_name("30_7_2_3.jpg") is None  # gender out of range


def test_split_is_deterministic_disjoint_and_sized() -> None:
    names = _names(4000)
    first = [split.split_of(n) for n in names]
    assert first == [split.split_of(n) for n in names]
    # the side depends on the file name only, not on the folder or on other files
    assert [split.split_of("/elsewhere/" + n) for n in names[:50]] == first[:50]
    samples = [split.parse_name(n) for n in names]
    train, val = split.split_samples([s for s in samples if s is not None])
    assert not {s.name for s in train} & {s.name for s in val}
    assert len(train) + len(val) == len(names)
    share = len(val) / len(names)
    assert abs(share - split.VAL_PERCENT / 100) < 0.025


def test_dev_side_comes_from_training_files_only() -> None:
    names = np.array(_names(3000))
    sides = split.sides_of(names)
    is_val = np.array([split.split_of(n) == "val" for n in names])
    assert set(sides[is_val]) == {"val"}
    assert set(sides[~is_val]) == {"train", "dev"}
    assert 0.02 < np.mean(sides == "dev") < 0.06


def test_list_samples_skips_malformed_and_non_images(tmp_path: Path) -> None:
    for name in ["1_0_0_1.jpg.chip.jpg", "2_1_3_2.jpg.chip.jpg", "3_1_2.jpg.chip.jpg", "x.txt"]:
        (tmp_path / name).write_bytes(b"")
    got = [s.name for s in split.list_samples(tmp_path)]
    assert got == ["1_0_0_1.jpg.chip.jpg", "2_1_3_2.jpg.chip.jpg"]
    with pytest.raises(FileNotFoundError):
        split.list_samples(tmp_path / "missing")


def test_age_groups() -> None:
    assert split.age_group(0) == "0-12"
    assert split.age_group(25.4) == "20-29"
    assert split.age_group(99) == "70+"


def test_dev_side_is_disjoint_from_validation() -> None:
    pytest.importorskip("cv2")
    from pipeline.agegender.split import sides_of, split_of

    names = np.array([f"{i}_0_0_x.jpg" for i in range(3000)])
    side = sides_of(names)
    assert (side == "dev").sum() > 50
    assert all(split_of(n) == "train" for n in names[side == "dev"])


def test_groups_race_gender_band() -> None:
    from pipeline.agegender.split import ADULT_FROM, age_band, group_of

    assert age_band(0) == "0-12" and age_band(12.4) == "0-12" and age_band(13) == "13-19"
    assert age_band(39) == "20-39" and age_band(60) == "60+" and age_band(116) == "60+"
    assert group_of(25, 1, 2) == "asian/female/20-39"
    assert group_of(70, 0, 4) == "other/male/60+"
    assert age_band(ADULT_FROM) == "20-39"
