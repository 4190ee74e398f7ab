"""Search the archive by a face: nearest tracks to an encoding (numpy, in memory).

Each track is represented as the sink and the identity code represent it: the
quality-weighted mean of its identity samples' encodings (weights ``max(quality, 0.05)``,
as :meth:`pipeline.identities.Identities.track_encoding`). The index holds one row per
track and follows the store: before a query it polls
:meth:`~pipeline.store.EventStore.samples_version` (at most every ``poll_s`` seconds)
and applies what changed (:meth:`SearchIndex.refresh`): new samples, merges of tracks,
deletions, without re-reading the stored encodings. Hits are looked up in the events
table afterwards, so an event erased since the last poll is never returned. A query is one
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
        self._aliases: dict[str, str] = {}
        self._top: tuple[str, int, float] | None = None  # key of the newest sample seen
        self.rebuilds = 0  # full rebuilds so far (tests and the benchmark look)

    def __len__(self) -> int:
        return len(self._row)

    def refresh(self, force: bool = False) -> None:
        """Bring the index up to the store's samples. The store is asked at most every
        ``poll_s`` seconds (unless ``force``); nothing is read when nothing changed.

        Changes are applied incrementally: new samples by primary-key range; merges of
        tracks (new aliases) move the merged track's sums onto the survivor's row;
        deletions (erase, retention) are found from the samples' track index and their
        rows dropped. The encodings are read again only when the newest sample seen
        last time was deleted (its id may have been reused since)."""
        with self._lock:
            now = time.monotonic()
            if not force and self._version is not None and now - self._checked < self.poll_s:
                return
            self._checked = now
            version = self.store.samples_version()
            old = self._version
            if version == old:
                return
            # SQLite reuses the ids of the newest rows once they are deleted: then "after
            # the last id seen" is no longer "new", and the index is read again
            if old is None or self.store.sample_key(old[1]) != self._top:
                self._rebuild(version)
                return
            added = self.store.samples_after(old[1], upto=version[1])
            if version[2] != old[2]:
                self._merge(self.store.aliases())
            if version[0] - old[0] != added:  # some samples went
                self._drop(self.store.sampled_tracks())
            self._add(self.store.identity_encodings(after_id=old[1], upto=version[1]))
            self._version, self._top = version, self.store.sample_key(version[1])

    def _rebuild(self, version: tuple[int, int, int]) -> None:
        self.uids, self._row = [], {}
        self._sums, self._weights = np.zeros((0, DIM)), np.zeros(0)
        self._means, self._norms = np.zeros((0, DIM), np.float32), np.zeros(0, np.float32)
        self._aliases = self.store.aliases()
        self._add(self.store.identity_encodings(upto=version[1]))  # later ones: next time
        self._version, self._top = version, self.store.sample_key(version[1])
        self.rebuilds += 1

    def _merge(self, aliases: dict[str, str]) -> None:
        """Tracks merged since: their samples now belong to the surviving track."""
        for from_uid, into_uid in aliases.items():
            if self._aliases.get(from_uid) == into_uid:
                continue
            i = self._row.get(from_uid)
            if i is not None:
                self._ensure(into_uid)
                j = self._row[into_uid]
                self._sums[j] += self._sums[i]
                self._weights[j] += self._weights[i]
                self._update([j])
                self._clear(from_uid)
        self._aliases = aliases

    def _drop(self, sampled: set[str]) -> None:
        """Tracks whose samples were deleted leave the index."""
        for uid in [u for u in self._row if u not in sampled]:
            self._clear(uid)

    def _clear(self, uid: str) -> None:
        i = self._row.pop(uid)
        self.uids[i] = ""
        self._sums[i] = 0.0
        self._weights[i] = 0.0
        self._means[i] = 0.0
        self._norms[i] = np.inf  # never within any distance

    def _ensure(self, uid: str) -> None:
        if uid in self._row:
            return
        self._row[uid] = len(self.uids)
        self.uids.append(uid)
        self._sums = np.vstack([self._sums, np.zeros((1, DIM))])
        self._weights = np.concatenate([self._weights, np.zeros(1)])
        self._means = np.vstack([self._means, np.zeros((1, DIM), dtype=np.float32)])
        self._norms = np.concatenate([self._norms, np.zeros(1, dtype=np.float32)])

    def _update(self, rows: Sequence[int]) -> None:
        idx = np.asarray(rows)
        means = (self._sums[idx] / np.maximum(self._weights[idx], 1e-12)[:, None]).astype(
            np.float32
        )
        self._means[idx] = means
        self._norms[idx] = np.einsum("ij,ij->i", means, means)

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
        if len(self._means) < len(self.uids):
            grow = len(self.uids) - len(self._means)
            self._means = np.vstack([self._means, np.zeros((grow, DIM), dtype=np.float32)])
            self._norms = np.concatenate([self._norms, np.zeros(grow, dtype=np.float32)])
        self._update(np.unique(idx))

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
