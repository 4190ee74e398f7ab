"""The fixed UTKFace train/validation split shared by every age/gender model.

A file belongs to the validation split when a stable hash of its *file name* (SHA-1, not
Python's salted ``hash``) falls below ``VAL_PERCENT``; the split therefore never changes
between machines, runs or dataset copies, needs no stored list, and a file keeps its side
if other files are added or removed. No model facepipe ships trains on the validation
split; evaluation (``scripts/eval_attributes.py``) reports on it.

Labels come from the file name ``AGE_GENDER_RACE_DATE.jpg.chip.jpg`` (gender 0 = male,
1 = female; race 0-4). Names with a missing or non-numeric field are skipped.
UTKFace has several photos of some people; the split is by file, not by identity, so a
person can appear on both sides (documented in docs/attributes.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

VAL_PERCENT = 18
"""Share of files (percent) in the validation split."""

DEV_BUCKETS = range(VAL_PERCENT, VAL_PERCENT + 4)
"""Hash buckets (4 % of all files, all from the training side) used to monitor training
and to fit the ensemble's stacker and the calibrations (training.agegender.stacking)."""

SALT = "facepipe-utkface-v1"
"""Mixed into the hash so the split is not correlated with other hash-based splits."""

GENDERS = ("male", "female")


@dataclass(frozen=True)
class Sample:
    """One labelled UTKFace image."""

    name: str
    age: int
    gender: int  # 0 male, 1 female
    race: int

    @property
    def gender_name(self) -> str:
        return GENDERS[self.gender]


def parse_name(name: str) -> Sample | None:
    """Labels from a UTKFace file name, or None when the name is malformed."""
    base = Path(name).name
    parts = base.split("_")
    if len(parts) != 4:
        return None
    try:
        age, gender, race = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if not (0 <= age <= 120 and gender in (0, 1) and 0 <= race <= 4):
        return None
    return Sample(name=base, age=age, gender=gender, race=race)


def bucket(name: str) -> int:
    """Stable bucket 0..99 of a file name."""
    digest = hashlib.sha1(f"{SALT}:{Path(name).name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def split_of(name: str) -> str:
    """``"val"`` or ``"train"`` for a file name (deterministic)."""
    return "val" if bucket(name) < VAL_PERCENT else "train"


def sides_of(names: np.ndarray) -> np.ndarray:
    """Side of each UTKFace file: val (never trained on), dev (monitoring), train."""
    out = []
    for n in names:
        b = bucket(str(n))
        out.append("val" if b < VAL_PERCENT else "dev" if b in DEV_BUCKETS else "train")
    return np.array(out)


def list_samples(folder: str | Path) -> list[Sample]:
    """Every well-formed labelled image in a UTKFace folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"UTKFace folder not found: {folder}")
    out = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        sample = parse_name(path.name)
        if sample is not None:
            out.append(sample)
    return out


def split_samples(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """``(train, val)`` lists, each in the input order."""
    train = [s for s in samples if split_of(s.name) == "train"]
    val = [s for s in samples if split_of(s.name) == "val"]
    return train, val


AGE_GROUPS: tuple[tuple[int, int], ...] = (
    (0, 12),
    (13, 19),
    (20, 29),
    (30, 39),
    (40, 49),
    (50, 59),
    (60, 69),
    (70, 200),
)
"""Age groups (inclusive) used for per-group reporting."""


def _band_label(age: float, bands: tuple[tuple[int, int], ...]) -> str:
    a = int(round(age))
    for lo, hi in bands:
        if lo <= a <= hi:
            return f"{lo}+" if hi >= 200 else f"{lo}-{hi}"
    return f"{bands[-1][0]}+"


def age_group(age: float) -> str:
    """Label like ``"20-29"`` (or ``"70+"``) of the group an age falls in."""
    return _band_label(age, AGE_GROUPS)


RACES = ("white", "black", "asian", "indian", "other")
"""UTKFace's race labels 0-4 (as the data set's authors annotated them)."""

AGE_BANDS: tuple[tuple[int, int], ...] = ((0, 12), (13, 19), (20, 39), (40, 59), (60, 200))
"""Coarser age bands for the race x gender x age-band groups (per-group reporting and
balanced training); bands from 20 on are the adult groups."""

ADULT_FROM = 20
"""First age of the adult bands."""


def age_band(age: float) -> str:
    """Band label like ``"20-39"`` (or ``"60+"``) of :data:`AGE_BANDS`."""
    return _band_label(age, AGE_BANDS)


def group_of(age: float, gender: int, race: int) -> str:
    """The race x gender x age-band group of a labelled face, e.g. ``"asian/female/20-39"``."""
    return f"{RACES[race]}/{GENDERS[gender]}/{age_band(age)}"
