"""The gallery and event-log commands through the CLI (click's runner, real SQLite)."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.commands.events import parse_since
from pipeline.config import load_config
from pipeline.identities import Identities
from pipeline.record import Face, FrameRecord
from pipeline.store import EventStore

FACE = np.random.default_rng(2).normal(size=128) * 0.08


def test_parse_since():
    assert parse_since("1h", now=10_000.0) == 6400.0
    assert parse_since("30m", now=10_000.0) == 8200.0
    assert parse_since("2d", now=200_000.0) == 200_000.0 - 172_800
    assert parse_since("2026-11-25T10:00:00+00:00") == 1795600800.0
    import click

    with pytest.raises(click.BadParameter, match="duration"):
        parse_since("yesterday")


def run(*args):
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r


def seed_track(face, stream="door", track=1, frames=range(3)) -> str:
    """A track's identity samples stored as the sink does (unmatched: an unknown-N)."""
    cfg = load_config(None)
    store = EventStore(cfg.store_url)
    ids = Identities.from_config(store, cfg)
    for seq in frames:
        noise = np.random.default_rng([track, seq]).normal(size=128) * 0.003
        f = Face(box=(0, 0, 40, 40), track_id=track, quality=40.0, encoding=list(face + noise))
        rec = FrameRecord(stream=stream, session="s", seq=seq, ts=1e9 + seq, faces=[f])
        store.observe([rec])
        (uid,) = store.add_samples(rec, "identity")
        if store.refuse(uid, store.gallery(), cfg.recognition.rule).get("person") is None:
            ids.assign_unknown(uid)
    return uid


def seed_unknown(home):
    seed_track(FACE)


def test_unknowns_rename_not_and_events_json(home):
    seed_unknown(home)
    r = run("unknowns", "--json")
    (u,) = [json.loads(x) for x in r.output.splitlines()]
    assert u["name"] == "unknown-1" and u["events"] == 1 and u["streams"] == ["door"]

    r = run("events", "--json", "--person", "unknown-1")
    (ev,) = [json.loads(x) for x in r.output.splitlines()]
    assert ev["person"] == "unknown" and ev["unknown_id"] == "unknown-1"
    assert ev["first_seen"] == "2001-09-09T01:46:40.000Z" and ev["frames"] == 3

    r = run("people", "--rename", "unknown-1", "zoe")
    assert r.exit_code == 0 and "1 past event(s) relabelled" in r.output
    (ev,) = [json.loads(x) for x in run("events", "--json").output.splitlines()]
    assert ev["person"] == "zoe"
    assert json.loads(run("people", "--json").output) == {"name": "zoe", "photos": 1}

    r = run("events", "--not", "zoe", str(ev["id"]))
    assert r.exit_code == 0 and "now unknown" in r.output
    (ev,) = [json.loads(x) for x in run("events", "--json").output.splitlines()]
    assert ev["person"] == "unknown"

    assert run("events", "--json", "--since", "1h").output == ""  # all in 2001
    bad = CliRunner().invoke(main, ["events", "--not", "zoe", "999"])
    assert bad.exit_code != 0 and "no event 999" in bad.output
    bad = CliRunner().invoke(main, ["people", "--merge", "zoe", "nobody"])
    assert bad.exit_code != 0 and "nobody" in bad.output


def snapshot_of(store: EventStore, uid: str, root) -> str:
    """A snapshot file for the event of ``uid`` under the snapshots directory ``root``."""
    path = root / "door" / "s" / f"{uid.rsplit('/', 1)[1]}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"jpeg")
    store.set_snapshot(uid, str(path), 0.9)
    return str(path)


def test_people_erase_deletes_events_samples_and_snapshot_files(home, tmp_path):
    seed_unknown(home)
    cfg = load_config(None)
    store = EventStore(cfg.store_url)
    (ev,) = store.events()
    snap = snapshot_of(store, ev["track_uid"], cfg.snapshots_path)
    outside = tmp_path / "not-ours.jpg"  # a path the store names outside the directory
    outside.write_bytes(b"keep")
    r = run("people", "--rename", "unknown-1", "zoe")
    assert r.exit_code == 0, r.output
    r = run("people", "--erase", "zoe")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == (
        "erased zoe: 1 event(s), 3 sample(s), 0 negative(s), 1 snapshot file(s) deleted"
    )
    assert store.events() == [] and store.people() == [] and not Path(snap).exists()
    assert not (cfg.snapshots_path / "door").exists()  # emptied directories go too
    assert outside.exists()
    bad = CliRunner().invoke(main, ["people", "--erase", "zoe"])
    assert bad.exit_code == 1 and "no person named 'zoe'" in bad.output


def test_db_prune_by_days_or_by_the_retention_setting(home, monkeypatch):
    seed_unknown(home)  # seen in 2001
    cfg = load_config(None)
    store = EventStore(cfg.store_url)
    (ev,) = store.events()
    snap = snapshot_of(store, ev["track_uid"], cfg.snapshots_path)
    bad = CliRunner().invoke(main, ["db", "prune"])
    assert bad.exit_code == 2 and "store.retention_days" in bad.output  # nothing to go by
    assert run("db", "prune", "--days", "100000").output.startswith(
        "pruned what was last seen over 100000 day(s) ago: 0 event(s)"
    )
    monkeypatch.setenv("FACEPIPE__STORE__RETENTION_DAYS", "30")
    r = run("db", "prune")
    assert "30 day(s) ago: 1 event(s), 3 sample(s), 0 negative(s), 1 snapshot file(s)" in r.output
    assert store.events() == [] and not Path(snap).exists()


def test_the_sink_applies_retention_at_most_once_an_hour(home, redis_url, monkeypatch):
    from pipeline.runtime import Runtime
    from workers import sink as sink_module

    seed_unknown(home)
    monkeypatch.setenv("FACEPIPE__STORE__RETENTION_DAYS", "30")
    cfg = load_config(None)
    stage = sink_module.SinkStage(Runtime.from_config(cfg, redis_url))
    store = stage.store
    stage.maybe_prune()  # the first message a sink handles prunes
    assert store.events() == []
    seed_unknown(home)
    stage.maybe_prune()  # within the hour: nothing
    assert len(store.events()) == 1
    monkeypatch.setattr(stage, "_next_prune", 0.0)  # an hour later
    stage.maybe_prune()
    assert store.events() == []


def test_rename_merge_and_not_report_exactly_the_events_they_change(home):
    """The measured scenario: two people in the same frames (tracks 1 and 2, frames
    0-19), three unknown clusters 0.54 apart (clusters at 0.5, names at 0.6)."""
    u1, u2, u3 = FACE + np.eye(128)[:3] * 0.54 / np.sqrt(2)
    seed_track(u1, "cam", 1, range(20))
    seed_track(u2, "cam", 2, range(20))
    seed_track(u1, "cam2", 3)
    seed_track(u2, "cam2", 4)
    seed_track(u3, "cam2", 5, range(10, 13))

    def who():
        return {e["id"]: e["unknown_id"] or e["person"]
                for e in map(json.loads, run("events", "--json").output.splitlines())}  # fmt: skip

    assert who() == {1: "unknown-1", 2: "unknown-2", 3: "unknown-1", 4: "unknown-2",
                     5: "unknown-3"}  # fmt: skip
    r = run("people", "--rename", "unknown-1", "NEWNAME")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == "renamed unknown-1 to NEWNAME; 2 past event(s) relabelled"
    assert lines[1:] == [
        f"  event {i}: unknown-1 -> NEWNAME (renamed unknown-1 to NEWNAME)" for i in (1, 3)
    ]
    assert who() == {1: "NEWNAME", 2: "unknown-2", 3: "NEWNAME", 4: "unknown-2",
                     5: "unknown-3"}  # fmt: skip

    r = run("people", "--json", "--merge", "unknown-3", "unknown-2")
    out = json.loads(r.output)
    assert out["result"] == "merged unknown-2 into unknown-3"
    assert [(c["event"], c["old"], c["new"]) for c in out["changes"]] == [
        (2, "unknown-2", "unknown-3"), (4, "unknown-2", "unknown-3")
    ]  # fmt: skip
    r = run("people", "--json", "--merge", "unknown-3", "unknown-1")
    assert r.exit_code == 1 and "no unknown identity named 'unknown-1'" in r.output

    r = run("events", "--json", "--not", "NEWNAME", "3")
    out = json.loads(r.output)
    assert out["result"].startswith("event 3 is not NEWNAME: now unknown-")
    ((c),) = out["changes"]
    assert (c["event"], c["old"]) == (3, "NEWNAME") and "event 3 is not NEWNAME" in c["reason"]
    assert {k: v for k, v in who().items() if k != 3} == {
        1: "NEWNAME", 2: "unknown-3", 4: "unknown-3", 5: "unknown-3"
    }  # fmt: skip
