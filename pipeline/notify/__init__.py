"""Notifications: person events and stream status to MQTT and webhooks.

The ``notify:`` section of the configuration chooses the backends (all off by default);
this package holds one module per backend, named in :data:`BACKENDS` and imported only
when configured:

* ``mqtt`` (:mod:`pipeline.notify.mqtt`): paho-mqtt, Frigate-like topics;
* ``webhook`` (:mod:`pipeline.notify.webhook`): an HTTP POST of JSON per URL.

:mod:`pipeline.notify.base` is what they share (a bounded queue and a thread each, so a
backend never blocks or crashes its caller; outcomes counted in
``facepipe_notifications_total{backend, outcome}``), :mod:`pipeline.notify.events` turns
the sink's stored changes into notifications, each told once. Topics and payloads:
docs/notifications.md.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.notify.base import OUTCOMES, Backend, Counter, Notification
from pipeline.notify.events import EventNotifier, NullNotifier

if TYPE_CHECKING:
    from pipeline.config import NotifyConfig
    from pipeline.runtime import Runtime
    from pipeline.store import EventStore

__all__ = [
    "BACKENDS",
    "Backend",
    "EventNotifier",
    "Notification",
    "NullNotifier",
    "backends",
    "for_capture",
    "for_sink",
    "notifier",
]

# backend name -> "module:class", imported when configured
BACKENDS: dict[str, str] = {
    "mqtt": "pipeline.notify.mqtt:MqttNotifier",
    "webhook": "pipeline.notify.webhook:WebhookNotifier",
}


def backend_class(name: str) -> type[Backend]:
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def backends(
    cfg: NotifyConfig, count: Counter | None = None, stream: str | None = None
) -> list[Backend]:
    """The backends ``cfg`` configures (MQTT if enabled, one per webhook URL); with
    ``stream``, a capture's (MQTT availability and last will on the stream's topic)."""
    common: dict[str, Any] = {
        "count": count,
        "queue_size": cfg.queue_size,
        "max_delay_s": cfg.max_delay_s,
    }
    out: list[Backend] = []
    if cfg.mqtt.enabled:
        out.append(backend_class("mqtt")(cfg.mqtt, stream=stream, **common))
    out += [backend_class("webhook")(hook, **common) for hook in cfg.webhooks]
    return out


def notifier(
    rt: Runtime,
    store: EventStore | None = None,
    snapshots_root: Path | None = None,
    stream: str | None = None,
) -> NullNotifier:
    """This process's notifier: an :class:`EventNotifier` when ``notify`` configures a
    backend, else a :class:`NullNotifier` that does nothing (and costs nothing)."""
    cfg = rt.config.notify
    if not cfg.enabled:
        return NullNotifier()

    name = "facepipe_notifications_total"

    def count(backend: str, outcome: str) -> None:
        rt.metrics.inc(name, {"backend": backend, "outcome": outcome})

    made = backends(cfg, count, stream)
    for backend, outcome in {(b.name, o) for b in made for o in OUTCOMES}:
        rt.metrics.declare(name, {"backend": backend, "outcome": outcome})  # at 0 from start
    return EventNotifier(cfg, made, rt.bus, store, snapshots_root)


def for_sink(rt: Runtime, store: EventStore) -> NullNotifier:
    """The sink's notifier (events from ``store``, snapshot paths under the snapshots dir)."""
    return notifier(rt, store, rt.config.snapshots_path)


def for_capture(rt: Runtime, stream: str) -> NullNotifier:
    """A capture's notifier, for :meth:`~EventNotifier.stream_status` of ``stream``: MQTT
    ``PREFIX/STREAM/available`` (``online`` only once told the stream is up; ``offline``
    when told it is down, when the capture closes it, and as the last will of a capture
    that dies) and the webhooks' ``stream`` notifications. Call ``stream_status`` on each
    change of the source (opened, lost, reopened)."""
    return notifier(rt, stream=stream)
