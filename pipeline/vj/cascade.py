"""The attentional cascade: its stages, its file format and its evaluation over windows.

A stage is a boosted set of stumps with a threshold on the sum of their votes, tuned so
that (nearly) every face passes; each stage only sees the windows every earlier stage
passed, so the cheap first stages discard most of an image and the expensive later ones
run on a few windows. Windows are described by flat indices into a flattened integral
image (their top-left corner) plus the inverse of their standard deviation, which is
exactly how both the training crops and the sliding window's positions are addressed.

The file is plain JSON (no pickle): every stump names its feature by kind and rectangle,
so a cascade file is self-contained and readable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.vj.features import KINDS, HaarFeatures, patch_std
from pipeline.vj.integral import integral_images

FORMAT = "facepipe-viola-jones-cascade"
VERSION = 1
_CHUNK = 32768
# (2-D integral image, top-left y and x of the first window, step, rows, columns)
Grid = tuple[np.ndarray, int, int, int, int, int]


@dataclass(eq=False)
class Stage:
    """Stumps (one feature each) voting with weights ``alphas`` against ``threshold``."""

    features: HaarFeatures
    thresholds: np.ndarray  # (m,) stump thresholds on normalised feature values
    polarities: np.ndarray  # (m,) +1: face when value < threshold; -1: when above
    alphas: np.ndarray  # (m,) votes
    threshold: float  # the stage passes a window when its vote sum >= this
    _offsets: dict[int, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.alphas)

    def window_votes(
        self, ii_flat: np.ndarray, ii_width: int, bases: np.ndarray, inv_std: np.ndarray
    ) -> np.ndarray:
        """Vote sums of the windows at ``bases`` of a flattened integral image.

        ``ii_flat`` may be float64 or int32 (exact, see :meth:`grid_votes`; gathers half
        the bytes). ``raw * inv_std < t`` is tested as ``raw < t * std`` as on the grid.
        """
        off = self._offsets.get(ii_width)
        if off is None:
            off = self._offsets[ii_width] = self.features.offsets(ii_width)
        coef = self.features.coef
        if ii_flat.dtype.kind != "f":
            coef = coef.astype(ii_flat.dtype)
        raw = np.einsum("nmk,mk->nm", np.take(ii_flat, bases[:, None, None] + off[None]), coef)
        limit = (1.0 / inv_std)[:, None] * self.thresholds[None, :]
        hit = np.where(self.polarities[None, :] > 0, raw < limit, raw > limit)
        return hit @ self.alphas

    def grid_votes(self, grid: Grid, inv_std: np.ndarray) -> np.ndarray:
        """Vote sums of *every* window of a regular grid, from strided views.

        No index arrays: each feature point's values over all windows are one strided
        slice of the integral image, so this is much faster than :meth:`window_votes`
        while most windows are still alive (the first stages). The grid's integral image
        is int32: exact for any image below 8.4 million pixels, and since integer
        arithmetic wraps modulo 2**32 a feature's value is exact even when a partial sum
        overflows. ``raw * inv_std < t`` is tested as ``raw < t * std``.
        """
        ii, y0, x0, step, ny, nx = grid
        std = (1.0 / inv_std).reshape(ny, nx)
        votes = np.zeros((ny, nx))
        raw = np.empty((ny, nx), dtype=ii.dtype)
        tmp = np.empty_like(raw)
        f = self.features
        for j in range(len(self)):
            first = True
            for k in np.flatnonzero(f.coef[j]):
                ys, xs = y0 + int(f.py[j, k]), x0 + int(f.px[j, k])
                view = ii[
                    ys : ys + (ny - 1) * step + 1 : step, xs : xs + (nx - 1) * step + 1 : step
                ]
                c = int(f.coef[j, k])
                if c == 1:
                    term = view
                else:
                    term = np.multiply(view, c, out=tmp)
                if first:
                    raw[...] = term
                    first = False
                else:
                    raw += term
            limit = self.thresholds[j] * std
            hit = raw < limit if self.polarities[j] > 0 else raw > limit
            votes += self.alphas[j] * hit
        return votes.reshape(-1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": float(self.threshold),
            "stumps": [
                {
                    "kind": KINDS[int(k)],
                    "rect": [int(v) for v in g],
                    "threshold": float(t),
                    "polarity": int(p),
                    "alpha": float(a),
                }
                for k, g, t, p, a in zip(
                    self.features.kind,
                    self.features.geom,
                    self.thresholds,
                    self.polarities,
                    self.alphas,
                    strict=True,
                )
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], window: int) -> Stage:
        stumps = data["stumps"]
        if not stumps:
            raise ValueError("a cascade stage needs at least one stump")
        for s in stumps:
            if s["kind"] not in KINDS:
                raise ValueError(f"unknown feature kind {s['kind']!r} in cascade file")
            if int(s["polarity"]) not in (1, -1):
                raise ValueError(f"stump polarity must be 1 or -1, got {s['polarity']!r}")
        feats = HaarFeatures.from_geometry(
            window,
            np.array([KINDS.index(s["kind"]) for s in stumps]),
            np.array([s["rect"] for s in stumps]),
        )
        return cls(
            feats,
            np.array([s["threshold"] for s in stumps], dtype=np.float64),
            np.array([s["polarity"] for s in stumps], dtype=np.int8),
            np.array([s["alpha"] for s in stumps], dtype=np.float64),
            float(data["threshold"]),
        )


@dataclass
class Cascade:
    """A trained cascade over ``window`` x ``window`` windows.

    ``box`` maps a window to the face box the detector reports: a square of side
    ``scale * window`` whose centre is shifted by ``(dx, dy) * window``. ``min_std`` is a
    free stage zero: windows whose grey-level standard deviation is below it (flat wall,
    sky, shadow) are rejected before any feature is computed; it is set well below the
    contrast of the flattest training faces.
    """

    window: int
    stages: list[Stage] = field(default_factory=list)
    box: dict[str, float] = field(default_factory=lambda: {"scale": 1.0, "dx": 0.0, "dy": 0.0})
    meta: dict[str, Any] = field(default_factory=dict)
    min_std: float = 0.0

    @property
    def n_features(self) -> int:
        return sum(len(s) for s in self.stages)

    def evaluate_windows(
        self,
        ii_flat: np.ndarray,
        ii_width: int,
        bases: np.ndarray,
        inv_std: np.ndarray,
        stages: int | None = None,
        grid: Grid | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run the (first ``stages``) stages over windows; only survivors go on.

        If ``grid`` says that ``bases`` are all windows of a regular grid (row-major), the
        stages that still see more than a quarter of them use :meth:`Stage.grid_votes`.

        Returns ``depth`` (how many stages each window passed) and ``margin`` (for
        windows that passed all of them: the last stage's vote sum minus its threshold,
        divided by its total vote; NaN elsewhere).
        """
        bases = np.asarray(bases, dtype=np.int64)
        inv_std = np.asarray(inv_std, dtype=np.float64)
        n = len(bases)
        depth = np.zeros(n, dtype=np.int32)
        margin = np.full(n, np.nan)
        alive = np.arange(n)
        if self.min_std > 0:
            alive = np.flatnonzero(inv_std * self.min_std <= 1.0)
        use = self.stages if stages is None else self.stages[:stages]
        gather_ii = ii_flat if grid is None else grid[0].reshape(-1)
        for i, stage in enumerate(use):
            if len(alive) == 0:
                break
            if grid is not None and len(alive) > n // 4:
                votes = stage.grid_votes(grid, inv_std)[alive]
            else:
                votes = np.concatenate(
                    [
                        stage.window_votes(
                            gather_ii,
                            ii_width,
                            bases[alive[s : s + _CHUNK]],
                            inv_std[alive[s : s + _CHUNK]],
                        )
                        for s in range(0, len(alive), _CHUNK)
                    ]
                )
            ok = votes >= stage.threshold
            if i == len(use) - 1:
                margin[alive[ok]] = (votes[ok] - stage.threshold) / stage.alphas.sum()
            alive = alive[ok]
            depth[alive] += 1
        return depth, margin

    def classify(
        self, patches: np.ndarray, stages: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(passed, depth)`` for patches ``(N, window, window)`` (grey levels 0-255)."""
        p = np.asarray(patches)
        if p.ndim != 3 or p.shape[1:] != (self.window, self.window):
            raise ValueError(f"expected (N, {self.window}, {self.window}) patches, got {p.shape}")
        n_use = len(self.stages) if stages is None else min(stages, len(self.stages))
        side = self.window + 1
        ii = integral_images(p).reshape(-1)
        bases = np.arange(len(p), dtype=np.int64) * side * side
        depth, _ = self.evaluate_windows(ii, side, bases, 1.0 / patch_std(p), stages=n_use)
        return depth >= n_use, depth

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "window": self.window,
            "box": dict(self.box),
            "min_std": float(self.min_std),
            "meta": self.meta,
            "stages": [s.to_dict() for s in self.stages],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cascade:
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(
                f"not a facepipe Viola-Jones cascade (format {data.get('format')!r}, "
                f"version {data.get('version')!r}; expected {FORMAT!r} v{VERSION})"
            )
        window = int(data["window"])
        return cls(
            window,
            [Stage.from_dict(s, window) for s in data["stages"]],
            {k: float(v) for k, v in data.get("box", {}).items()},
            dict(data.get("meta", {})),
            float(data.get("min_std", 0.0)),
        )

    def save(self, path: str | Path) -> None:
        """Write the cascade as JSON (atomically: a half-written file never replaces it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Cascade:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        return cls.from_dict(data)
