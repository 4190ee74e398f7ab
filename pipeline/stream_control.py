"""Cameras added and removed at run time, without a restart.

The state is Redis', never a process's: ``POST /api/streams`` puts a camera (a name and a
spec checked as a ``cameras:`` entry of the config is) into the desired set
(``Bus.add_camera``, the hash ``<prefix>:cameras``), ``DELETE /api/streams/{name}``
takes it out. Every capture process that follows the set (``facepipe run``, which does
by default) runs a :class:`CameraWatcher`: about once a second it reads the set, claims
each camera nobody runs (``Bus.camera_claim``, a lock it keeps extending, so a camera
runs in one process at a time and a dead process's cameras are taken over once its claim
expires), starts a :class:`~pipeline.capture.Capture` thread for it, and stops the
capture of a camera that left the set. It writes what it did to
``<prefix>:camera-status`` (``starting``, ``capturing``, ``ended`` for a file at its end,
``stopped`` once removed, ``waiting`` again when its process stopped, ``failed`` with the
error, e.g. a file that does not exist); the frames of
each capture session are counted as every capture's are, so ``GET /api/streams`` shows
the stream's sessions as ``capturing``, ``finishing``, ``done``.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from redis.exceptions import LockError

from pipeline.capture import Capture
from pipeline.config import CameraConfig, Config, ConfigError
from pipeline.names import BadName, check_stream
from pipeline.retry import REDIS_DOWN
from pipeline.runtime import Runtime

log = logging.getLogger(__name__)

CLAIM_TTL_S = 15.0  # a camera's claim outlives its process by at most this long
FINISHED = ("ended", "failed")  # states a camera is not started again in (same id)


def check_camera(name: str, spec: dict[str, Any]) -> CameraConfig:
    """Camera ``name`` with ``spec`` (``source``, ``every_n_frames``, ``capture``, ...)
    checked as a ``cameras:`` entry of the config is; :class:`ConfigError` names the bad
    key as the config's errors do (``cameras.door.capture.max_queue: ...``)."""
    try:
        check_stream(name)
    except BadName as exc:
        raise ConfigError(f"cameras: camera {exc}") from None
    try:
        return CameraConfig.model_validate(spec)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in ("cameras", name, *err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{key}: {'unknown key' if err['type'] == 'extra_forbidden' else msg}")
        raise ConfigError("; ".join(lines)) from None


def camera_config(config: Config, name: str, camera: CameraConfig) -> Config:
    """``config`` as camera ``name`` runs it (its capture keys and detection rate)."""
    return config.model_copy(update={"cameras": {**config.cameras, name: camera}}).for_camera(name)


@dataclass
class _Running:
    spec_id: str
    claim: Any  # redis Lock
    added: float = 0.0  # when the camera was added to the set
    capture: Capture | None = None
    thread: threading.Thread | None = None
    removed: bool = False
    handed_over: bool = False  # another process claimed it meanwhile: it says the state
    live: bool = False


@dataclass
class CameraWatcher:
    """Follows the desired camera set in Redis: starts and stops capture threads."""

    rt: Runtime
    poll_s: float = 1.0
    owner: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
    )
    captures: list[Capture] = field(default_factory=list)  # every one started, in order
    _running: dict[str, _Running] = field(default_factory=dict)
    _known: dict[str, dict[str, Any]] = field(default_factory=dict)  # the set last read
    _epoch: str | None = None  # its epoch (Bus.cameras_epoch)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> CameraWatcher:
        self._thread = threading.Thread(target=self._loop, name="camera-watch", daemon=True)
        self._thread.start()
        return self

    def active(self, added_since: float | None = None) -> bool:
        """True while a capture it started is running (of a camera added to the set at or
        after ``added_since``, when given)."""
        with self._lock:
            return any(
                r.thread is not None
                and r.thread.is_alive()
                and (added_since is None or r.added >= added_since)
                for r in self._running.values()
            )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop following the set, stop every capture it runs and wait for them."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            running = list(self._running.items())
        for _, r in running:
            if r.capture is not None:
                r.capture.stop()
        for name, r in running:
            if r.thread is not None:
                r.thread.join(timeout_s)
            self._release(name, r)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except REDIS_DOWN:
                pass  # the captures wait Redis out themselves; try again next poll
            except Exception:  # the watcher must never stop a run
                log.exception("following the camera set failed")
            self._stop.wait(self.poll_s)

    def step(self) -> None:
        """One pass: start the cameras of the set nobody runs, stop those that left it."""
        bus = self.rt.bus
        epoch = bus.cameras_epoch()
        if self._epoch is not None and epoch != self._epoch and self._known:
            # Redis lost its data (a restart without persistence): the cameras added at
            # run time must not stop with it; put back the set as this process knew it
            back = bus.restore_cameras(self._known)
            if back:
                log.warning(
                    "Redis lost the camera set (restarted without persistence?): put back %s",
                    ", ".join(sorted(back)),
                )
        self._epoch = epoch
        desired = bus.cameras()
        self._known = desired
        status = bus.camera_status()
        with self._lock:
            running = dict(self._running)
        for name, r in running.items():
            spec = desired.get(name)
            alive = r.thread is not None and r.thread.is_alive()
            if (spec is None or spec.get("id") != r.spec_id) and not r.removed and alive:
                r.removed = True
                log.info("camera %s left the camera set: stopping its capture", name)
                if r.capture is not None:
                    r.capture.stop()
            if alive:
                try:
                    r.claim.extend(CLAIM_TTL_S, replace_ttl=True)
                except LockError:
                    self._reclaim(name, r)
                if name not in status and r.capture is not None and not r.removed:
                    # Redis lost the status (restart): say again what runs, and its session
                    self._status(name, r.spec_id, "capturing", session=r.capture.session,
                                 live=r.live)  # fmt: skip
            else:
                with self._lock:
                    self._running.pop(name, None)
                self._release(name, r)
        for name, spec in desired.items():
            if name in self._running or not spec.get("enabled", True):
                continue
            st = status.get(name, {})
            if st.get("id") == spec.get("id") and st.get("state") in FINISHED:
                continue  # a file that ended, a camera that failed: not again
            claim = bus.camera_claim(name, CLAIM_TTL_S)
            if not claim.acquire(blocking=False):
                continue  # another capture process runs it
            self._start(name, spec, claim)

    def _reclaim(self, name: str, r: _Running) -> None:
        """The claim of a camera this process runs is gone (it expired while Redis was
        slow, or Redis lost it): claim it again, or, when another process has claimed it
        meanwhile, stop capturing here (never two captures of one camera)."""
        if r.claim.acquire(blocking=False):
            log.warning("camera %s: its claim was lost (Redis restarted or slow): claimed again",
                        name)  # fmt: skip
            return
        log.warning("camera %s: claimed by another process meanwhile: stopping here", name)
        r.handed_over = True
        if r.capture is not None:
            r.capture.stop()

    def _status(self, name: str, spec_id: str, state: str, **extra: Any) -> None:
        self.rt.bus.set_camera_status(
            name,
            {"id": spec_id, "state": state, "owner": self.owner, "updated": time.time(), **extra},
        )

    def _start(self, name: str, spec: dict[str, Any], claim: Any) -> None:
        from pipeline.sources import Source

        spec_id = str(spec.get("id", ""))
        added = spec.get("added")
        r = _Running(spec_id, claim, float(added) if isinstance(added, int | float) else 0.0)
        with self._lock:
            self._running[name] = r
        self._status(name, spec_id, "starting")
        try:
            camera = check_camera(name, {k: v for k, v in spec.items() if k not in ("id", "added")})
            config = camera_config(self.rt.config, name, camera)
            source = Source.from_config(camera.source, config)
            cap = Capture(self.rt.with_config(config), source, name)
        except Exception as exc:  # a file that is not there, a bad spec: say so
            log.warning("camera %s: cannot start: %s", name, exc)
            self._status(name, spec_id, "failed", error=str(exc))
            return  # not alive: the next step releases its claim
        r.capture, r.live = cap, source.live
        self.captures.append(cap)
        self._status(name, spec_id, "capturing", session=cap.session, live=source.live)
        log.info("camera %s: capturing %s as session %s", name, source.spec, cap.session)

        def run() -> None:
            try:
                result = cap.run()
            except Exception as exc:
                log.exception("camera %s: capture failed", name)
                self._status(name, spec_id, "failed", error=str(exc), session=cap.session)
                return
            if r.handed_over:
                return  # the process that claimed it reports its state
            if r.removed:
                state = "stopped"  # it left the set
            elif cap.stop_event.is_set():
                state = "waiting"  # this process stopped: another follower may take it
            else:
                state = "ended"  # a file at its end
            self._status(name, spec_id, state, session=cap.session, captured=result.captured)

        r.thread = threading.Thread(target=run, name=f"capture-{name}", daemon=True)
        r.thread.start()

    def _release(self, name: str, r: _Running) -> None:
        try:
            r.claim.release()
        except (LockError, *REDIS_DOWN):
            pass  # expired already, or Redis is away: it expires
