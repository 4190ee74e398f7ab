"""`facepipe serve`: the HTTP API (FastAPI on uvicorn) over the configured store and Redis."""

from __future__ import annotations

import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING

import click

from pipeline.commands import Context, pass_ctx
from pipeline.privacy import listen_failure

if TYPE_CHECKING:
    from pipeline.bus import Bus
    from pipeline.config import Config


class ServeError(OSError):
    """The API cannot listen (port in use, address not on this machine)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``; :class:`ServeError` with a one-line reason."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        hint = "set api.port / --port to another port"
        raise ServeError(exc.errno, listen_failure(exc, "the API", host, port, hint)) from None
    sock.set_inheritable(True)
    return sock


def api_url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


class Background:
    """The API (and web UI) served from a thread of another command (`facepipe run`)."""

    def __init__(self, server: object, thread: threading.Thread, url: str) -> None:
        self.server, self.thread, self.url = server, thread, url

    def stop(self) -> None:
        self.server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join(timeout=15)


def serve_in_background(config: Config, bus: Bus) -> Background:
    """Serve the API on ``api.host:api.port`` from a daemon thread, over ``bus`` (the
    run's Redis, so the live view sees its streams) and the configured store.
    :class:`ServeError` if it cannot listen. The search index is built at the first
    search, not at start (the run's workers need the CPU)."""
    import uvicorn

    from pipeline.api import create_app

    app = create_app(config, bus=bus, warm_index=False)
    sock = bind(config.api.host, config.api.port)
    url = api_url(config.api.host, sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    )
    app.state.should_exit = lambda: server.should_exit
    # off the main thread uvicorn installs no signal handlers: the run keeps its own
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="facepipe-api", daemon=True
    )
    thread.start()
    return Background(server, thread, url)


@click.command()
@click.option("--host", help="listen address (default api.host, 127.0.0.1)")
@click.option("--port", type=click.IntRange(0, 65535), help="port (default api.port)")
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None) -> None:
    """Serve the HTTP API: events, people, unknowns, search by face, streams, health.

    OpenAPI at /openapi.json, interactive docs at /docs (docs/api.md). Reads the same
    store (store.url / $FACEPIPE_HOME) and Redis (REDIS_URL, optional) as the pipeline;
    start as many as you like. Bearer-token authentication when api.token is set.
    """
    import uvicorn

    from pipeline.api import create_app
    from pipeline.privacy import redact_url

    cfg = ctx.config
    host = host or cfg.api.host
    port = cfg.api.port if port is None else port
    if cfg.api.token is None and host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(
            f"WARNING: serving on {host} without api.token: anyone who reaches this "
            "port can read and erase face data",
            err=True,
        )
    try:
        app = create_app(cfg, warm_index=True)
    except Exception as exc:
        raise click.ClickException(redact_url(f"cannot open the event store: {exc}")) from None
    try:
        sock = bind(host, port)
    except ServeError as exc:
        raise click.ClickException(exc.strerror) from None
    port = sock.getsockname()[1]
    click.echo(f"API on {api_url(host, port)}/api (docs: {api_url(host, port)}/docs)", err=True)
    # the web UI's live view streams (MJPEG) never end by themselves: they end when the
    # server stops (app.state.should_exit); other requests get 10 s to finish
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=10)
    )
    app.state.should_exit = lambda: server.should_exit
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again with
    # the handlers it found: exit 0 for SIGTERM, 130 for Ctrl-C (as `facepipe run`)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        sys.exit(130)


COMMANDS = [serve]
