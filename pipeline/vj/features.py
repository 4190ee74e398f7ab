"""Haar-like features: two-, three- and four-rectangle, over a square window.

A feature is a few adjacent rectangles of one size ``w`` x ``h`` with weights:

* ``x2`` / ``y2`` (edges): left minus right / top minus bottom;
* ``x3`` / ``y3`` (lines): the two outer rectangles minus twice the middle one, so the
  weights sum to zero like the other kinds;
* ``x4`` (diagonals): top-left plus bottom-right minus the other two.

Because every kind's weights sum to zero, a feature ignores the window's mean brightness;
dividing by the window's standard deviation (as Viola and Jones did) also removes its
contrast. In a 24 x 24 window there are 162,336 such features.

Each feature is compiled to at most 9 signed integral-image points (shared rectangle
corners merged), so its value over any set of windows is 9 array gathers and a dot product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.vj.integral import integral_images

KINDS: tuple[str, ...] = ("x2", "y2", "x3", "y3", "x4")
# rectangles across and down, and the weight of each cell (row-major)
_LAYOUT: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "x2": (2, 1, (1, -1)),
    "y2": (1, 2, (1, -1)),
    "x3": (3, 1, (1, -2, 1)),
    "y3": (1, 3, (1, -2, 1)),
    "x4": (2, 2, (1, -1, -1, 1)),
}
MAX_POINTS = 9
# windows flatter than this (grey levels, 0-255 scale) are normalised as if this contrasted
STD_FLOOR = 1.0


def rectangles(kind: str, x: int, y: int, w: int, h: int) -> list[tuple[int, int, int, int, int]]:
    """The weighted rectangles ``(x, y, w, h, weight)`` of one feature."""
    if kind not in _LAYOUT:
        raise ValueError(f"unknown Haar feature kind {kind!r}; known: {', '.join(KINDS)}")
    cols, rows, weights = _LAYOUT[kind]
    out = []
    for r in range(rows):
        for c in range(cols):
            out.append((x + c * w, y + r * h, w, h, weights[r * cols + c]))
    return out


def count_features(window: int) -> int:
    """How many features of all kinds fit in a ``window`` x ``window`` square."""
    return len(all_geometries(window)[0])


def all_geometries(window: int) -> tuple[np.ndarray, np.ndarray]:
    """Every feature in the window: kind indices ``(F,)`` and unit rectangles ``(F, 4)``."""
    kinds, geoms = [], []
    for k, name in enumerate(KINDS):
        cols, rows, _ = _LAYOUT[name]
        for w in range(1, window // cols + 1):
            for h in range(1, window // rows + 1):
                xs = np.arange(0, window - cols * w + 1)
                ys = np.arange(0, window - rows * h + 1)
                gx, gy = np.meshgrid(xs, ys, indexing="ij")
                n = gx.size
                g = np.empty((n, 4), dtype=np.int16)
                g[:, 0], g[:, 1], g[:, 2], g[:, 3] = gx.ravel(), gy.ravel(), w, h
                geoms.append(g)
                kinds.append(np.full(n, k, dtype=np.int8))
    return np.concatenate(kinds), np.concatenate(geoms)


@dataclass(eq=False)
class HaarFeatures:
    """A set of features over one window size, compiled to integral-image points.

    ``py``, ``px``, ``coef`` have shape ``(F, 9)``: feature ``f``'s raw value over a
    window whose top-left integral-image index is ``(y0, x0)`` is
    ``sum_k coef[f, k] * ii[y0 + py[f, k], x0 + px[f, k]]`` (unused slots have coef 0).
    """

    window: int
    kind: np.ndarray  # (F,) int8 index into KINDS
    geom: np.ndarray  # (F, 4) int16: x, y, w, h of one cell
    py: np.ndarray
    px: np.ndarray
    coef: np.ndarray

    @classmethod
    def from_geometry(cls, window: int, kind: np.ndarray, geom: np.ndarray) -> HaarFeatures:
        kind = np.asarray(kind, dtype=np.int8).reshape(-1)
        geom = np.asarray(geom, dtype=np.int16).reshape(-1, 4)
        if len(kind) != len(geom):
            raise ValueError("kind and geom must have the same length")
        n = len(kind)
        py = np.zeros((n, MAX_POINTS), dtype=np.int32)
        px = np.zeros((n, MAX_POINTS), dtype=np.int32)
        coef = np.zeros((n, MAX_POINTS), dtype=np.float64)
        for i in range(n):
            if not 0 <= kind[i] < len(KINDS):
                raise ValueError(f"feature {i}: bad kind index {kind[i]}")
            x, y, w, h = (int(v) for v in geom[i])
            rects = rectangles(KINDS[kind[i]], x, y, w, h)
            if (
                min(w, h) < 1
                or min(x, y) < 0
                or any(rx + rw > window or ry + rh > window for rx, ry, rw, rh, _ in rects)
            ):
                raise ValueError(f"feature {i} {KINDS[kind[i]]} {x, y, w, h} leaves the window")
            points: dict[tuple[int, int], int] = {}
            for rx, ry, rw, rh, wt in rects:
                for (yy, xx), s in (
                    ((ry + rh, rx + rw), 1),
                    ((ry, rx + rw), -1),
                    ((ry + rh, rx), -1),
                    ((ry, rx), 1),
                ):
                    points[(yy, xx)] = points.get((yy, xx), 0) + s * wt
            nz = [(p, c) for p, c in points.items() if c != 0]
            for j, ((yy, xx), c) in enumerate(nz):
                py[i, j], px[i, j], coef[i, j] = yy, xx, c
        return cls(window, kind, geom, py, px, coef)

    @classmethod
    def sample(cls, window: int, n: int, rng: np.random.Generator) -> HaarFeatures:
        """``n`` features drawn without replacement from all features of the window."""
        kind, geom = all_geometries(window)
        if n >= len(kind):
            return cls.from_geometry(window, kind, geom)
        idx = np.sort(rng.choice(len(kind), size=n, replace=False))
        return cls.from_geometry(window, kind[idx], geom[idx])

    def __len__(self) -> int:
        return len(self.kind)

    def subset(self, idx: np.ndarray | list[int]) -> HaarFeatures:
        idx = np.asarray(idx, dtype=np.int64)
        return HaarFeatures(
            self.window,
            self.kind[idx],
            self.geom[idx],
            self.py[idx],
            self.px[idx],
            self.coef[idx],
        )

    def offsets(self, ii_width: int) -> np.ndarray:
        """Flat integral-image offsets ``(F, 9)`` for an integral image ``ii_width`` wide."""
        return self.py * ii_width + self.px

    def raw_values(self, patches: np.ndarray) -> np.ndarray:
        """Un-normalised values ``(F, N)`` over patches ``(N, window, window)``."""
        return _values(self, integral_images(_check_patches(patches, self.window)))

    def matrix(self, patches: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Normalised values ``(F, N)`` float32: raw value / window standard deviation.

        Features are rows so that each one's values over all samples are contiguous (what
        the stump search sorts and scans). Computed as one dense float32 matrix product of
        the features' point coefficients with the flattened integral images: exact, since
        the integral images of 8-bit windows are integers below 2**24.
        """
        patches = _check_patches(patches, self.window)
        inv = (1.0 / patch_std(patches)).astype(np.float32)
        side = self.window + 1
        coef = np.zeros((len(self), side * side), dtype=np.float32)
        rows = np.repeat(np.arange(len(self)), MAX_POINTS)
        np.add.at(coef, (rows, self.offsets(side).ravel()), self.coef.ravel())
        out = np.empty((len(self), len(patches)), dtype=np.float32)
        for s in range(0, len(patches), chunk):
            ii = integral_images(patches[s : s + chunk]).reshape(-1, side * side)
            out[:, s : s + len(ii)] = coef @ ii.T.astype(np.float32)
            out[:, s : s + len(ii)] *= inv[None, s : s + len(ii)]
        return out


def patch_std(patches: np.ndarray) -> np.ndarray:
    """Per-patch standard deviation with the :data:`STD_FLOOR` applied."""
    p = np.asarray(patches, dtype=np.float64).reshape(len(patches), -1)
    return np.maximum(p.std(axis=1), STD_FLOOR)


def _check_patches(patches: np.ndarray, window: int) -> np.ndarray:
    p = np.asarray(patches)
    if p.ndim != 3 or p.shape[1:] != (window, window):
        raise ValueError(f"expected patches of shape (N, {window}, {window}), got {p.shape}")
    return p


def _values(feats: HaarFeatures, ii: np.ndarray) -> np.ndarray:
    n, h1, w1 = ii.shape
    flat = ii.reshape(n, h1 * w1).T  # (points, N): a feature point is one contiguous row
    off = feats.offsets(w1)
    out = np.zeros((len(feats), n), dtype=np.float64)
    for k in range(MAX_POINTS):
        c = feats.coef[:, k]
        used = c != 0
        if not used.any():
            continue
        out[used] += flat[off[used, k]] * c[used, None]
    return out
