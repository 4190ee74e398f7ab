#!/usr/bin/env python
"""Benchmark: search by face over N stored tracks (the API's numpy index on SQLite).

Fills a fresh SQLite event store (a temporary directory unless --db) with N synthetic
tracks, each one event and S identity samples (128-d encodings around one of P
"people", the sink's JSON encoding), through the store's own tables; then measures:

* the cold index build (read every identity sample, weighted means per track),
* an incremental refresh after new samples of 100 tracks (the common case), after
  merges of tracks and after an erase,
* a refresh when nothing changed (the poll before each query),
* the query itself: M random photos' encodings against every track (p50/p95),
* the query plus fetching the hits' events (what /api/search does after encoding).

Face encoding of the uploaded photo (dlib) is not included: it is measured apart with
--encode PHOTO.

    python scripts/bench_search.py [--tracks 100000] [--samples 3] [--queries 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.api.search import SearchIndex  # noqa: E402
from pipeline.machine import describe  # noqa: E402
from pipeline.store import EventStore, events, samples  # noqa: E402


def fill(store: EventStore, tracks: int, per_track: int, people: int, seed: int) -> np.ndarray:
    """Store the synthetic tracks; returns the people's centre encodings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 128)) * 0.06  # ~0.96 apart, like different people
    t0 = 1.8e9
    chunk = 5000
    for start in range(0, tracks, chunk):
        n = min(chunk, tracks - start)
        ev_rows, s_rows = [], []
        who = rng.integers(0, people, n)
        vecs = centres[who][:, None, :] + rng.normal(size=(n, per_track, 128)) * 0.02
        for i in range(n):
            t = start + i
            uid = f"cam{t % 8}/s/{t}"
            ts = t0 + t * 5.0
            ev_rows.append({
                "track_uid": uid, "stream": f"cam{t % 8}", "session": "s", "track_id": t,
                "first_seen": ts, "last_seen": ts + 3, "n_frames": 30, "ended": True,
                "identity_samples": per_track, "attribute_samples": 0, "updated_at": ts,
            })  # fmt: skip
            for k in range(per_track):
                s_rows.append({
                    "track_uid": uid, "kind": "identity", "seq": k, "ts": ts + k,
                    "quality": 0.3 + 0.1 * k,
                    "encoding": json.dumps(vecs[i, k].tolist()),  # as the sink stores it
                })  # fmt: skip
        with store.engine.begin() as conn:
            conn.execute(events.insert(), ev_rows)
            conn.execute(samples.insert(), s_rows)
    return centres


def ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return f"{statistics.median(xs) * 1000:.1f} ms (p95 {p95 * 1000:.1f} ms)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--samples", type=int, default=3, help="identity samples per track")
    ap.add_argument("--people", type=int, default=2000, help="distinct faces among the tracks")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--db", help="SQLite file to fill (default: a temporary one)")
    ap.add_argument("--encode", metavar="PHOTO", help="also time encoding this photo (dlib)")
    args = ap.parse_args(argv)

    tmp = tempfile.TemporaryDirectory(prefix="bench-search-")
    db = Path(args.db) if args.db else Path(tmp.name) / "events.db"
    store = EventStore(f"sqlite:///{db}")
    t = time.perf_counter()
    centres = fill(store, args.tracks, args.samples, args.people, seed=0)
    fill_s = time.perf_counter() - t

    index = SearchIndex(store, poll_s=0)
    t = time.perf_counter()
    index.refresh()
    build_s = time.perf_counter() - t
    polls = []
    for _ in range(5):
        t = time.perf_counter()
        index.refresh(force=True)
        polls.append(time.perf_counter() - t)

    rng = np.random.default_rng(1)
    query_s, fetch_s, hits_n = [], [], []
    for _ in range(args.queries):
        vec = centres[rng.integers(0, len(centres))] + rng.normal(size=128) * 0.02
        t = time.perf_counter()
        hits, took = index.nearest(vec, max_distance=0.6, limit=20)
        store.events_by_uid(u for u, _ in hits)
        fetch_s.append(time.perf_counter() - t)
        query_s.append(took)
        hits_n.append(len(hits))

    # new samples of 100 tracks (as the sink adds them), then an incremental refresh
    with store.engine.begin() as conn:
        conn.execute(samples.insert(), [
            {"track_uid": f"cam{t % 8}/s/{t}", "kind": "identity", "seq": 99, "ts": 0.0,
             "quality": 0.5, "encoding": json.dumps([0.0] * 128)}
            for t in range(100)
        ])  # fmt: skip
    t = time.perf_counter()
    index.refresh(force=True)
    incr_s = time.perf_counter() - t
    assert index.rebuilds == 1, "an addition should not rebuild the index"

    # re-identification merges of 10 tracks into others, then an erase of 10 tracks
    for t in range(1000, 1010):
        store.merge_tracks(f"cam{t % 8}/s/{t}", f"cam{(t + 8) % 8}/s/{t + 8}")
    t = time.perf_counter()
    index.refresh(force=True)
    merge_s = time.perf_counter() - t
    with store.engine.begin() as conn:
        store.delete_events(conn, [f"cam{t % 8}/s/{t}" for t in range(2000, 2010)])
    t = time.perf_counter()
    index.refresh(force=True)
    erase_s = time.perf_counter() - t
    assert index.rebuilds == 1, "merges and erasures should not rebuild the index"
    assert len(index) == args.tracks - 20

    encode = ""
    if args.encode:
        from pipeline.recognition.encoder import DlibEncoder
        from pipeline.recognition.enroll import find_one_face, read_rgb

        enc = DlibEncoder(num_jitters=1)
        image = read_rgb(args.encode)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            enc.encode(image, [find_one_face(image, args.encode)])
            times.append(time.perf_counter() - t)
        encode = f"| encode the photo (HOG detect + dlib, 1 jitter) | {ms(times)} |\n"

    size_mb = db.stat().st_size / 1e6
    print(f"""### Search by face: {args.tracks:,} tracks, {args.samples} samples each

`python scripts/bench_search.py --tracks {args.tracks} --samples {args.samples} \
--queries {args.queries}` on {describe()} (load average {os.getloadavg()[0]:.1f}).
SQLite store of {size_mb:,.0f} MB filled in {fill_s:.0f} s; index of {len(index):,} tracks \
({index._means.nbytes / 1e6:.0f} MB of float32 means).

| step | time |
|---|---|
| cold index build (read {args.tracks * args.samples:,} samples, mean per track) | \
{build_s:.1f} s |
| refresh, nothing changed (at most once a second, before a query) | {ms(polls)} |
| refresh after new samples of 100 tracks (incremental) | {incr_s * 1000:.1f} ms |
| refresh after 10 tracks were merged into others (re-identification) | \
{merge_s * 1000:.1f} ms |
| refresh after 10 tracks were erased (reads the samples' track index) | \
{erase_s * 1000:.1f} ms |
| query: distances to every track, top 20 within 0.6 | {ms(query_s)} |
| query + fetch the hits' events | {ms(fetch_s)} |
{encode}
Hits per query: median {statistics.median(hits_n):.0f} (every track of the queried face \
within 0.6).""")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
