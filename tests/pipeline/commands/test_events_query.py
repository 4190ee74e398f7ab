"""`facepipe events` queries: --limit gives the newest N, --until, an unknown --person is
an error, frame numbers shown, names never cut (click's runner, real SQLite)."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.identities import Identities
from pipeline.record import Face, FrameRecord
from pipeline.store import EventStore

T0 = 1.8e9  # 2027-01-15


def seed(stream: str, track: int, t: float, first_seq: int, face: np.ndarray) -> None:
    """A track of three frames stored as the sink stores it (observations, identity
    samples, fusion, unknown-N clustering)."""
    cfg = load_config(None)
    store = EventStore(cfg.store_url)
    ids = Identities.from_config(store, cfg)
    for i in range(3):
        noise = np.random.default_rng([track, i]).normal(size=128) * 0.003
        f = Face(box=(0, 0, 40, 40), track_id=track, quality=40.0, encoding=list(face + noise))
        rec = FrameRecord(stream=stream, session="s", seq=first_seq + i, ts=t + i, faces=[f])
        store.observe([rec])
        (uid,) = store.add_samples(rec, "identity")
    if store.refuse(uid, store.gallery(), cfg.recognition.rule).get("person") is None:
        ids.assign_unknown(uid)


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def face(k: int) -> np.ndarray:
    return np.random.default_rng(100 + k).normal(size=128) * 0.3  # far apart: one each


def ids_of(output: str) -> list[int]:
    return [json.loads(line)["id"] for line in output.splitlines()]


def test_limit_gives_the_newest_events_oldest_first(home):
    for k in range(5):
        seed("door", k + 1, T0 + 100 * k, 10 * k, face(k))
    r = run("events", "--json")
    assert r.exit_code == 0 and ids_of(r.output) == [1, 2, 3, 4, 5]
    r = run("events", "--json", "--limit", "2")
    assert r.exit_code == 0 and ids_of(r.output) == [4, 5]
    assert run("events", "--limit", "0").exit_code == 2  # at least 1


def test_until_and_since_bound_the_time_span(home):
    for k in range(4):
        seed("door", k + 1, T0 + 100 * k, 10 * k, face(k))
    # event k is seen during [T0 + 100k, T0 + 100k + 2]
    iso = "2027-01-15T08:00:00+00:00"  # T0 exactly
    r = run("events", "--json", "--since", iso, "--until", "2027-01-15T08:03:20+00:00")
    assert r.exit_code == 0 and ids_of(r.output) == [1, 2, 3]  # 3 starts at T0 + 200
    r = run("events", "--json", "--until", "2027-01-15T08:01:39+00:00")
    assert ids_of(r.output) == [1]
    bad = run("events", "--until", "tomorrow")
    assert bad.exit_code == 2 and "--until" in bad.output


def test_an_unknown_person_is_an_error(home):
    seed("door", 1, T0, 0, face(0))
    r = run("events", "--person", "nobody")
    assert r.exit_code == 1
    assert "no person or unknown identity named 'nobody'" in r.output
    r = run("events", "--person", "unknown-7")
    assert r.exit_code == 1 and "unknown-7" in r.output
    for who in ("unknown", "unknown-1"):  # these exist
        r = run("events", "--json", "--person", who)
        assert r.exit_code == 0 and ids_of(r.output) == [1]


def test_table_shows_frame_numbers_and_never_cuts_names(home):
    long_stream = "entrance-north-parking-garage-level-2"
    seed(long_stream, 1, T0, 120, face(0))
    cfg = load_config(None)
    name = "Maria del Carmen Fernández-Villaverde y Castellanos"
    Identities.from_config(EventStore(cfg.store_url), cfg).rename("unknown-1", name)
    r = run("events")
    assert r.exit_code == 0, r.output
    header, row = r.output.splitlines()
    assert "frames" in header and f" {name} " in row and long_stream in row
    assert " 120-122 " in row  # first and last frame number within the session
    cols = header.split()
    assert cols[:3] == ["id", "person", "stream"]
    # columns line up: the stream column starts where its header does
    assert row.index(long_stream) == header.index("stream")


def test_video_files_show_the_position_in_seconds(home, redis_url, demo_media):
    """A file's capture registers its frame rate, the sink records the session, and the
    CLI table, its JSON and the API show seconds into the file; a live one shows none."""
    from fastapi.testclient import TestClient

    from pipeline.api import create_app
    from pipeline.capture import Capture
    from pipeline.record import Observations
    from pipeline.runtime import Runtime
    from pipeline.sources import Source
    from workers.sink import SinkStage

    cfg = load_config(None)
    cfg.capture.max_queue = 1000  # no detect worker here: the clip's frames just queue
    rt = Runtime.from_config(cfg, redis_url)
    cap = Capture(rt, Source(str(demo_media["video"])), "clip")
    cap.run()
    assert rt.bus.stream_info("clip", cap.session)["fps"] == 15.0  # the demo clip's rate
    rt.bus.register_stream("cam", "live1", {"source": "rtsp://cam/1", "live": True, "fps": 25.0})
    sink = SinkStage(rt)
    for stream, session in (("clip", cap.session), ("cam", "live1")):
        recs = [
            FrameRecord(stream=stream, session=session, seq=seq, ts=T0 + seq / 15,
                        faces=[Face(box=(0, 0, 40, 40), track_id=1)])
            for seq in range(45, 61)
        ]  # fmt: skip
        sink.process(Observations(recs))
    r = run("events", "--json")
    assert r.exit_code == 0, r.output
    got = {e["stream"]: e for e in map(json.loads, r.output.splitlines())}
    assert (got["clip"]["video_start_s"], got["clip"]["video_end_s"]) == (3.0, 4.0)  # 45/15
    assert got["cam"]["video_start_s"] is None and got["cam"]["video_end_s"] is None
    header, *rows = run("events").output.splitlines()
    assert "video s" in header
    row = {line.split()[2]: line for line in rows}
    assert " 45-60 " in row["clip"] and " 3.0-4.0 " in row["clip"]
    start = header.index("video s")
    assert row["cam"][start : start + len("video s")].strip() == "-"
    api = TestClient(create_app(cfg, store=sink.store, bus=rt.bus))
    items = {e["stream"]: e for e in api.get("/api/events").json()["items"]}
    assert items["clip"]["video_start_s"] == 3.0 and items["clip"]["video_end_s"] == 4.0
    assert items["cam"]["video_start_s"] is None
    one = api.get(f"/api/events/{items['clip']['id']}").json()
    assert one["video_start_s"] == 3.0
