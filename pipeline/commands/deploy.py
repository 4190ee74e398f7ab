"""Deployment helpers: `facepipe health` (container healthchecks, readiness probes) and
`facepipe compose` (one capture service per configured camera for docker compose)."""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

import click

from pipeline.commands import Context, pass_ctx
from pipeline.privacy import redact_url
from pipeline.stages import STAGE_NAMES


def _check_redis(ctx: Context) -> tuple[bool, str]:
    from pipeline.bus import connect

    url = ctx.config.redis.url
    if not url:
        return False, "no Redis URL (set REDIS_URL or redis.url)"
    try:
        connect(url).ping()
    except Exception as exc:
        return False, redact_url(f"cannot reach Redis at {url}: {exc}")
    return True, redact_url(f"Redis at {url} answers")


def _check_store(ctx: Context) -> tuple[bool, str]:
    import sqlalchemy as sa

    url = ctx.config.store_url
    try:
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return False, redact_url(f"cannot open the event store {url}: {exc}".splitlines()[0])
    return True, redact_url(f"event store {url} answers")


def _check_worker(ctx: Context, stage: str) -> tuple[bool, str]:
    from pipeline.bus import Bus, connect

    url = ctx.config.redis.url
    if not url:
        return False, "no Redis URL"
    bus = Bus(connect(url), ctx.config.redis.prefix)
    host = socket.gethostname()
    try:
        alive = list(bus.conn.scan_iter(bus.key("alive", f"{stage}-{host}-*"), count=1000))
    except Exception as exc:
        return False, redact_url(f"cannot read heartbeats: {exc}")
    if not alive:
        return False, f"no {stage} worker on {host} with a fresh heartbeat"
    return True, f"{len(alive)} {stage} worker(s) on {host} with a fresh heartbeat"


@click.command()
@click.option("--store", is_flag=True, help="also check the event store (database) answers")
@click.option("--worker", "stages", multiple=True, type=click.Choice(STAGE_NAMES),
              help="also check a worker of STAGE on this host beats its heartbeat")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print the checks as JSON")
@pass_ctx
def health(ctx: Context, store: bool, stages: tuple[str, ...], as_json: bool) -> None:
    """Check what this process needs: Redis (always), the store, local workers.

    Exit status 0 when every check passes, 1 otherwise: for container healthchecks
    (docker-compose.yml) and readiness probes.
    """
    checks: dict[str, tuple[bool, str]] = {"redis": _check_redis(ctx)}
    if store:
        checks["store"] = _check_store(ctx)
    for stage in stages:
        checks[f"worker:{stage}"] = _check_worker(ctx, stage)
    ok = all(passed for passed, _ in checks.values())
    if as_json:
        click.echo(json.dumps({"ok": ok, "checks": {k: {"ok": p, "message": m}
                                                    for k, (p, m) in checks.items()}}))  # fmt: skip
    else:
        for name, (passed, message) in checks.items():
            click.echo(f"{'ok  ' if passed else 'FAIL'} {name}: {message}")
    sys.exit(0 if ok else 1)


CONFIG_FILE = "${FACEPIPE_CONFIG_FILE:-./config/facepipe.yaml}"


def compose_services(ctx: Context, image: str = "facepipe:latest") -> dict[str, Any]:
    """A compose override with one ``capture-NAME`` service per enabled camera."""
    from pipeline.sources import describe

    services: dict[str, Any] = {}
    for name, cam in ctx.config.cameras.items():
        if not cam.enabled:
            continue
        live = describe(cam.source)[1]
        service: dict[str, Any] = {
            "image": image,
            "command": ["capture", "--camera", name],
            "environment": {
                "REDIS_URL": "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD}@redis:6379/0",
                "FACEPIPE_CONFIG": "/etc/facepipe/facepipe.yaml",
            },
            "volumes": [
                "${FACEPIPE_CONFIG_FILE:-./config/facepipe.yaml}:/etc/facepipe/facepipe.yaml:ro"
            ],
            "depends_on": {"redis": {"condition": "service_healthy"}},
            # a live camera runs (and is retried) forever; a file is read once
            "restart": "unless-stopped" if live else "no",
        }
        if cam.source.isdigit():
            service["devices"] = [f"/dev/video{cam.source}:/dev/video{cam.source}"]
        elif not live:
            service["volumes"].append("./videos:/videos:ro")
        services[f"capture-{name}"] = service
    return {"services": services}


@click.command()
@click.option("--image", default="facepipe:latest", show_default=True, help="image to run")
@pass_ctx
def compose(ctx: Context, image: str) -> None:
    """Print a docker compose override with a capture service per configured camera.

    Use: `facepipe -c my.yaml compose > docker-compose.cameras.yml`, then
    `docker compose -f docker-compose.yml -f docker-compose.cameras.yml up -d`.
    """
    import yaml

    doc = compose_services(ctx, image)
    if not doc["services"]:
        raise click.ClickException("no enabled cameras in the config (cameras:)")
    click.echo("# generated by `facepipe compose` from the config's cameras: section")
    click.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)


COMMANDS = [health, compose]
