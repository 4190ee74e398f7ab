"""The gallery and event-log commands through the CLI (click's runner, real SQLite)."""

import json

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


def seed_unknown(home):
    cfg = load_config(None)
    store = EventStore(cfg.store_url)
    ids = Identities.from_config(store, cfg)
    for seq in range(3):
        noise = np.random.default_rng(seq).normal(size=128) * 0.01
        f = Face(box=(0, 0, 40, 40), track_id=1, quality=40.0, encoding=list(FACE + noise))
        rec = FrameRecord(stream="door", session="s", seq=seq, ts=1e9 + seq, faces=[f])
        store.observe([rec])
        (uid,) = store.add_samples(rec, "identity")
        store.refuse(uid, store.gallery(), 0.6)
        ids.assign_unknown(uid)


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
