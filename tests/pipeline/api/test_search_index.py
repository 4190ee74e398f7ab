"""The search index follows the store: incremental for new samples, rebuilt after a
deletion or a merge; its distances are those of the tracks' weighted mean encodings."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from pipeline.api.search import SearchIndex, parse_encodings
from pipeline.config import load_config
from pipeline.identities import Identities
from pipeline.record import Face, FrameRecord
from pipeline.store import EventStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        return EventStore(f"sqlite:///{tmp_path / 'e.db'}")
    return EventStore(request.getfixturevalue("pg_url"))


def add(store: EventStore, track: int, seq: int, enc: np.ndarray, quality: float) -> None:
    f = Face(box=(0, 0, 40, 40), track_id=track, quality=quality, encoding=list(enc))
    rec = FrameRecord(stream="cam", session="s", seq=seq, ts=1e9 + seq, faces=[f])
    store.observe([rec])
    store.add_samples(rec, "identity")


def brute(store: EventStore, q: np.ndarray) -> dict[str, float]:
    ids = Identities.from_config(store, load_config(None, environ={}))
    with store.engine.connect() as conn:
        uids = [r[0] for r in conn.execute(sa.text("select distinct track_uid from samples"))]
        return {u: float(np.linalg.norm(ids.track_encoding(conn, u) - q)) for u in uids}


def test_parse_encodings_matches_json():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(3, 128))
    import json

    got = parse_encodings([json.dumps(list(map(float, v))) for v in vecs])
    assert np.array_equal(got, vecs)
    with pytest.raises(ValueError, match="128-d"):
        parse_encodings(["[1.0, 2.0]"])


def test_nearest_follows_new_samples_deletions_and_merges(store):
    rng = np.random.default_rng(1)
    faces = rng.normal(size=(6, 128)) * 0.06  # ~0.96 apart
    for t in range(6):
        for k in range(3):
            add(store, t + 1, 10 * t + k, faces[t] + rng.normal(size=128) * 0.01, 0.1 + 0.2 * k)
    index = SearchIndex(store, poll_s=0)
    index.refresh()
    assert len(index) == 6 and index.rebuilds == 1
    q = faces[2] + rng.normal(size=128) * 0.02
    hits, seconds = index.nearest(q, max_distance=2.0, limit=6)
    want = brute(store, q)
    assert [u for u, _ in hits] == sorted(want, key=want.get)
    assert all(abs(d - want[u]) < 1e-4 for u, d in hits) and seconds < 1.0
    assert index.nearest(q, max_distance=0.3, limit=10)[0][0][0] == "cam/s/3"
    assert len(index.nearest(q, max_distance=0.3, limit=10)[0]) == 1
    assert len(index.nearest(q, max_distance=2.0, limit=2)[0]) == 2

    # new samples: folded in without a rebuild (track 7 appears, track 1 moves towards q)
    add(store, 7, 100, q, 0.9)
    for k in range(5):
        add(store, 1, 5 + k, q, 0.9)
    index.refresh()
    assert index.rebuilds == 1 and len(index) == 7
    want = brute(store, q)
    hits, _ = index.nearest(q, 2.0, 10)
    assert [u for u, _ in hits] == sorted(want, key=want.get)[: len(hits)]
    assert all(abs(d - want[u]) < 1e-4 for u, d in hits)
    assert hits[0] == ("cam/s/7", pytest.approx(0.0, abs=1e-5))

    # a merge moves samples to another track: applied without re-reading encodings
    store.merge_tracks("cam/s/7", "cam/s/3")
    index.refresh()
    assert index.rebuilds == 1 and "cam/s/7" not in index.uids and len(index) == 6
    want = brute(store, q)
    hits, _ = index.nearest(q, 2.0, 10)
    assert [u for u, _ in hits] == sorted(want, key=want.get)
    assert all(abs(d - want[u]) < 1e-4 for u, d in hits)

    # a deletion (an erase): the track leaves the index, the others stay as they were
    with store.engine.begin() as conn:
        store.delete_events(conn, ["cam/s/2"])
    add(store, 8, 200, faces[4], 0.5)  # and a new track in the same poll
    index.refresh()
    assert index.rebuilds == 1 and "cam/s/2" not in index.uids and len(index) == 6
    want = brute(store, q)
    hits, _ = index.nearest(q, 2.0, 10)
    assert [u for u, _ in hits] == sorted(want, key=want.get)
    assert all(abs(d - want[u]) < 1e-4 for u, d in hits)
    # the same, built from scratch
    fresh = SearchIndex(store, poll_s=0)
    fresh.refresh()
    again = fresh.nearest(q, 2.0, 10)[0]
    assert [u for u, _ in again] == [u for u, _ in hits]
    assert [d for _, d in again] == pytest.approx([d for _, d in hits], abs=1e-5)
    index.refresh()
    assert index.rebuilds == 1  # nothing changed: nothing done

    # the newest samples deleted (SQLite may reuse their ids): read again, still right
    with store.engine.begin() as conn:
        store.delete_events(conn, ["cam/s/8"])
    for k in range(3):
        add(store, 9, 300 + k, faces[5], 0.5)
    index.refresh()
    assert index.rebuilds == 2 and "cam/s/8" not in index.uids and "cam/s/9" in index.uids
    want = brute(store, q)
    hits, _ = index.nearest(q, 2.0, 10)
    assert [u for u, _ in hits] == sorted(want, key=want.get)


def test_polls_the_store_at_most_every_poll_s(store):
    add(store, 1, 0, np.zeros(128), 0.5)
    index = SearchIndex(store, poll_s=60)
    index.refresh()
    add(store, 2, 1, np.ones(128) * 0.01, 0.5)
    index.refresh()
    assert len(index) == 1  # not asked again within a minute
    index.refresh(force=True)
    assert len(index) == 2
