"""The calibrated distance thresholds of the verification rule: the one table of them.

Two faces are the same person iff the Euclidean distance between their dlib encodings is
<= threshold. The right threshold depends on how the encodings are made: jittering and
flip averaging both average descriptors, which brings a person's encodings closer
together, so they want lower thresholds. Each encoder setting ``(num_jitters, flip)`` has
two calibrated operating points, from ``python scripts/eval_verification.py`` on
``../shared/datasets/lfw-pairs-subset`` (LFW folds 1-3, 1,800 pairs; rounded to 0.01;
the protocol and the fold-by-fold numbers are in docs/recognition.md and
docs/recognition-lfw.md):

* ``accuracy``: the threshold that maximises accuracy over all pairs (equal weight to a
  false accept and a false reject); the default of ``facepipe verify``.
* ``far_1pct``: the threshold that accepts about 1 % of impostor pairs; the default of
  ``recognition.threshold`` in the pipeline, where one face is compared with every
  enrolled person and a stranger given a name is the costlier error.

This module imports nothing heavy: the configuration reads it at load.
"""

from __future__ import annotations

from typing import NamedTuple


class OperatingPoints(NamedTuple):
    accuracy: float
    far_1pct: float


# (num_jitters, flip) -> thresholds. In the comments: the all-pairs accuracy optimum and
# the all-pairs FAR 1 % point before rounding.
CALIBRATED: dict[tuple[int, bool], OperatingPoints] = {
    (1, False): OperatingPoints(accuracy=0.62, far_1pct=0.60),  # 0.619; 0.5982
    (1, True): OperatingPoints(accuracy=0.60, far_1pct=0.58),  # 0.596; 0.5848
    (5, False): OperatingPoints(accuracy=0.59, far_1pct=0.59),  # 0.592; 0.5876
    (5, True): OperatingPoints(accuracy=0.58, far_1pct=0.59),  # 0.585; 0.5856
}


def operating_points(num_jitters: int = 1, flip: bool = False) -> OperatingPoints:
    """The calibrated thresholds for encodings made with ``num_jitters`` (and ``flip``).

    Settings that were not calibrated get the entry with the nearest jitter count (ties go
    to the larger count, whose thresholds are stricter); re-run
    scripts/eval_verification.py with ``--num-jitters N`` (and ``--flip``) to calibrate N.
    """
    if num_jitters < 1:
        raise ValueError(f"num_jitters must be >= 1, got {num_jitters}")
    counts = [j for j, f in CALIBRATED if f == flip]
    nearest = min(counts, key=lambda j: (abs(j - num_jitters), -j))
    return CALIBRATED[(nearest, flip)]
