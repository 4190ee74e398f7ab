"""Small helpers every evaluation uses: an even subset of a dataset, a timestamped log."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def spread(items: Sequence[T], n: int | None) -> list[T]:
    """``n`` items evenly spaced over ``items`` (all when ``n`` is None or too large).

    Datasets here are sorted (WIDER by event, UTKFace by age in the file name), so an even
    spread samples every kind of scene or age."""
    if n is None or n >= len(items):
        return list(items)
    if n <= 0:
        return []
    idx = np.unique(np.linspace(0, len(items) - 1, n).round().astype(int))
    return [items[i] for i in idx]


def median_ms(times_s: Sequence[float], digits: int = 2) -> float | None:
    """Median of durations given in seconds, in milliseconds (None when there are none)."""
    return round(statistics.median(times_s) * 1000.0, digits) if times_s else None


def log(msg: str) -> None:
    """``HH:MM:SS message`` on stderr, flushed (evaluations run for minutes in the background)."""
    print(f"{datetime.now(UTC):%H:%M:%S} {msg}", file=sys.stderr, flush=True)
