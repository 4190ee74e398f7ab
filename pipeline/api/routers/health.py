"""/api/health: readiness per component (store, Redis, workers per stage) and liveness."""

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
    Workers per stage are counted from rq's registry; a stage without workers makes the
    status 'degraded' (events are still served)."""
    try:
        st.store.ping()
        store = Component(ok=True, detail=st.store.engine.dialect.name)
    except Exception as exc:
        store = Component(ok=False, detail=redact_url(f"{type(exc).__name__}: {exc}")[:300])
    workers: dict[str, int] = {}
    if st.bus is None:
        redis = Component(ok=True, detail="not configured (streams and workers unknown)")
    else:
        try:
            st.bus.conn.ping()
            redis = Component(ok=True, detail="reachable")
            workers = _workers(st)
        except Exception as exc:
            redis = Component(ok=False, detail=redact_url(f"{type(exc).__name__}: {exc}")[:300])
    if not store.ok or not redis.ok:
        status = "down"
    elif st.bus is not None and not all(workers.values()):
        status = "degraded"
    else:
        status = "ok"
    body = Health(status=status, store=store, redis=redis, workers=workers)
    return JSONResponse(body.model_dump(), status_code=503 if status == "down" else 200)


def _workers(st: State) -> dict[str, int]:
    from rq import Worker

    from pipeline.stages import STAGE_NAMES

    assert st.bus is not None
    every = Worker.all(connection=st.bus.conn)
    names = {stage: st.bus.queue_name(stage) for stage in STAGE_NAMES}
    return {stage: sum(1 for w in every if q in w.queue_names()) for stage, q in names.items()}
