"""`facepipe queues`: each stage's queue at a glance, a stage's failed messages, and the
failed messages of a stream stage sent back (a real Redis, the real worker loop)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.record import FrameRecord, Merge, Observations
from pipeline.runtime import Runtime
from workers import base
from workers.base import stage_worker


def queues(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["queues", *args])


def test_failed_sink_messages_are_listed_and_sent_back(redis_url, home, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    rt = Runtime.from_config(load_config(None, environ={}), redis_url)
    base.set_runtime(rt)
    bad = Observations([FrameRecord(stream="../up", session="s", seq=0, ts=0.0)])
    rt.bus.send("sink", bad)  # a stream name the sink refuses: fails every run
    rt.bus.send("sink", Merge("cam", "s", 2, 1))
    rt.bus.send("detect", FrameRecord(stream="cam", session="s", seq=0, ts=0.0))

    table = json.loads(queues("--json").output)
    assert table["sink"] == {"transport": "stream", "waiting": 2, "running": 0, "failed": 0,
                             "dead_letters": 0}  # fmt: skip
    assert table["detect"]["transport"] == "rq" and table["detect"]["waiting"] == 1
    text = queues().output
    assert "sink       stream           2       0      0     0" in text, text

    stage_worker("sink", rt, name="sink-q").work(burst=True, logging_level="CRITICAL")
    table = json.loads(queues("--json").output)
    assert table["sink"]["waiting"] == 0 and table["sink"]["failed"] == 1
    (row,) = json.loads(queues("--failed", "sink", "--json").output)
    assert row["attempts"] == 3 and "bad stream name '../up'" in row["reason"]
    assert "3 run(s): " in queues("--failed", "sink").output

    r = queues("--requeue", "sink")
    assert r.exit_code == 0 and "sink: 1 sent again" in r.output
    assert rt.bus.failed("sink") == 0 and rt.bus.peek("sink") == [bad.to_dict()]
    assert json.loads(queues("--requeue", "sink", "--json").output) == {"requeued": 0}

    r = queues("--requeue", "detect")  # rq's own tool for rq stages
    assert r.exit_code != 0 and "rq requeue" in r.output and "facepipe.detect" in r.output
    assert json.loads(queues("--failed", "detect", "--json").output) == []
    r = queues("--failed", "nosuch")
    assert r.exit_code != 0 and "nosuch" in r.output
