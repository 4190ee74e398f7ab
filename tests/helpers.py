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
