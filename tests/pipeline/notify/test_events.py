"""Which notifications the sink's changes make, each once (no broker: a recording backend)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.config import load_config
from pipeline.notify import EventNotifier, Notification, backends, notifier
from pipeline.notify.base import Backend
from pipeline.notify.events import event_payload
from pipeline.record import Merge, Observations, Samples


class Recorder(Backend):
    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[Notification] = []

    def offer(self, note: Notification) -> bool:  # synchronous: the test reads at once
        self.notes.append(note)
        return True

    def kinds(self) -> list[tuple[str, Any, bool]]:
        return [
            (n.kind, n.message.get("after", {}).get("label"), n.person_seen) for n in self.notes
        ]


@pytest.fixture()
def sink(make_rt):
    """The real sink stage (``process`` called directly), its notifier recording."""
    from workers.sink import SinkStage

    def make(**notify: Any):
        rt = make_rt({})
        stage = SinkStage(rt)
        cfg = rt.config.notify.model_copy(update=notify)
        rec = Recorder()
        stage.notifier = EventNotifier(cfg, [rec], rt.bus, stage.store, rt.config.snapshots_path)
        return stage, rec

    return make


def test_identity_changes_are_told_once_each_and_attributes_as_an_update(kit, sink):
    stage, rec = sink()
    alice = kit.encoding(1)
    stage.store.enroll("alice", [alice], ["photo"])
    stage.gallery = type(stage.gallery)(stage.store)  # re-read: enrolled after the stage
    stranger = kit.frame(0, 1, kit.encoding(3))
    stage.process(Observations([kit.frame(0, 1)]))
    assert rec.notes == []  # a track, no identity yet: nothing to tell
    stage.process(Samples("identity", stranger))
    assert rec.kinds() == [("new", "unknown-1", True)]
    stage.process(Samples("identity", stranger))  # a retried job: the same state
    stage.process(Observations([kit.frame(1, 1)]))  # more frames: nothing worth telling
    assert len(rec.notes) == 1
    face = kit.frame(1, 1, alice)
    face.faces[0].age, face.faces[0].gender, face.faces[0].gender_confidence = 33.0, "female", 0.9
    stage.process(Samples("attributes", face))
    assert rec.kinds()[1:] == [("update", "unknown-1", False)]  # age/gender now known
    assert rec.notes[1].message["after"]["age"] == 33.0
    assert rec.notes[1].message["before"]["age"] is None
    for seq in range(2, 8):  # more samples of alice outweigh the first one
        stage.process(Samples("identity", kit.frame(seq, 1, alice)))
    assert rec.kinds()[2:] == [("update", "alice", True)]  # person seen again, now named
    assert rec.notes[2].message["before"]["label"] == "unknown-1"
    stage.process(Observations([kit.frame(9, 1, ended=[1])]))
    stage.process(Observations([kit.frame(9, 1, ended=[1])]))  # retried: counted already
    assert rec.kinds()[3:] == [("end", "alice", False)]


def test_a_track_that_ends_before_it_is_identified_is_told_when_it_is(kit, sink):
    stage, rec = sink()
    stage.process(Observations([kit.frame(0, 4), kit.frame(1, 4, ended=[4])]))
    assert [n.kind for n in rec.notes] == ["end"]
    assert rec.notes[0].message["before"] is None
    assert rec.notes[0].message["after"]["label"] == "unknown"  # no identity sample came
    stage.process(Samples("identity", kit.frame(1, 4, kit.encoding(8))))  # arrives late
    assert [n.kind for n in rec.notes] == ["end", "new"]
    assert rec.notes[1].message["after"]["ended"] is True


def test_a_merged_event_ends_naming_its_survivor(kit, sink):
    stage, rec = sink()
    bob = kit.encoding(2)
    stage.process(Samples("identity", kit.frame(0, 1, bob)))
    stage.process(Samples("identity", kit.frame(30, 2, bob + 0.01)))
    assert [n.kind for n in rec.notes] == ["new", "new"]
    first, second = (n.message["after"]["id"] for n in rec.notes)
    stage.process(Merge(kit.STREAM, kit.SESSION, from_id=2, into_id=1))
    stage.process(Merge(kit.STREAM, kit.SESSION, from_id=2, into_id=1))  # retried
    ends = [n for n in rec.notes if n.kind == "end"]
    assert len(ends) == 1 and ends[0].message["after"]["id"] == second
    assert ends[0].message["after"]["merged_into"] == first
    assert ends[0].message["after"]["end_time"] is None


@pytest.mark.parametrize(
    ("only_known", "min_confidence", "told"),
    [
        (False, 0.0, [("new", "unknown-1"), ("new", "carol"), ("update", "alice")]),
        (True, 0.0, [("new", "carol"), ("update", "alice")]),
        (False, 0.9, [("new", "unknown-1"), ("new", "carol")]),  # alice at 0.5: not told
    ],
)
def test_only_known_and_min_confidence(kit, sink, only_known, min_confidence, told):
    stage, rec = sink(only_known=only_known, min_confidence=min_confidence)
    alice, carol = kit.encoding(1), kit.encoding(5)
    stage.store.enroll("alice", [alice], ["photo"])
    stage.store.enroll("carol", [carol], ["photo"])
    stage.gallery = type(stage.gallery)(stage.store)
    stage.process(Samples("identity", kit.frame(0, 1, kit.encoding(4))))  # a stranger
    # track 2: first nearer carol (named carol, agreement 1), then a sample of alice: the
    # mean is alice's, and one sample of two picks her (agreement 0.5)
    stage.process(Samples("identity", kit.frame(0, 2, 0.6 * carol + 0.4 * alice)))
    stage.process(Samples("identity", kit.frame(1, 2, alice)))
    assert [(n.kind, n.message["after"]["label"]) for n in rec.notes] == told
    confidences = [n.message["after"]["confidence"] for n in rec.notes if n.kind == "update"]
    assert confidences in ([], [0.5])


def test_payload_of_a_row():
    row = {"id": 7, "stream": "door", "session": "s", "track_id": 3, "track_uid": "door/s/3",
           "person": None, "unknown_id": "unknown-2", "person_confidence": None,
           "person_distance": 0.71234, "age": 41.26, "age_spread": 3.0, "gender": "male",
           "gender_confidence": 0.8, "first_seen": 0.0, "last_seen": 2.5, "n_frames": 9,
           "ended": True, "snapshot": "/data/snapshots/door/s/3.jpg"}  # fmt: skip
    p = event_payload(row, None, "https://x/{id}/{path}")
    assert p["label"] == "unknown-2" and p["known"] is False and p["distance"] == 0.712
    assert (
        p["age"] == 41.3 and p["end_time"] == 2.5 and p["last_seen"] == "1970-01-01T00:00:02.500Z"
    )
    assert p["snapshot"] == "3.jpg" and p["snapshot_url"] == "https://x/7/3.jpg"


def test_config_off_by_default_validated_and_secret(make_rt, tmp_path):
    from pipeline.config import ConfigError

    rt = make_rt({})
    assert rt.config.notify.enabled is False and type(notifier(rt)).__name__ == "NullNotifier"
    cfg = load_config(None, environ={
        "FACEPIPE__NOTIFY__MQTT__ENABLED": "true",
        "FACEPIPE__NOTIFY__MQTT__USERNAME": "cam",
        "FACEPIPE__NOTIFY__MQTT__PASSWORD": "hunter2",
        "FACEPIPE__NOTIFY__WEBHOOKS": "[{url: 'https://h/x', events: [new, end]}]",
    })  # fmt: skip
    n = cfg.notify
    assert n.enabled and n.mqtt.port == 1883 and n.mqtt.topic_prefix == "facepipe"
    assert n.mqtt.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(cfg) and "hunter2" not in str(cfg.model_dump())
    assert n.webhooks[0].events == ["new", "end"] and n.webhooks[0].retries == 3
    made = backends(n)
    assert [b.name for b in made] == ["mqtt", "webhook"]
    for env, message in [
        ({"FACEPIPE__NOTIFY__MQTT__PROT": "1"}, "notify.mqtt.prot: unknown key"),
        ({"FACEPIPE__NOTIFY__WEBHOOKS": "[{url: 'ftp://h'}]"}, "notify.webhooks.0.url"),
        ({"FACEPIPE__NOTIFY__WEBHOOKS": "[{url: 'http://h', events: [person]}]"},
         "notify.webhooks.0.events.0"),
        ({"FACEPIPE__NOTIFY__MQTT__TOPIC_PREFIX": "a/#"}, "notify.mqtt.topic_prefix"),
        ({"FACEPIPE__NOTIFY__MIN_CONFIDENCE": "2"}, "notify.min_confidence"),
        ({"FACEPIPE__NOTIFY__SNAPSHOT_URL": "http://h/{event}"}, "notify.snapshot_url: only"),
        ({"FACEPIPE__NOTIFY__WEBHOOKS": "[{url: 'http://h', events: []}]"},
         "notify.webhooks.0.events"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            load_config(None, environ=env)
    path = tmp_path / "c.yaml"
    path.write_text("notify:\n  webhooks:\n    - url: http://h/x\n      timeout: 3\n")
    with pytest.raises(ConfigError, match=r"notify\.webhooks\.0\.timeout: unknown key"):
        load_config(path, environ={})


def test_every_notify_key_is_documented_in_the_shipped_config():
    from pathlib import Path

    import yaml

    from pipeline.config import MqttConfig, NotifyConfig, WebhookConfig

    path = Path(__file__).resolve().parents[3] / "config" / "facepipe.yaml"
    text = path.read_text()
    shipped = yaml.safe_load(text)["notify"]
    assert set(shipped) == set(NotifyConfig.model_fields)
    assert set(shipped["mqtt"]) == set(MqttConfig.model_fields)
    example = text[text.index("  webhooks:\n  #") :]  # the commented webhook example
    for key in WebhookConfig.model_fields:
        assert f"{key}:" in example, key
