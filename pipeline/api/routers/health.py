"""/api/health: readiness per component (store, Redis, workers per stage, streams) and
liveness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from pipeline.api.app import State, state
from pipeline.api.models import Component, Health
from pipeline.privacy import redact_url

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=dict[str, str])
def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(st: Annotated[State, Depends(state)]) -> JSONResponse:
    """Ready when the store answers (and Redis, when one is configured): 200, else 503.
    Workers per stage are counted from rq's registry; a stage without workers, a live
    camera that is down, or a camera added at run time that failed or that no follower
    runs makes the status 'degraded' (events are still served)."""
    try:
        st.store.ping()
        store = Component(ok=True, detail=st.store.engine.dialect.name)
    except Exception as exc:
        store = Component(ok=False, detail=redact_url(f"{type(exc).__name__}: {exc}")[:300])
    workers: dict[str, int] = {}
    streams: dict[str, Component] = {}
    if st.bus is None:
        redis = Component(ok=True, detail="not configured (streams and workers unknown)")
    else:
        try:
            st.bus.conn.ping()
            redis = Component(ok=True, detail="reachable")
            workers = _workers(st)
            streams = _streams(st)
        except Exception as exc:
            redis = Component(ok=False, detail=redact_url(f"{type(exc).__name__}: {exc}")[:300])
    if not store.ok or not redis.ok:
        status = "down"
    elif st.bus is not None and (
        not all(workers.values()) or not all(c.ok for c in streams.values())
    ):
        status = "degraded"
    else:
        status = "ok"
    body = Health(status=status, store=store, redis=redis, workers=workers, streams=streams)
    return JSONResponse(body.model_dump(), status_code=503 if status == "down" else 200)


def _workers(st: State) -> dict[str, int]:
    from rq import Worker

    from pipeline.stages import STAGE_NAMES

    assert st.bus is not None
    every = Worker.all(connection=st.bus.conn)
    names = {stage: st.bus.queue_name(stage) for stage in STAGE_NAMES}
    return {stage: sum(1 for w in every if q in w.queue_names()) for stage, q in names.items()}


# states of a camera added at run time (pipeline/stream_control.py) that need an operator
_ADDED_NOT_OK = {"failed": "failed", "waiting": "no capture process runs it"}


def _streams(st: State) -> dict[str, Component]:
    """Live sources by their capture's ``facepipe_source_up`` gauge (it expires when the
    capture dies), then cameras added at run time by their follower's status."""
    from pipeline.metrics import SEP, Metrics

    assert st.bus is not None
    out: dict[str, Component] = {}
    for field, (labels, value) in Metrics(st.bus).gauge_values().items():
        if field.split(SEP, 1)[0] == "facepipe_source_up" and "stream" in labels:
            up = value >= 1.0
            out[labels["stream"]] = Component(
                ok=up, detail="live source up" if up else "live source down: reconnecting"
            )
    for name, status in st.bus.camera_status().items():
        if name in out:
            continue
        state = str(status.get("state", "unknown"))
        why = _ADDED_NOT_OK.get(state)
        detail = f"added at run time: {state}"
        if status.get("error"):
            detail += f" ({str(status['error'])[:200]})"
        out[name] = Component(ok=why is None, detail=redact_url(detail))
    return out
