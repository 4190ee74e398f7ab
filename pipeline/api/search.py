"""Search the archive by a face: nearest tracks to an encoding (numpy, in memory).

Each track is represented as the sink and the identity code represent it: the
quality-weighted mean of its identity samples' encodings (weights ``max(quality, 0.05)``,
as :meth:`pipeline.identities.Identities.track_encoding`). The index holds one row per
track and follows the store: before a query it polls
:meth:`~pipeline.store.EventStore.samples_version` (at most every ``poll_s`` seconds);
new samples are folded in incrementally (only their tracks' rows change), anything else
(a deletion, a merge of tracks) rebuilds it. Hits are looked up in the events table
afterwards, so an event erased since the last poll is never returned. A query is one
matrix-vector product (squared distances from cached norms).
``scripts/bench_search.py`` measures it (docs/api.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from pipeline.store import EventStore

DIM = 128


def parse_encodings(texts: Sequence[str]) -> np.ndarray:
    """JSON arrays of floats (as the store keeps encodings) -> ``(n, 128)`` float64,
    parsed in one pass (a per-row ``json.loads`` is ~10x slower on 10^5 rows)."""
    if not texts:
        return np.zeros((0, DIM))
    flat = np.array(",".join(t.strip()[1:-1] for t in texts).split(","), dtype=np.float64)
    if flat.size != len(texts) * DIM:
        raise ValueError(f"stored encodings are not all {DIM}-d")
    return flat.reshape(len(texts), DIM)


class SearchIndex:
    """Track encodings of one store, for nearest-neighbour queries."""

    def __init__(self, store: EventStore, poll_s: float = 1.0) -> None:
        self.store = store
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._checked = 0.0  # time.monotonic() of the last look at the store
        self._version: tuple[int, int, int] | None = None
        self.uids: list[str] = []
        self._row: dict[str, int] = {}
        self._sums = np.zeros((0, DIM))  # quality-weighted sums of each track's encodings
        self._weights = np.zeros(0)
        self._means = np.zeros((0, DIM), dtype=np.float32)
        self._norms = np.zeros(0, dtype=np.float32)
        self.rebuilds = 0  # full rebuilds so far (tests and the benchmark look)

    def __len__(self) -> int:
        return len(self.uids)

    def refresh(self, force: bool = False) -> None:
        """Bring the index up to the store's samples. The store is asked at most every
        ``poll_s`` seconds (unless ``force``); nothing is read when nothing changed."""
        with self._lock:
            now = time.monotonic()
            if not force and self._version is not None and now - self._checked < self.poll_s:
                return
            self._checked = now
            version = self.store.samples_version()
            old = self._version
            if version == old:
                return
            if old is not None and version[2] == old[2] and version[1] >= old[1]:
                # only additions since (no sample went, no track was merged)?
                if version[0] - old[0] == self.store.samples_after(old[1]):
                    self._add(self.store.identity_encodings(after_id=old[1]))
                    self._version = version
                    return
            self._rebuild(version)

    def _rebuild(self, version: tuple[int, int, int]) -> None:
        self.uids, self._row = [], {}
        self._sums, self._weights = np.zeros((0, DIM)), np.zeros(0)
        self._means, self._norms = np.zeros((0, DIM), np.float32), np.zeros(0, np.float32)
        self._add(self.store.identity_encodings())
        self._version = version
        self.rebuilds += 1

    def _add(self, rows: Sequence) -> None:  # type: ignore[type-arg]
        if not rows:
            return
        vecs = parse_encodings([r.encoding for r in rows])
        weights = np.array([max(max(r.quality or 0.0, 0.0), 0.05) for r in rows])
        new = [u for u in dict.fromkeys(r.track_uid for r in rows) if u not in self._row]
        for u in new:
            self._row[u] = len(self.uids)
            self.uids.append(u)
        if new:
            self._sums = np.vstack([self._sums, np.zeros((len(new), DIM))])
            self._weights = np.concatenate([self._weights, np.zeros(len(new))])
        idx = np.array([self._row[r.track_uid] for r in rows])
        np.add.at(self._sums, idx, vecs * weights[:, None])
        np.add.at(self._weights, idx, weights)
        touched = np.unique(idx)
        means = (self._sums[touched] / self._weights[touched, None]).astype(np.float32)
        if len(self._means) < len(self.uids):
            grow = len(self.uids) - len(self._means)
            self._means = np.vstack([self._means, np.zeros((grow, DIM), dtype=np.float32)])
            self._norms = np.concatenate([self._norms, np.zeros(grow, dtype=np.float32)])
        self._means[touched] = means
        self._norms[touched] = np.einsum("ij,ij->i", means, means)

    def nearest(
        self, vector: np.ndarray, max_distance: float, limit: int
    ) -> tuple[list[tuple[str, float]], float]:
        """Up to ``limit`` ``(track_uid, distance)`` within ``max_distance``, nearest
        first, and the seconds the query took (the refresh not included)."""
        with self._lock:
            t0 = time.perf_counter()
            if not self.uids or limit <= 0:
                return [], time.perf_counter() - t0
            q = np.asarray(vector, dtype=np.float32)
            d2 = self._norms - 2.0 * (self._means @ q) + float(q @ q)
            within = np.flatnonzero(d2 <= max_distance**2 + 1e-6)
            if len(within) > limit:
                within = within[np.argpartition(d2[within], limit - 1)[:limit]]
            order = within[np.argsort(d2[within], kind="stable")]
            dist = np.sqrt(np.maximum(d2[order], 0.0))
            hits = [(self.uids[i], float(d)) for i, d in zip(order, dist, strict=True)]
            return hits, time.perf_counter() - t0
