"""A real mosquitto broker on a free 127.0.0.1 port, an MQTT subscriber, a sink runtime.

The broker is Debian's ``mosquitto`` (package ``mosquitto``); tests that need it skip
with the reason when it is not installed. It keeps persistent sessions across a restart
(``persistence true``), so a subscriber with ``clean_session=False`` gets at QoS 1 what
was published while it was away, whichever of it and the publisher reconnects first.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.record import Face, FrameRecord
from pipeline.runtime import Runtime
from tests.helpers import free_port
from workers import base
from workers.base import stage_worker

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
)


class Broker:
    """One mosquitto process on 127.0.0.1:``port``; ``stop``/``start`` keep the port."""

    def __init__(self, workdir: Path, extra: str = "allow_anonymous true\n") -> None:
        assert MOSQUITTO is not None
        self.port = free_port()
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{extra}"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            f"log_dest file {workdir}/mosquitto.log\n"
            # started as root, mosquitto would switch to its own user, who cannot read the
            # test's private temp directory
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None


@pytest.fixture()
def broker(tmp_path: Path) -> Iterator[Broker]:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (Debian package: mosquitto)")
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


class Subscriber:
    """A paho client that records every message of ``topic`` (QoS 1)."""

    def __init__(
        self,
        port: int,
        topic: str = "facepipe/#",
        client_id: str | None = None,
        ca: Path | None = None,
        auth: tuple[str, str] | None = None,
    ):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        persistent = client_id is not None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or "",
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(1, 1)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        if auth is not None:
            self.client.username_pw_set(*auth)

        def on_connect(client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            client.subscribe(topic, qos=1)

        def on_subscribe(*_a: Any) -> None:
            self.subscribed.set()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            with self.lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(10), "subscription not acknowledged"

    def received(self, topic: str) -> list[Any]:
        """Payloads received on ``topic`` (JSON decoded when they are JSON)."""
        out = []
        with self.lock:
            for t, payload, _ in self.messages:
                if t == topic:
                    try:
                        out.append(json.loads(payload))
                    except ValueError:
                        out.append(payload.decode())
        return out

    def wait(self, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = check()
            if got:
                return got
            time.sleep(0.05)
        return check()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture()
def subscribe(broker: Broker) -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(topic: str = "facepipe/#", client_id: str | None = None, **kw: Any) -> Subscriber:
        sub = Subscriber(broker.port, topic, client_id, **kw)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()


@pytest.fixture()
def make_rt(redis_url: str, home: Path) -> Iterator[Callable[[dict[str, str]], Runtime]]:
    """``make_rt(env)``: a runtime on the test Redis with ``FACEPIPE__...`` settings."""
    made: list[Runtime] = []

    def make(environ: dict[str, str]) -> Runtime:
        rt = Runtime.from_config(load_config(None, environ=environ), redis_url)
        base.set_runtime(rt)
        made.append(rt)
        return rt

    yield make
    for stage in list(base._stages.values()):
        notifier = getattr(stage, "notifier", None)
        if notifier is not None:
            notifier.close(0.5)
    if made:
        base.set_runtime(made[-1])  # drops the cached stages


# ----- the sink, fed as the track/recognize stages feed it ---------------------------
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


def frame(
    seq: int, track: int, enc: np.ndarray | None = None, ended: tuple[int, ...] = ()
) -> FrameRecord:
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


@pytest.fixture()
def kit() -> SimpleNamespace:
    """The helpers above, for the test modules (which cannot import this one)."""
    return SimpleNamespace(STREAM=STREAM, SESSION=SESSION, encoding=encoding,
                           mqtt_env=mqtt_env, frame=frame, sink=sink, with_image=with_image,
                           MOSQUITTO=MOSQUITTO, Broker=Broker, Subscriber=Subscriber)  # fmt: skip
