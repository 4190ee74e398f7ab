"""Small helpers the tests of several packages share."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Refuse:
    """A meta path finder that makes importing one module fail (as where no wheel exists):
    ``monkeypatch.setattr(sys, "meta_path", [Refuse("yuface"), *sys.meta_path])``."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        if fullname == self.name:
            raise ImportError(f"no module named {fullname!r} (refused by the test)")
        return None


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> object:
    """``cond()``'s first true value within ``timeout`` seconds (polled every 0.1 s; an
    exception counts as "not yet": Redis restarting, a key not there yet), else an
    AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = cond()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class FastCamera:
    """A live source that delivers ``frames`` (BGR arrays) as fast as they are taken, none
    skipped, then ends; ``before(i)`` runs before frame ``i`` is delivered."""

    live, spec, unreadable = True, "fast-camera", 0

    def __init__(self, frames: list, before: Callable[[int], None] | None = None) -> None:
        self.frames, self.before = frames, before

    def __iter__(self):  # noqa: ANN204
        from pipeline.sources import Frame

        for i, bgr in enumerate(self.frames):
            if self.before is not None:
                self.before(i)
            yield Frame(bgr=bgr, ts=time.time())

    def status(self):  # noqa: ANN201
        from pipeline.sources import SourceStatus

        return SourceStatus(True, 0, 0.0)

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass
