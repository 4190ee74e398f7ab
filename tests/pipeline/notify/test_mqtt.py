"""MQTT notifications through the real sink worker, against a real mosquitto broker.

Sink messages go through rq and the sink's job function (``stage_worker(...).work(burst)``),
as the pipeline's own do; a paho subscriber checks what the broker delivers.
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.record import Observations, Samples
from pipeline.runtime import Runtime
from pipeline.store import EventStore


def outcomes(rt: Runtime, outcome: str) -> float:
    return rt.metrics.total("facepipe_notifications_total", backend="mqtt", outcome=outcome)


def test_a_known_person_seen_by_the_sink_is_published_with_the_name(
    kit, broker, subscribe, make_rt
):
    rt = make_rt(kit.mqtt_env(broker.port))
    alice = kit.encoding(1)
    EventStore(rt.config.store_url).enroll("alice", [alice], ["photo"])
    sub = subscribe()
    kit.sink(rt, Observations([kit.frame(0, 1), kit.frame(1, 1)]))  # a track: no identity yet
    sample = kit.with_image(rt, kit.frame(1, 1, alice + 0.01 * kit.encoding(2)))
    kit.sink(rt, Samples("identity", sample))

    (seen,) = sub.wait(lambda: sub.received(f"facepipe/{kit.STREAM}/person"))
    assert seen["person"] == "alice" and seen["label"] == "alice" and seen["known"] is True
    assert seen["stream"] == kit.STREAM and seen["track_id"] == 1 and seen["ended"] is False
    assert seen["distance"] < 0.1 and seen["confidence"] == 1.0
    (ev,) = EventStore(rt.config.store_url).events()
    assert seen["id"] == ev["id"] and seen["snapshot"] == f"{kit.STREAM}/{kit.SESSION}/1.jpg"
    (new,) = sub.received("facepipe/events")
    assert new["type"] == "new" and new["before"] is None and new["after"] == seen
    assert sub.wait(lambda: sub.received("facepipe/available")) == ["online"]

    # the same sample again (a retried batch) and more frames change nothing worth telling
    kit.sink(rt, Samples("identity", sample), Observations([kit.frame(2, 1)]))
    kit.sink(rt, Observations([kit.frame(3, 1, ended=[1])]))  # the track ends
    end = sub.wait(lambda: [m for m in sub.received("facepipe/events") if m["type"] == "end"])
    assert [m["type"] for m in sub.received("facepipe/events")] == ["new", "end"]
    assert end[0]["after"]["ended"] is True and end[0]["after"]["end_time"] is not None
    assert end[0]["before"]["person"] == "alice" and end[0]["before"]["ended"] is False
    assert len(sub.received(f"facepipe/{kit.STREAM}/person")) == 1
    assert sub.wait(lambda: outcomes(rt, "sent") == 2)


def test_an_unknown_person_is_published_as_unknown_then_named_when_clustered(
    kit, broker, subscribe, make_rt
):
    rt = make_rt(kit.mqtt_env(broker.port))
    EventStore(rt.config.store_url).enroll("alice", [kit.encoding(1)], ["photo"])
    sub = subscribe()
    stranger = kit.encoding(7)
    track = Observations([kit.frame(0, 1), kit.frame(1, 1)])
    kit.sink(rt, track, Samples("identity", kit.frame(1, 1, stranger)))
    (seen,) = sub.wait(lambda: sub.received(f"facepipe/{kit.STREAM}/person"))
    assert seen["person"] is None and seen["known"] is False and seen["confidence"] is None
    assert seen["distance"] > 1.0  # to the nearest enrolled face (alice): far
    # the sink put the stranger in an unknown-N cluster at once
    assert seen["unknown_id"] == "unknown-1" and seen["label"] == "unknown-1"
    assert seen["age"] is None and seen["snapshot"] is None and seen["snapshot_url"] is None


def test_only_known_leaves_strangers_out(kit, broker, subscribe, make_rt):
    rt = make_rt(kit.mqtt_env(broker.port, FACEPIPE__NOTIFY__ONLY_KNOWN="true"))
    alice = kit.encoding(1)
    EventStore(rt.config.store_url).enroll("alice", [alice], ["photo"])
    sub = subscribe()
    stranger = Samples("identity", kit.frame(0, 1, kit.encoding(9)))  # not sent
    kit.sink(rt, stranger, Samples("identity", kit.frame(0, 2, alice)))
    (seen,) = sub.wait(lambda: sub.received(f"facepipe/{kit.STREAM}/person"))
    assert seen["person"] == "alice" and seen["track_id"] == 2
    time.sleep(0.5)
    assert len(sub.received("facepipe/events")) == 1


@pytest.mark.slow
def test_broker_killed_mid_run_the_sink_goes_on_and_the_notifier_catches_up(
    kit, broker, subscribe, make_rt
):
    rt = make_rt(kit.mqtt_env(broker.port))
    alice, bob = kit.encoding(1), kit.encoding(2)
    store = EventStore(rt.config.store_url)
    store.enroll("alice", [alice], ["photo"])
    store.enroll("bob", [bob], ["photo"])
    sub = subscribe(client_id="facepipe-test-sub")  # a persistent session, QoS 1
    kit.sink(rt, Samples("identity", kit.frame(0, 1, alice)))
    assert sub.wait(lambda: sub.received(f"facepipe/{kit.STREAM}/person"))

    broker.stop()  # SIGTERM: mosquitto saves the subscriber's session and exits
    t0 = time.monotonic()
    kit.sink(
        rt, Samples("identity", kit.frame(1, 2, bob)), Observations([kit.frame(2, 1, ended=[1])])
    )
    took = time.monotonic() - t0
    assert took < 5, f"the sink waited {took:.1f} s for the broker"
    stored = {e["track_id"]: e for e in store.events()}
    assert stored[2]["person"] == "bob" and stored[1]["ended"]  # stored while it was down

    time.sleep(1.5)  # the notifier retries meanwhile (backoff capped at 1 s)
    broker.start()  # same port; the notifier and the subscriber reconnect
    # QoS 1 is at-least-once: a message the broker had not seen acknowledged before it
    # stopped (alice's) may be delivered again after the restart; nothing may be lost
    def once(topic: str) -> list[dict]:
        out: list[dict] = []
        for m in sub.received(topic):
            if m not in out:
                out.append(m)
        return out

    people = sub.wait(lambda: len(once(f"facepipe/{kit.STREAM}/person")) >= 2, 15)
    assert people, sub.messages
    assert [p["person"] for p in once(f"facepipe/{kit.STREAM}/person")] == ["alice", "bob"]
    kinds = [m["type"] for m in sub.received("facepipe/events")]
    assert sub.wait(lambda: len(once("facepipe/events")) == 3), kinds
    assert sorted(m["type"] for m in once("facepipe/events")) == ["end", "new", "new"]
    assert sub.wait(lambda: outcomes(rt, "sent") == 3)
    assert outcomes(rt, "dropped") == outcomes(rt, "expired") == 0


def test_availability_is_retained_and_offline_after_close(kit, broker, subscribe, make_rt):
    from pipeline.notify import notifier

    rt = make_rt(kit.mqtt_env(broker.port))
    n = notifier(rt)
    sub = subscribe("facepipe/available")
    assert sub.wait(lambda: sub.received("facepipe/available")) == ["online"]
    n.close()
    late = subscribe()  # retained messages reach a subscriber that comes later
    assert late.wait(lambda: late.received("facepipe/available")) == ["offline"]


def test_a_capture_tells_its_stream_down_and_up(kit, broker, subscribe, make_rt):
    from pipeline.notify import for_capture

    rt = make_rt(kit.mqtt_env(broker.port))
    sub = subscribe()
    n = for_capture(rt, "door")
    assert n.backends[0].connected.wait(10)
    time.sleep(0.3)
    assert sub.received("facepipe/door/available") == []  # connected is not "camera up"
    n.stream_status("door", up=True)
    n.stream_status("door", up=False, reason="cannot open url source")
    n.stream_status("door", up=True)
    topic = "facepipe/door/available"
    assert sub.wait(lambda: sub.received(topic) == ["online", "offline", "online"])
    n.close()  # the capture ends: its stream is offline
    assert sub.wait(lambda: sub.received(topic)[3:] == ["offline"])
    assert sub.received("facepipe/available") == []  # the sink's topic is not the capture's
    late = subscribe()
    assert late.wait(lambda: late.received(topic)) == ["offline"]  # retained


def make_tls_files(d: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 (openssl), a password file."""
    run = functools.partial(subprocess.run, check=True, capture_output=True, cwd=d)
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
         "-out", "ca.pem", "-days", "1", "-subj", "/CN=facepipe-test-ca"])  # fmt: skip
    run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
         "-out", "server.csr", "-subj", "/CN=127.0.0.1"])  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext"])  # fmt: skip
    run(["mosquitto_passwd", "-b", "-c", "passwd", "cam", "hunter2"])
    return {n: d / n for n in ("ca.pem", "server.pem", "server.key", "passwd")}


@pytest.mark.slow
def test_tls_with_a_password_and_a_wrong_password_that_is_never_logged(
    kit, make_rt, tmp_path, caplog
):
    if kit.MOSQUITTO is None or not shutil.which("openssl") or not shutil.which("mosquitto_passwd"):
        pytest.skip("needs mosquitto (with mosquitto_passwd) and openssl")
    (tmp_path / "tls").mkdir()
    files = make_tls_files(tmp_path / "tls")
    broker = kit.Broker(
        tmp_path / "broker",
        f"allow_anonymous false\npassword_file {files['passwd']}\ncafile {files['ca.pem']}\n"
        f"certfile {files['server.pem']}\nkeyfile {files['server.key']}\n",
    )
    broker.start()
    try:
        sub = kit.Subscriber(broker.port, ca=files["ca.pem"], auth=("cam", "hunter2"))
        tls = {"FACEPIPE__NOTIFY__MQTT__TLS": "true",
               "FACEPIPE__NOTIFY__MQTT__TLS_CA_CERTS": str(files["ca.pem"]),
               "FACEPIPE__NOTIFY__MQTT__USERNAME": "cam"}  # fmt: skip
        with caplog.at_level(logging.DEBUG):
            wrong = make_rt(kit.mqtt_env(broker.port, **tls,
                                         FACEPIPE__NOTIFY__MQTT__PASSWORD="wr0ngpass",
                                         FACEPIPE__NOTIFY__MAX_DELAY_S="1"))  # fmt: skip
            kit.sink(wrong, Samples("identity", kit.frame(0, 1, kit.encoding(1))))
            assert wrong.bus.depth("sink") == 0  # stored, not waiting for the broker
            time.sleep(2.5)
            rt = make_rt(
                kit.mqtt_env(broker.port, **tls, FACEPIPE__NOTIFY__MQTT__PASSWORD="hunter2")
            )
            kit.sink(rt, Samples("identity", kit.frame(0, 7, kit.encoding(2))))
            (seen,) = sub.wait(lambda: sub.received(f"facepipe/{kit.STREAM}/person"))
        assert seen["track_id"] == 7  # the refused client's message never arrived
        assert "refused the connection" in caplog.text and "mqtts://127.0.0.1" in caplog.text
        assert "wr0ngpass" not in caplog.text and "hunter2" not in caplog.text
        assert outcomes(wrong, "expired") == 1
        sub.close()
    finally:
        broker.stop()


LWT_CHILD = """
import sys, time
from pipeline.config import MqttConfig
from pipeline.notify.mqtt import MqttNotifier
n = MqttNotifier(MqttConfig(enabled=True, port=int(sys.argv[1]), keepalive_s=5),
                 stream=sys.argv[2] or None)
n.start()
assert n.connected.wait(10)
print("connected", flush=True)
time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stream", "topic"), [("", "facepipe/available"), ("door", "facepipe/door/available")]
)
def test_a_killed_sink_or_capture_is_announced_offline_by_its_last_will(
    broker, subscribe, stream, topic
):
    """The sink's connection stands for the sink, a capture's for its stream."""
    import os
    import signal
    import sys

    repo = Path(__file__).resolve().parents[3]
    child = subprocess.Popen(
        [sys.executable, "-c", LWT_CHILD, str(broker.port), stream],
        stdout=subprocess.PIPE,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    try:
        assert child.stdout.readline().strip() == b"connected"
        sub = subscribe(topic)
        if not stream:  # a capture says online only when told its stream is up
            assert sub.wait(lambda: sub.received(topic)) == ["online"]
        # no goodbye: the broker publishes the will when the connection drops (a dead
        # machine: after 1.5 x keepalive_s of silence)
        child.send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        assert sub.wait(lambda: sub.received(topic)[-1:] == ["offline"], 15), sub.received(topic)
        assert time.monotonic() - t0 < 1.5 * 5 + 2
    finally:
        child.kill()
        child.wait()


def test_no_broker_at_all_is_logged_once_and_the_sink_goes_on(kit, make_rt, caplog):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.INFO, "pipeline.notify"):
        rt = make_rt(kit.mqtt_env(port, FACEPIPE__NOTIFY__MAX_DELAY_S="0.5"))
        t0 = time.monotonic()
        kit.sink(rt, Samples("identity", kit.frame(0, 1, kit.encoding(1))))
        kit.sink(rt, Samples("identity", kit.frame(0, 2, kit.encoding(2))))
        assert time.monotonic() - t0 < 3
        assert len(EventStore(rt.config.store_url).events()) == 2
        deadline = time.monotonic() + 10
        while outcomes(rt, "expired") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert outcomes(rt, "expired") == 2 and outcomes(rt, "sent") == 0
    assert caplog.text.count("cannot reach MQTT broker") == 1
