"""`facepipe run` (the whole pipeline on one machine) and `facepipe demo`."""

from __future__ import annotations

import json
import re
import signal
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import click

from pipeline.commands import Context, pass_ctx
from pipeline.names import STREAM_MAX, BadName, check_person, check_stream
from pipeline.sources import describe

CUT_SHORT_EXIT = 3  # exit status when a source could not be read to its end (corrupt data)


def default_stream_name(spec: str) -> str:
    kind, _ = describe(spec)
    if kind == "webcam":
        return f"webcam{spec}"
    if kind == "url":
        u = urlparse(spec)
        name = (u.hostname or "camera") + (u.path or "").replace("/", "_")
    else:
        name = Path(spec).stem
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    name = re.sub(r"\.{2,}", ".", name).strip("_.-")[:STREAM_MAX].rstrip("_.-")
    return name or "stream"


PROGRESS_OPTION = click.option(
    "--progress-every", type=click.FloatRange(min=0), default=10.0, show_default=True,
    metavar="SECONDS",
    help="live status per stream on stderr: a table on a terminal, else a line per stream "
    "every SECONDS (0: off)",
)  # fmt: skip


def stream_option(name: str) -> str:
    """A stream name given on the command line, checked (a click error otherwise)."""
    try:
        return check_stream(name)
    except BadName as exc:
        raise click.BadParameter(str(exc), param_hint="--stream") from None


def parse_enroll(values: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, photo = v.partition("=")
        if not sep or not name or not photo:
            raise click.BadParameter(f"{v!r}: expected NAME=PHOTO", param_hint="--enroll")
        try:
            check_person(name)
        except BadName as exc:
            raise click.BadParameter(str(exc), param_hint="--enroll") from None
        out.append((name, photo))
    return out


def enroll_people(ctx: Context, pairs: list[tuple[str, str]]) -> None:
    from pipeline.recognition.enroll import EnrollError, enrol_photos
    from pipeline.store import EventStore

    store = EventStore(ctx.config.store_url)
    for name, photo in pairs:
        try:
            ((vec, quality),) = enrol_photos(
                [photo],
                num_jitters=ctx.config.recognition.enroll_jitters,
                max_pixels=ctx.config.limits.max_image_pixels,
            )
        except EnrollError as exc:
            raise click.ClickException(str(exc)) from None
        store.enroll(name, [vec], [str(Path(photo).resolve())], [quality])
        click.echo(f"enrolled {name} from {photo}", err=True)


def print_summary(summary_dict: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary_dict))
        return
    s = summary_dict
    click.echo(
        f"frames: {s['frames']} captured, {s['processed']} processed in {s['seconds']:.1f} s "
        f"({s['fps']:.1f} frames/s)"
    )
    for name, st in s["streams"].items():
        dropped = {k.split(":", 1)[1]: v for k, v in st.items() if k.startswith("dropped:")}
        rate = st.get("detection_rate")
        click.echo(
            f"  stream {name} ({st['source']}): captured {st.get('captured', 0)}, "
            f"processed {st.get('processed', 0)}"
            + ("" if rate is None else f" ({100 * rate:.0f} % of them detected)")
            + f", dropped {sum(dropped.values())}"
            + (f" {dropped}" if dropped else "")
        )
        if st.get("unreadable"):
            click.echo(
                f"  CUT SHORT: stream {name}: {st['unreadable']} frame(s) of {st['source']} "
                "unreadable (corrupt data; see the warnings above)"
            )
    if s.get("latency_s"):
        lat = s["latency_s"]
        click.echo(
            f"capture-to-event latency: median {lat.get('p50', 0):.2f} s, "
            f"95th percentile {lat.get('p95', 0):.2f} s"
        )
    faces = ", ".join(f"{k}: {v}" for k, v in sorted(s["people"].items())) or "none"
    click.echo(f"people seen (events per person): {faces}")
    if s.get("tracks_merged"):
        click.echo(f"tracks re-identified and merged into an earlier event: {s['tracks_merged']}")
    if s["stage_seconds"]:
        parts = [
            f"{k} {v:.1f}s/{s['stage_jobs'].get(k, 0)} jobs" for k, v in s["stage_seconds"].items()
        ]
        click.echo("stage time: " + ", ".join(parts))
    if s.get("overhead") is not None:
        click.echo(
            f"CPU: {sum(s['cpu_s'].values()):.1f} s in all processes during the run, "
            f"{sum(s['inference_cpu_s'].values()):.1f} s of it in model inference "
            f"(overhead {100 * s['overhead']:.0f} %)"
        )
    if s["failed_jobs"]:
        click.echo(
            f"WARNING: {s['failed_jobs']} failed jobs (see `rq info`, the lists "
            "<prefix>:failed:track|sink and the worker logs)"
        )
    if s.get("incomplete"):
        click.echo(f"WARNING: stopped waiting before every frame was processed: {s['incomplete']}")
    if s.get("interrupted"):
        gone = any("dropped:redis_unreachable" in st for st in s["streams"].values())
        reason = "redis_unreachable: Redis was gone" if gone else "interrupted"
        click.echo(f"interrupted: frames still in flight are counted as dropped ({reason})")


def run_pipeline(
    ctx: Context, sources: list[tuple[str, str]], as_json: bool, progress_s: float = 0.0,
    api: bool = False, watch: bool = False, keep_running: bool = False,
) -> int:  # fmt: skip
    from pipeline.orchestrator import LocalPipeline, PipelineError
    from pipeline.sources import SourceError

    pipe = LocalPipeline(ctx.config, ctx.config_path)
    background = None
    # SIGTERM (a service manager, `kill`) stops the run like Ctrl-C: summary included
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        click.echo("starting workers...", err=True)
        pipe.start()
        if ctx.config.metrics.port:
            from pipeline.metrics import metrics_url

            url = metrics_url(ctx.config.metrics.host, ctx.config.metrics.port)
            click.echo(f"metrics: {url}; logs: {pipe.log_dir}", err=True)
        if api and ctx.config.api.port:
            background = start_api(ctx, pipe)
        summary = pipe.run(
            sources, progress_s=progress_s or None, watch=watch, keep_running=keep_running
        )
    except (PipelineError, SourceError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("interrupted; stopping", err=True)
        return 130
    finally:
        if background is not None:
            background.stop()
        pipe.stop()
    summary_dict = summary.to_dict()
    summary_dict["cut_short"] = sorted(
        name for name, st in summary.streams.items() if st.get("unreadable")
    )
    print_summary(summary_dict, as_json)
    if summary.interrupted:
        return 130
    return CUT_SHORT_EXIT if summary_dict["cut_short"] or summary.incomplete else 0


def camera_sources(ctx: Context, cameras: tuple[str, ...]) -> list[tuple[str, str]]:
    """``(source, stream)`` of the named cameras of the config (``cameras:``), or of every
    enabled one when none is named."""
    from pipeline.config import ConfigError

    config = ctx.config
    if not cameras:
        return [(c.source, name) for name, c in config.cameras.items() if c.enabled]
    out = []
    for name in cameras:
        try:
            out.append((config.camera(name).source, name))
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--camera") from None
    return out


def start_api(ctx: Context, pipe: object):  # type: ignore[no-untyped-def]
    """The API and web UI of this run (api.host:api.port), or None with a warning when it
    cannot listen: the run goes on without it."""
    from pipeline.commands.serve import ServeError, serve_in_background

    try:
        background = serve_in_background(ctx.config, pipe.rt.bus)  # type: ignore[attr-defined]
    except ServeError as exc:
        click.echo(f"WARNING: no web UI/API for this run: {exc.strerror}", err=True)
        return None
    except Exception as exc:  # the UI is a convenience: never the end of a run
        from pipeline.privacy import redact_url

        click.echo(redact_url(f"WARNING: no web UI/API for this run: {exc}"), err=True)
        return None
    click.echo(f"web UI: {background.url}/ (API: {background.url}/api)", err=True)
    return background


@click.command()
@click.argument("sources", nargs=-1)
@click.option("--stream", "streams", multiple=True, help="stream name per source (in order)")
@click.option("--camera", "cameras", multiple=True, metavar="NAME",
              help="run this camera of the config's cameras: (repeatable)")  # fmt: skip
@click.option("--enroll", "enroll", multiple=True, metavar="NAME=PHOTO", help="enroll first")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@PROGRESS_OPTION
@click.option("--serve/--no-serve", "serve_api", default=True, show_default=True,
              help="serve the web UI and API (api.host:api.port) while it runs")  # fmt: skip
@click.option("--follow-streams/--no-follow-streams", "follow", default=True, show_default=True,
              help="also run the cameras added at run time (POST /api/streams) and stop "
              "those removed (DELETE)")  # fmt: skip
@click.option("--keep-running", is_flag=True,
              help="go on until Ctrl-C, with no SOURCES too, for cameras added through the "
              "API (POST /api/streams)")  # fmt: skip
@pass_ctx
def run(
    ctx: Context, sources: tuple[str, ...], streams: tuple[str, ...], cameras: tuple[str, ...],
    enroll: tuple[str, ...], as_json: bool, progress_every: float, serve_api: bool,
    follow: bool, keep_running: bool,
) -> None:  # fmt: skip
    """Run the whole pipeline on SOURCES (video files, webcam index, rtsp/http URLs), or,
    without SOURCES, on the cameras of the config (`cameras:`; those named by --camera,
    else every enabled one).

    Starts a private Redis server unless REDIS_URL is set, starts the stage workers as
    separate processes, processes every source (files to the end; live sources until
    Ctrl-C), drains the queues, prints a summary and exits.
    """
    ctx.config  # noqa: B018 - a bad config fails here, before Redis or any worker starts
    if len(streams) > len(sources):
        raise click.BadParameter("more --stream names than sources", param_hint="--stream")
    names = [stream_option(s) for s in streams]
    names += [default_stream_name(s) for s in sources[len(streams) :]]
    pairs = list(zip(sources, names, strict=True))
    if cameras or not sources:
        pairs += camera_sources(ctx, cameras)
    if keep_running and not follow:
        raise click.UsageError("--keep-running waits for cameras added through the API: "
                               "not with --no-follow-streams")  # fmt: skip
    if not pairs and not keep_running:
        raise click.UsageError(
            "nothing to run: give SOURCES, or configure cameras (the config's cameras: "
            "section, see config/facepipe.yaml)"
        )
    names = [name for _, name in pairs]
    if len(set(names)) != len(names):
        raise click.BadParameter(f"stream names must be unique: {names}", param_hint="--stream")
    for spec, _ in pairs:
        if describe(spec)[0] == "file" and not Path(spec).is_file():
            raise click.BadParameter(f"video file not found: {spec}", param_hint="SOURCES")
    enroll_people(ctx, parse_enroll(enroll))
    code = run_pipeline(
        ctx, pairs, as_json, progress_every, api=serve_api, watch=follow, keep_running=keep_running
    )
    sys.exit(code)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print them as JSON")
@pass_ctx
def cameras(ctx: Context, as_json: bool) -> None:
    """List the cameras of the config (`cameras:`), passwords in URLs hidden."""
    from pipeline.privacy import redact_url

    rows = [
        {
            "name": name,
            "source": redact_url(cam.source),
            "kind": describe(cam.source)[0],
            "enabled": cam.enabled,
            "every_n_frames": ctx.config.for_camera(name).detector.every_n_frames,
            "capture": cam.capture,
        }
        for name, cam in ctx.config.cameras.items()
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no cameras configured (add a cameras: section to the config)")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "enabled " if r["enabled"] else "disabled"
        extra = f" capture {r['capture']}" if r["capture"] else ""
        click.echo(
            f"{r['name']:<{width}}  {state}  {r['kind']:<6}  {r['source']}"
            f"  (detect every {r['every_n_frames']} frame(s)){extra}"
        )


@click.command()
@click.option("--frames", default=60, show_default=True, help="length of the demo clip")
@click.option("--keep", type=click.Path(file_okay=False), help="write the demo files here")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON")
@pass_ctx
def demo(ctx: Context, frames: int, keep: str | None, as_json: bool) -> None:
    """Build a sample clip from a face scikit-image ships, enroll it and run on it."""
    from pipeline.demo import DEMO_NAME, make_demo_video, write_enrollment_photo

    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="facepipe-demo-"))
    photo = write_enrollment_photo(folder / f"{DEMO_NAME}.png")
    video = make_demo_video(folder / "demo.mp4", frames=frames)
    click.echo(f"demo clip {video} ({frames} frames); enrolling {DEMO_NAME}", err=True)
    enroll_people(ctx, [(DEMO_NAME, str(photo))])
    code = run_pipeline(ctx, [(str(video), "demo")], as_json, progress_s=10.0)
    if code == 0 and not as_json:
        click.echo("query the events with: facepipe events --stream demo")
    sys.exit(code)


COMMANDS = [run, demo, cameras]
