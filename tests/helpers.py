"""Small helpers the tests of several packages share."""

from __future__ import annotations

import socket


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
