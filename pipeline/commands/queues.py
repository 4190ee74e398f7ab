"""`facepipe queues`: what waits, runs and failed on each stage's queue; the failed
messages of a stage, and those of a stream stage (track, sink) sent back."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from pipeline.commands import Context, pass_ctx
from pipeline.stages import STAGE_NAMES, STAGES


def _last_line(text: str) -> str:
    """The line of a failure's text that says what failed (a traceback's last)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _failed(bus: Any, stage: str) -> list[dict[str, Any]]:
    """A stage's failed messages, newest first: when, runs, why (its last line)."""
    if STAGES[stage].transport == "stream":
        return [
            {"at": r.get("at"), "attempts": r.get("attempts"), "reason": _last_line(r["reason"]),
             "bytes": len(r.get("payload") or "")}
            for r in bus.failed_entries(stage)
        ]  # fmt: skip
    from rq.job import Job
    from rq.registry import FailedJobRegistry

    out = []
    q = bus.queue(stage)
    for job_id in reversed(FailedJobRegistry(queue=q).get_job_ids()):
        job = Job.fetch(job_id, connection=bus.conn, serializer=q.serializer)
        result = job.latest_result()
        ended = job.ended_at.timestamp() if job.ended_at else None
        reason = _last_line(result.exc_string or "") if result is not None else ""
        out.append({"at": ended, "job": job_id, "reason": reason})
    return out


@click.command()
@click.option("--failed", "show", metavar="STAGE", type=click.Choice(STAGE_NAMES),
              help="list STAGE's failed messages, newest first (when, runs, why)")  # fmt: skip
@click.option("--requeue", metavar="STAGE", type=click.Choice(STAGE_NAMES),
              help="send the failed messages of a stream stage (track, sink) back to its "
              "queue; rq stages: `rq requeue --queue <prefix>.<stage> --all`")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print as JSON")
@pass_ctx
def queues(ctx: Context, show: str | None, requeue: str | None, as_json: bool) -> None:
    """Each stage's queue: its transport and its messages waiting, running (taken by a
    live worker), failed and set aside (dead letters). Needs REDIS_URL."""
    from pipeline.commands.services import _runtime

    bus = _runtime(ctx).bus
    if requeue is not None:
        if STAGES[requeue].transport != "stream":
            raise click.ClickException(
                f"{requeue} is an rq stage: requeue its failed jobs with "
                f"`rq requeue --url $REDIS_URL --queue {bus.queue_name(requeue)} --all`"
            )
        n = bus.requeue_failed(requeue)
        click.echo(json.dumps({"requeued": n}) if as_json else f"{requeue}: {n} sent again")
        return
    if show is not None:
        rows = _failed(bus, show)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
            return
        for r in rows:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["at"])) if r["at"] else "?"
            runs = f", {r['attempts']} run(s)" if "attempts" in r else f", job {r['job']}"
            click.echo(f"{at}{runs}: {r['reason']}")
        click.echo(f"{show}: {len(rows)} failed")
        return
    table = {
        stage: {
            "transport": spec.transport,
            "waiting": bus.depth(stage),
            "running": bus.busy(stage),
            "failed": bus.failed(stage),
            "dead_letters": int(bus.conn.llen(bus.dead_key(stage))),
        }
        for stage, spec in STAGES.items()
    }
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    click.echo(
        f"{'stage':<11}{'transport':<10}{'waiting':>8}{'running':>8}{'failed':>7}{'dead':>6}"
    )
    for stage, row in table.items():
        click.echo(
            f"{stage:<11}{row['transport']:<10}{row['waiting']:>8}{row['running']:>8}"
            f"{row['failed']:>7}{row['dead_letters']:>6}"
        )


COMMANDS = [queues]
