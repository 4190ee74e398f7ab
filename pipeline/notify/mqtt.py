"""MQTT notifier (paho-mqtt): events, person sightings, availability.

Topics (``PREFIX`` is ``notify.mqtt.topic_prefix``, default ``facepipe``; see
docs/notifications.md for the payloads):

* ``PREFIX/available``: ``online`` / ``offline``, retained; ``offline`` is also the
  connection's last will, so the broker publishes it when the sink dies;
* ``PREFIX/events``: every event notification, ``{"type": "new"|"update"|"end",
  "before", "after"}`` (Frigate's layout);
* ``PREFIX/STREAM/person``: the event (the ``after`` object) when a person is seen, i.e.
  when an event gets its identity (``new``) or its identity changes (an ``update``
  whose person or unknown-N differs);
* ``PREFIX/STREAM/available``: ``online`` / ``offline``, retained, when a stream goes
  up or down, from the capture's notifier (:func:`pipeline.notify.for_capture`), whose
  last will (and goodbye) is ``offline`` there: a capture that dies marks its stream
  offline.

paho's network thread connects in the background and reconnects with exponential
backoff (1 s doubling to ``reconnect_max_s``); meanwhile notifications wait in the
backend's bounded queue (:mod:`pipeline.notify.base`), so a broker that is down never
blocks the sink.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from pipeline.notify.base import Backend, Counter, Notification

if TYPE_CHECKING:
    from pipeline.config import MqttConfig

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0  # wait for the broker's acknowledgement (QoS 1/2) this long


class MqttNotifier(Backend):
    name = "mqtt"

    def __init__(
        self,
        cfg: MqttConfig,
        count: Counter | None = None,
        queue_size: int = 1000,
        max_delay_s: float = 60.0,
        stream: str | None = None,
    ) -> None:
        super().__init__(count, queue_size, max_delay_s)
        self.cfg = cfg
        self.prefix = cfg.topic_prefix.rstrip("/")
        # a capture's connection stands for its stream: its last will marks the stream
        # offline, and it says online only when the stream is up (stream_status)
        self.stream = stream
        self.availability = (
            f"{self.prefix}/{stream}/available" if stream else f"{self.prefix}/available"
        )
        self.connected = threading.Event()
        self._ever_connected = False
        self._down_since: float | None = None
        client_id = cfg.client_id or f"facepipe-{socket.gethostname()}-{os.getpid()}"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if cfg.username is not None:
            password = cfg.password.get_secret_value() if cfg.password is not None else None
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            client.tls_set(ca_certs=cfg.tls_ca_certs, cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(self.availability, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, max(1, int(cfg.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self.client = client

    @property
    def where(self) -> str:
        return f"mqtt{'s' if self.cfg.tls else ''}://{self.cfg.host}:{self.cfg.port}"

    # ----- connection ----------------------------------------------------------------
    def connect(self) -> None:
        """Connect in paho's thread (never blocks: a broker that is down is retried)."""
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("notify: MQTT broker %s refused the connection: %s", self.where, reason)
            return
        if self.stream is None:
            client.publish(self.availability, "online", qos=1, retain=True)
        if self._down_since is not None:
            log.info(
                "notify: MQTT broker %s back after %.1f s",
                self.where, time.monotonic() - self._down_since,
            )  # fmt: skip
        elif not self._ever_connected:
            log.info("notify: connected to MQTT broker %s", self.where)
        self._ever_connected = True
        self._down_since = None
        self.connected.set()

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        if self._down_since is None and not self.stopping.is_set():
            self._down_since = time.monotonic()
            log.warning(
                "notify: cannot reach MQTT broker %s; retrying, notifications wait", self.where
            )

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if self._down_since is None and not self.stopping.is_set():
            self._down_since = time.monotonic()
            log.warning(
                "notify: lost MQTT broker %s (%s); reconnecting, notifications wait",
                self.where, reason,
            )  # fmt: skip

    def disconnect(self) -> None:
        """Publish ``offline`` (a clean disconnect does not fire the last will), stop."""
        if self._thread is None:
            return
        if self.connected.is_set():
            info = self.client.publish(self.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    # ----- delivery ----------------------------------------------------------------
    def messages(self, note: Notification) -> list[tuple[str, str, bool]]:
        """``(topic, payload, retain)`` of each message ``note`` becomes."""
        if note.kind == "stream":
            status = "online" if note.message.get("status") == "up" else "offline"
            return [(f"{self.prefix}/{note.stream}/available", status, True)]
        if self.stream is not None:
            return []  # a capture's notifier tells only its stream's status
        out = [(f"{self.prefix}/events", json.dumps(note.message), False)]
        if note.person_seen:
            after = note.message["after"]
            out.append((f"{self.prefix}/{note.stream}/person", json.dumps(after), False))
        return out

    def deliver(self, note: Notification) -> str:
        while not self.connected.wait(0.2):  # the broker is down: wait (the queue bounds it)
            if self.stopping.is_set() or self.expired(note):
                return "expired"
        infos = []
        for topic, payload, retain in self.messages(note):
            info = self.client.publish(topic, payload, qos=self.cfg.qos, retain=retain)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning(
                    "notify: MQTT publish to %s failed: %s", topic, mqtt.error_string(info.rc)
                )
                return "failed"
            infos.append(info)
        deadline = time.monotonic() + PUBLISH_TIMEOUT_S
        for info in infos:
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass  # not queued in paho (QoS 0 while disconnected)
        return "sent" if all(i.is_published() for i in infos) else "unconfirmed"
