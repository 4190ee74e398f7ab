"""MQTT notifications through the real sink worker, against a real mosquitto broker.

Sink messages go through rq and the sink's job function (``stage_worker(...).work(burst)``),
as the pipeline's own do; a paho subscriber checks what the broker delivers.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from pipeline.record import Face, FrameRecord, Observations, Samples
from pipeline.runtime import Runtime
from pipeline.store import EventStore
from workers.base import stage_worker

STREAM, SESSION = "door", "s1"


def encoding(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128)
    return v / np.linalg.norm(v)  # random unit vectors are ~1.4 apart: strangers


def mqtt_env(port: int, **more: str) -> dict[str, str]:
    return {
        "FACEPIPE__NOTIFY__MQTT__ENABLED": "true",
        "FACEPIPE__NOTIFY__MQTT__PORT": str(port),
        "FACEPIPE__NOTIFY__MQTT__RECONNECT_MAX_S": "1",
        **more,
    }


def frame(seq: int, track: int, enc: np.ndarray | None = None, ended: tuple = ()) -> FrameRecord:
    face = Face(box=(40, 40, 60, 60), score=0.99, track_id=track)
    if enc is not None:
        face.quality, face.encoding = 0.9, [float(x) for x in enc]
    return FrameRecord(stream=STREAM, session=SESSION, seq=seq, ts=time.time(), width=160,
                       height=160, faces=[face], ended_tracks=list(ended))  # fmt: skip


def sink(rt: Runtime, *messages: object) -> None:
    """Queue ``messages`` for the sink and run the sink worker until its queue is empty."""
    for m in messages:
        rt.bus.send("sink", m)
    stage_worker("sink", rt, name="sink-test").work(burst=True, logging_level="WARNING")
    assert rt.bus.depth("sink") == 0


def with_image(rt: Runtime, rec: FrameRecord) -> FrameRecord:
    """``rec`` with a grey image in Redis (so the sink writes a snapshot)."""
    rec.key = rt.bus.frame_key(rec)
    rt.frames.put(rec.key, np.full((160, 160, 3), 128, np.uint8))
    return rec


def outcomes(rt: Runtime, outcome: str) -> float:
    return rt.metrics.total("facepipe_notifications_total", backend="mqtt", outcome=outcome)


def test_a_known_person_seen_by_the_sink_is_published_with_the_name(broker, subscribe, make_rt):
    rt = make_rt(mqtt_env(broker.port))
    alice = encoding(1)
    EventStore(rt.config.store_url).enroll("alice", [alice], ["photo"])
    sub = subscribe()
    sink(rt, Observations([frame(0, 1), frame(1, 1)]))  # a track: no identity yet
    sample = with_image(rt, frame(1, 1, alice + 0.01 * encoding(2)))
    sink(rt, Samples("identity", sample))

    (seen,) = sub.wait(lambda: sub.received(f"facepipe/{STREAM}/person"))
    assert seen["person"] == "alice" and seen["label"] == "alice" and seen["known"] is True
    assert seen["stream"] == STREAM and seen["track_id"] == 1 and seen["ended"] is False
    assert seen["distance"] < 0.1 and seen["confidence"] == 1.0
    (ev,) = EventStore(rt.config.store_url).events()
    assert seen["id"] == ev["id"] and seen["snapshot"] == f"{STREAM}/{SESSION}/1.jpg"
    (new,) = sub.received("facepipe/events")
    assert new["type"] == "new" and new["before"] is None and new["after"] == seen
    assert sub.wait(lambda: sub.received("facepipe/available")) == ["online"]

    # the same sample again (a retried batch) and more frames change nothing worth telling
    sink(rt, Samples("identity", sample), Observations([frame(2, 1)]))
    sink(rt, Observations([frame(3, 1, ended=[1])]))  # the track ends
    end = sub.wait(lambda: [m for m in sub.received("facepipe/events") if m["type"] == "end"])
    assert [m["type"] for m in sub.received("facepipe/events")] == ["new", "end"]
    assert end[0]["after"]["ended"] is True and end[0]["after"]["end_time"] is not None
    assert end[0]["before"]["person"] == "alice" and end[0]["before"]["ended"] is False
    assert len(sub.received(f"facepipe/{STREAM}/person")) == 1
    assert sub.wait(lambda: outcomes(rt, "sent") == 2)


def test_an_unknown_person_is_published_as_unknown_then_named_when_clustered(
    broker, subscribe, make_rt
):
    rt = make_rt(mqtt_env(broker.port))
    EventStore(rt.config.store_url).enroll("alice", [encoding(1)], ["photo"])
    sub = subscribe()
    stranger = encoding(7)
    sink(rt, Observations([frame(0, 1), frame(1, 1)]),
         Samples("identity", frame(1, 1, stranger)))  # fmt: skip
    (seen,) = sub.wait(lambda: sub.received(f"facepipe/{STREAM}/person"))
    assert seen["person"] is None and seen["known"] is False and seen["confidence"] is None
    assert seen["distance"] > 1.0  # to the nearest enrolled face (alice): far
    # the sink put the stranger in an unknown-N cluster at once
    assert seen["unknown_id"] == "unknown-1" and seen["label"] == "unknown-1"
    assert seen["age"] is None and seen["snapshot"] is None and seen["snapshot_url"] is None


def test_only_known_and_min_confidence_filter_what_is_sent(broker, subscribe, make_rt):
    rt = make_rt(mqtt_env(broker.port, FACEPIPE__NOTIFY__ONLY_KNOWN="true"))
    alice = encoding(1)
    EventStore(rt.config.store_url).enroll("alice", [alice], ["photo"])
    sub = subscribe()
    sink(rt, Samples("identity", frame(0, 1, encoding(9))),  # a stranger: not sent
         Samples("identity", frame(0, 2, alice)))  # fmt: skip
    (seen,) = sub.wait(lambda: sub.received(f"facepipe/{STREAM}/person"))
    assert seen["person"] == "alice" and seen["track_id"] == 2
    time.sleep(0.5)
    assert len(sub.received("facepipe/events")) == 1


@pytest.mark.slow
def test_broker_killed_mid_run_the_sink_goes_on_and_the_notifier_catches_up(
    broker, subscribe, make_rt
):
    rt = make_rt(mqtt_env(broker.port))
    alice, bob = encoding(1), encoding(2)
    store = EventStore(rt.config.store_url)
    store.enroll("alice", [alice], ["photo"])
    store.enroll("bob", [bob], ["photo"])
    sub = subscribe(client_id="facepipe-test-sub")  # a persistent session, QoS 1
    sink(rt, Samples("identity", frame(0, 1, alice)))
    assert sub.wait(lambda: sub.received(f"facepipe/{STREAM}/person"))

    broker.stop()  # SIGTERM: mosquitto saves the subscriber's session and exits
    t0 = time.monotonic()
    sink(rt, Samples("identity", frame(1, 2, bob)), Observations([frame(2, 1, ended=[1])]))
    took = time.monotonic() - t0
    assert took < 5, f"the sink waited {took:.1f} s for the broker"
    stored = {e["track_id"]: e for e in store.events()}
    assert stored[2]["person"] == "bob" and stored[1]["ended"]  # stored while it was down

    time.sleep(1.5)  # the notifier retries meanwhile (backoff capped at 1 s)
    broker.start()  # same port; the notifier and the subscriber reconnect
    people = sub.wait(lambda: len(sub.received(f"facepipe/{STREAM}/person")) >= 2, 15)
    assert people, sub.messages
    assert [p["person"] for p in sub.received(f"facepipe/{STREAM}/person")] == ["alice", "bob"]
    kinds = [m["type"] for m in sub.received("facepipe/events")]
    assert sub.wait(lambda: len(sub.received("facepipe/events")) == 3), kinds
    assert sorted(m["type"] for m in sub.received("facepipe/events")) == ["end", "new", "new"]
    assert sub.wait(lambda: outcomes(rt, "sent") == 3)
    assert outcomes(rt, "dropped") == outcomes(rt, "expired") == 0


def test_availability_is_retained_and_offline_after_close(broker, subscribe, make_rt):
    from pipeline.notify import notifier

    rt = make_rt(mqtt_env(broker.port))
    n = notifier(rt)
    sub = subscribe("facepipe/available")
    assert sub.wait(lambda: sub.received("facepipe/available")) == ["online"]
    n.stream_status("door", up=False, reason="cannot open url source")
    n.close()
    late = subscribe()  # retained messages reach a subscriber that comes later
    assert late.wait(lambda: late.received("facepipe/available")) == ["offline"]
    assert late.wait(lambda: late.received("facepipe/door/available")) == ["offline"]
