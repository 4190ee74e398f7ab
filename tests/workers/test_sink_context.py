"""The sink's context images (the whole frame of an event's snapshot, beside it): written
with the snapshot, replaced with it, deleted with the event (erase, retention, merge),
never outside the snapshots directory. A real store (SQLite) and a real redis-server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.frames import RAW_MAGIC, is_jpeg
from pipeline.identities import Identities
from pipeline.record import Face, FrameRecord, Merge, Observations, Samples
from pipeline.runtime import Runtime
from pipeline.store import delete_snapshot_files
from workers.sink import SinkStage

W, H = 1600, 900  # wider than store.context_max_width (960): scaled down


def sink_for(redis_url: str, **env: str) -> SinkStage:
    environ = {"FACEPIPE__REDIS__PREFIX": "t", **env}
    return SinkStage(Runtime.from_config(load_config(None, environ=environ), redis_url))


def frame(sink: SinkStage, seq: int, faces: list[Face], stream: str = "door",
          session: str = "s1", ts: float | None = None) -> FrameRecord:  # fmt: skip
    """A frame whose image (a distinct pattern per seq) is in Redis, with ``faces``."""
    rng = np.random.default_rng(seq)
    image = np.full((H, W, 3), 60, np.uint8)
    image[100:400, 200:500] = rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)
    ts = time.time() if ts is None else ts
    rec = FrameRecord(stream=stream, session=session, seq=seq, ts=ts, width=W, height=H,
                      faces=faces)  # fmt: skip
    rec.key = sink.rt.bus.frame_key(rec)
    sink.rt.frames.put(rec.key, image)
    return rec


def sample(sink: SinkStage, seq: int, quality: float, track: int = 1, box=(200, 100, 300, 300),
           **kw) -> FrameRecord:  # type: ignore[no-untyped-def]  # fmt: skip
    enc = list(np.random.default_rng(100 + track).normal(size=128) * 0.1)  # 1.6 apart
    faces = [Face(box=box, track_id=track, quality=quality, encoding=enc)]
    if track == 1:  # a second face in the frame: its box is in the context too
        faces.append(Face(box=(1200, 500, 100, 100), track_id=7, quality=0.01, encoding=enc))
    rec = frame(sink, seq, faces, **kw)
    sink.process(Observations([rec]))
    sink.process(Samples("identity", rec))
    return rec


def event(sink: SinkStage, track: int = 1, stream: str = "door") -> dict:  # type: ignore[type-arg]
    (ev,) = [e for e in sink.store.events(stream=stream) if e["track_id"] == track]
    return ev


def test_context_image_is_written_beside_the_snapshot_and_replaced_with_it(redis_url, home):
    sink = sink_for(redis_url)
    sample(sink, 0, quality=0.3)
    ev = event(sink)
    snap, ctx = Path(ev["snapshot"]), Path(ev["context"])
    assert ctx.parent == snap.parent == sink.snapshots.resolve() / "door" / "s1"
    assert ctx.name == "1-context.jpg" and ctx.is_file()
    img = cv2.imread(str(ctx))
    assert img.shape[:2] == (540, 960)  # scaled to context_max_width, aspect kept
    assert json.loads(ev["context_faces"]) == [[120, 60, 180, 180, 1], [720, 300, 60, 60, 7]]
    first = ctx.read_bytes()

    sample(sink, 1, quality=0.2, box=(210, 100, 300, 300))  # worse: nothing changes
    ev = event(sink)
    assert ctx.read_bytes() == first and json.loads(ev["context_faces"])[0][0] == 120

    sample(sink, 2, quality=0.9, box=(600, 100, 300, 300))  # better: both replaced
    ev = event(sink)
    assert ev["snapshot_quality"] == pytest.approx(0.9) and Path(ev["context"]) == ctx
    assert ctx.read_bytes() != first
    assert json.loads(ev["context_faces"])[0] == [360, 60, 180, 180, 1]


def test_no_context_image_when_turned_off(redis_url, home):
    sink = sink_for(redis_url, FACEPIPE__STORE__CONTEXT_IMAGES="false")
    sample(sink, 0, quality=0.3)
    ev = event(sink)
    assert ev["snapshot"] and ev["context"] is None
    assert not list(Path(ev["snapshot"]).parent.glob("*context*"))


def test_erase_and_retention_delete_the_context_image(redis_url, home):
    sink = sink_for(redis_url)
    sample(sink, 0, quality=0.5, track=1)
    sample(sink, 1, quality=0.5, track=2, stream="lobby", ts=time.time() - 10 * 86400)
    one, two = event(sink, 1), event(sink, 2, "lobby")
    for ev in (one, two):
        assert Path(ev["context"]).is_file()
    ids = Identities.from_config(sink.store, sink.rt.config)
    name = one["unknown_id"]
    assert name and name != two["unknown_id"]
    deleted = ids.erase(name)
    assert one["context"] in deleted.snapshots
    delete_snapshot_files(deleted.snapshots, sink.snapshots)
    assert not Path(one["context"]).exists() and not Path(one["snapshot"]).exists()
    assert Path(two["context"]).is_file()
    pruned = ids.prune(time.time() - 86400)  # retention: the lobby event is 10 days old
    assert two["context"] in pruned.snapshots
    delete_snapshot_files(pruned.snapshots, sink.snapshots)
    assert not Path(two["context"]).exists()


def test_a_merge_keeps_the_better_snapshots_context_and_deletes_the_other(redis_url, home):
    sink = sink_for(redis_url)
    sample(sink, 0, quality=0.3, track=1)
    sample(sink, 5, quality=0.8, track=2)  # the merged (younger) track has the better face
    old, young = event(sink, 1), event(sink, 2)
    sink.process(Merge("door", "s1", from_id=2, into_id=1))
    ev = event(sink, 1)
    assert ev["context"] == young["context"] and ev["snapshot"] == young["snapshot"]
    assert Path(ev["context"]).is_file()
    assert not Path(old["context"]).exists() and not Path(old["snapshot"]).exists()

    sample(sink, 10, quality=0.2, track=3)
    worse = event(sink, 3)
    sink.process(Merge("door", "s1", from_id=3, into_id=1))
    assert event(sink, 1)["context"] == young["context"]
    assert not Path(worse["context"]).exists() and Path(young["context"]).is_file()


@pytest.mark.parametrize(
    ("stream", "session"), [("..", "s1"), ("door", ".."), ("a/b", "s1"), ("door", "x/../../y")]
)
def test_context_path_is_refused_outside_the_snapshots_directory(redis_url, home, stream, session):
    sink = sink_for(redis_url)
    rec = FrameRecord(stream=stream, session=session, seq=0, ts=0.0)
    with pytest.raises(ValueError):
        sink.context_path(rec, 1)


def test_context_path_stays_under_a_symlinked_snapshots_dir(redis_url, home, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    sink = sink_for(redis_url)
    sink.snapshots.mkdir(parents=True, exist_ok=True)
    (sink.snapshots / "door").symlink_to(outside)  # a stream directory pointing out
    rec = FrameRecord(stream="door", session="s1", seq=0, ts=0.0)
    with pytest.raises(ValueError, match="outside"):
        sink.context_path(rec, 1)


@pytest.mark.parametrize("fmt", ["jpeg", "raw"])
def test_a_frame_narrow_enough_is_kept_as_it_was_stored(redis_url, home, fmt):
    """No scaling needed: the context image is the frame's JPEG from Redis, byte for byte
    (no second encoding), and the snapshot is cut from the same pixels; a raw frame is
    encoded once, to JPEG."""
    sink = sink_for(redis_url, FACEPIPE__CAPTURE__FRAME_FORMAT=fmt)
    image = np.full((360, 640, 3), 60, np.uint8)
    image[50:250, 100:300] = np.random.default_rng(3).integers(0, 255, (200, 200, 3), np.uint8)
    image[50:250, 100:300, 2] = 255  # red in BGR: a channel swap would show
    enc = list(np.random.default_rng(5).normal(size=128) * 0.1)
    rec = FrameRecord(stream="door", session="s1", seq=0, ts=time.time(), width=640,
                      height=360, faces=[Face(box=(120, 70, 160, 160), track_id=1,
                                              quality=0.5, encoding=enc)])  # fmt: skip
    rec.key = sink.rt.bus.frame_key(rec)
    sink.rt.frames.put(rec.key, image)
    stored = sink.rt.frames.get_encoded(rec.key)
    sink.process(Observations([rec]))
    sink.process(Samples("identity", rec))
    ev = event(sink)
    context = Path(ev["context"]).read_bytes()
    assert is_jpeg(context)
    if fmt == "jpeg":
        assert context == stored
    else:
        assert stored.startswith(RAW_MAGIC)
        seen = cv2.imdecode(np.frombuffer(context, np.uint8), cv2.IMREAD_COLOR)
        assert np.abs(seen.astype(int) - image).mean() < 10  # noise, JPEG quality 80
        assert seen[60:240, 110:290, 2].mean() > 220 > seen[60:240, 110:290, 0].mean() + 60
    assert json.loads(ev["context_faces"]) == [[120, 70, 160, 160, 1]]
    snap = cv2.imread(ev["snapshot"])
    assert snap.shape[0] == snap.shape[1] == 288  # 160 grown by 0.4 on each side
    centre = snap[100:180, 100:180].reshape(-1, 3).mean(axis=0)
    assert centre[2] > 220 and centre[2] > centre[0] + 60  # still red: BGR written as BGR
