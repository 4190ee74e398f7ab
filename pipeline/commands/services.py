"""Distributed pieces: `facepipe capture`, `facepipe worker`, `facepipe sink`,
`facepipe metrics`. Start any number of them, on any machines, with one REDIS_URL."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from pipeline.commands import Context, pass_ctx
from pipeline.commands.run import PROGRESS_OPTION
from pipeline.privacy import redact_url
from pipeline.stages import STAGE_NAMES

log = logging.getLogger(__name__)


def _runtime(ctx: Context):  # type: ignore[no-untyped-def]
    from pipeline.runtime import NoRedisError, Runtime

    try:
        rt = Runtime.from_config(ctx.config)
        rt.bus.conn.ping()
    except NoRedisError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:
        raise click.ClickException(
            redact_url(f"cannot reach Redis at {ctx.config.redis.url}: {exc}")
        ) from None
    return rt


def follow_streams(ctx: Context) -> None:
    """Run the cameras of the desired set in Redis (pipeline/stream_control.py) until
    SIGINT/SIGTERM; then stop them and print what each captured."""
    from pipeline.stream_control import CameraWatcher

    rt = _runtime(ctx)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    watcher = CameraWatcher(rt).start()
    click.echo(f"following the cameras added at run time ({watcher.owner})", err=True)
    while not stop.wait(0.5):  # wakes up for the signal handler
        pass
    watcher.stop()
    for cap in watcher.captures:
        counts = rt.bus.stream_counts(cap.stream, cap.session)
        click.echo(f"{cap.stream}: captured {counts.get('captured', 0)} (session {cap.session})")


@click.command()
@click.argument("source", required=False)
@click.option("--stream", help="stream name (default: from the source)")
@click.option("--camera", metavar="NAME",
              help="capture this camera of the config's cameras: (instead of SOURCE)")  # fmt: skip
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="wait until every frame sent is processed before exiting (a file at its "
              "end, a live source once stopped)")  # fmt: skip
@click.option("--follow-streams", "follow", is_flag=True,
              help="instead of SOURCE: run the cameras added at run time (POST /api/streams), "
              "stop those removed, until SIGINT/SIGTERM")  # fmt: skip
@PROGRESS_OPTION
@pass_ctx
def capture(
    ctx: Context, source: str | None, stream: str | None, camera: str | None, wait: bool,
    progress_every: float, follow: bool,
) -> None:  # fmt: skip
    """Read SOURCE (file, webcam index, rtsp/http URL), or the configured camera --camera
    NAME, into the pipeline (needs REDIS_URL).

    A file ends at its end; a live source runs until SIGINT/SIGTERM (a camera that is down
    is retried meanwhile). Either way the summary is printed once the frames sent are
    accounted for.
    """
    from pipeline.capture import Capture
    from pipeline.commands.run import CUT_SHORT_EXIT, default_stream_name, stream_option
    from pipeline.config import ConfigError
    from pipeline.sources import Source, SourceError

    config = ctx.config
    if follow:
        if source or stream or camera:
            raise click.UsageError("--follow-streams takes no SOURCE, --stream or --camera")
        follow_streams(ctx)
        return
    if camera:
        if source or stream:
            raise click.UsageError("--camera names the source and the stream: no SOURCE/--stream")
        try:
            source, config = config.camera(camera).source, config.for_camera(camera)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--camera") from None
        name = camera
    elif source:
        name = stream_option(stream) if stream else default_stream_name(source)
        if name in config.cameras:  # a configured camera's stream keeps its settings
            config = config.for_camera(name)
    else:
        raise click.UsageError("give a SOURCE or --camera NAME")
    rt = _runtime(ctx).with_config(config)
    try:  # a live source that is down is not an error: it is retried (with backoff)
        src = Source.from_config(source, config)
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    cap = Capture(rt, src, name)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        """SIGINT/SIGTERM: stop capturing, account for what was sent, print the summary;
        a second one stops at once."""
        if stopping.is_set():
            raise KeyboardInterrupt
        stopping.set()
        cap.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    progress = None
    if progress_every:
        from pipeline.progress import Progress

        # no event store here: it lives with the sink, maybe on another machine
        progress = Progress(rt.bus, lambda: [(name, cap.session)], None, progress_every).start()
    try:
        result = cap.run()
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        if progress is not None:
            progress.close()
    interrupted = stopping.is_set()  # stopped by a signal (a live source's normal end)
    stopping.set()  # from here on a signal stops the wait at once
    click.echo(
        f"{result.stream}: captured {result.captured}, enqueued {result.enqueued}, "
        f"dropped {result.dropped} in {result.seconds:.1f} s (session {result.session})"
    )
    for session, n in result.lost_sessions:
        click.echo(
            f"{result.stream}: WARNING: Redis lost session {session} (restarted without "
            f"persistence?): {n} frames captured in it are unaccounted",
            err=True,
        )
    if wait:  # a file's frames, or what a stopped live source sent
        from pipeline.capture import wait_accounted

        try:
            waited = wait_accounted(  # other streams' jobs: waited for a little only
                rt, [(result.stream, result.session)], settle_s=config.workers.job_recovery_s
            )
        except KeyboardInterrupt:
            click.echo(f"{result.stream}: interrupted while waiting for the workers", err=True)
            sys.exit(130)
        if waited.done:
            click.echo(f"{result.stream}: all frames accounted for: {waited.counts}")
        else:
            click.echo(
                f"{result.stream}: {waited.unaccounted} frames unaccounted: {waited.reason}; "
                f"counts {waited.counts}",
                err=True,
            )
            sys.exit(CUT_SHORT_EXIT)
    if result.cut_short:
        click.echo(
            f"CUT SHORT: {result.stream}: {result.unreadable} frame(s) of {source} unreadable "
            "(corrupt data)",
            err=True,
        )
        sys.exit(CUT_SHORT_EXIT)
    if result.lost_sessions:
        sys.exit(CUT_SHORT_EXIT)
    if interrupted and not src.live:
        sys.exit(130)  # a file stopped before its end


@click.command()
@click.argument("stage", type=click.Choice(STAGE_NAMES))
@click.option("--burst", is_flag=True, help="exit when the queue is empty")
@click.option("--name", help="worker name (default: STAGE-HOST-PID)")
@pass_ctx
def worker(ctx: Context, stage: str, burst: bool, name: str | None) -> None:
    """Run one STAGE worker process (rq; loads its model once). Needs REDIS_URL."""
    from workers.base import run_worker

    _lower_priority(ctx, stage)
    run_worker(stage, _runtime(ctx), burst=burst, name=name)


def _lower_priority(ctx: Context, stage: str) -> None:
    """The stage's ``workers.nice`` (before the model loads: that is work too)."""
    from pipeline.priority import lower_priority

    nice = ctx.config.workers.nice.get(stage, 0)
    done = lower_priority(nice)
    if done:
        log.info("%s worker: CPU priority lowered (%s)", stage, ", ".join(done))


def _serve_metrics(ctx: Context, rt, port: int | None) -> int:  # type: ignore[no-untyped-def]
    from pipeline.metrics import MetricsServeError, metrics_url, serve

    port = ctx.config.metrics.port if port is None else port
    if port:
        try:
            serve(rt.bus, port, ctx.config.metrics.host)
        except MetricsServeError as exc:
            raise click.ClickException(exc.strerror) from None
        click.echo(f"metrics on {metrics_url(ctx.config.metrics.host, port)}", err=True)
    return port


@click.command()
@click.option("--metrics-port", type=int, help="Prometheus port (default metrics.port; 0: off)")
@click.option("--burst", is_flag=True, help="exit when the queue is empty")
@pass_ctx
def sink(ctx: Context, metrics_port: int | None, burst: bool) -> None:
    """Run the sink worker (writes events) and serve the pipeline's Prometheus metrics."""
    from workers.base import run_worker

    _lower_priority(ctx, "sink")
    rt = _runtime(ctx)
    _serve_metrics(ctx, rt, metrics_port)
    run_worker("sink", rt, burst=burst)


@click.command()
@click.option("--port", type=int, help="port (default metrics.port)")
@pass_ctx
def metrics(ctx: Context, port: int | None) -> None:
    """Serve the pipeline's Prometheus metrics only (if the sink runs elsewhere)."""
    rt = _runtime(ctx)
    if not _serve_metrics(ctx, rt, port):
        raise click.ClickException("metrics port is 0")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass


COMMANDS = [capture, worker, sink, metrics]
