"""/api/streams: streams with their status (Redis: capture sessions and frame counts)
and what the store holds of them (events, first and last seen); cameras added and removed
at run time (the desired set in Redis that capture processes follow,
:mod:`pipeline.stream_control`)."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam

from pipeline.api.app import ApiError, State, state
from pipeline.api.models import AddedCamera, Error, Stream, StreamAdd, StreamSession
from pipeline.record import iso_utc

router = APIRouter(tags=["streams"])

SESSIONS_SHOWN = 10  # newest capture sessions listed per stream


def _session(st: State, stream: str, session: str, info: dict[str, Any]) -> StreamSession:
    assert st.bus is not None
    counts = st.bus.stream_counts(stream, session)
    dropped = sum(v for k, v in counts.items() if k.startswith("dropped:"))
    if not counts:
        status = "gone"  # its keys expired, or Redis lost them
    elif "end_seq" not in counts:
        status = "capturing"
    elif st.bus.stream_done(stream, session):
        status = "done"
    else:
        status = "finishing"
    started = info.get("started")
    return StreamSession(
        session=session,
        source=_source(info.get("source")),
        live=info.get("live"),
        started=iso_utc(started) if isinstance(started, int | float) else None,
        status=status,
        captured=counts.get("captured", 0),
        processed=counts.get("processed", 0),
        dropped=dropped,
    )


def _source(spec: Any) -> str | None:
    from pipeline.privacy import redact_url

    return None if spec is None else redact_url(str(spec))


@router.get("/streams", response_model=list[Stream])
def list_streams(st: Annotated[State, Depends(state)]) -> list[Stream]:
    """Every stream the store or Redis knows, with its capture sessions (newest first)
    and a status: capturing, finishing (captured, still in the pipeline), done, idle
    (nothing captured now), unknown (no Redis configured)."""
    stats = st.store.stream_stats()
    sessions: dict[str, list[StreamSession]] = {}
    added = _added(st)
    if st.bus is not None:
        registered = st.bus.streams()
        ordered = sorted(registered.items(), key=lambda kv: -float(kv[1].get("started") or 0))
        for sid, info in ordered:
            stream, _, session = sid.partition("/")
            shown = sessions.setdefault(stream, [])
            if len(shown) < SESSIONS_SHOWN:
                shown.append(_session(st, stream, session, info))
    out = []
    for name in sorted(set(stats) | set(sessions) | set(added)):
        s, mine = stats.get(name, {}), sessions.get(name, [])
        states = {x.status for x in mine}
        status = next(
            (x for x in ("capturing", "finishing", "done") if x in states),
            "idle" if st.bus is not None else "unknown",
        )
        cam = added.get(name)
        if cam is not None and status != "capturing":
            if cam.state in ("waiting", "starting"):
                status = "starting"
            elif cam.state == "failed":
                status = "failed"
        out.append(
            Stream(
                name=name,
                status=status,
                events=s.get("events", 0),
                first_seen=iso_utc(s.get("first_seen")),
                last_seen=iso_utc(s.get("last_seen")),
                sessions=mine,
                added=cam,
            )
        )
    return out


def _added(st: State) -> dict[str, AddedCamera]:
    """The cameras added at run time, with what their capture process last said."""
    if st.bus is None:
        return {}
    status = st.bus.camera_status()
    out = {}
    for name, spec in st.bus.cameras().items():
        said = status.get(name, {})
        if said.get("id") != spec.get("id"):
            said = {}  # about an earlier camera of that name
        added = spec.get("added")
        out[name] = AddedCamera(
            source=_source(spec.get("source")) or "",
            added=iso_utc(added) if isinstance(added, int | float) else None,
            state=said.get("state", "waiting"),
            error=said.get("error"),
            session=said.get("session"),
            owner=said.get("owner"),
        )
    return out


def _bus(st: State):  # type: ignore[no-untyped-def]
    if st.bus is None:
        raise ApiError(503, "adding or removing a stream needs Redis (REDIS_URL)")
    return st.bus


StreamName = Annotated[str, PathParam(description="a stream name", max_length=200)]


@router.post(
    "/streams",
    response_model=Stream,
    status_code=201,
    responses={409: {"model": Error}, 503: {"model": Error}},
)
def add_stream(body: StreamAdd, st: Annotated[State, Depends(state)]) -> Stream:
    """Add a camera at run time: checked as a `cameras:` entry of the config is (errors
    name the bad key, `cameras.door.capture.max_queue: ...`), then put in the desired
    camera set in Redis; a capture process that follows it (`facepipe run`) starts it
    within about a second. 409 when the name is taken (added already, or captured now)."""
    from pipeline.config import ConfigError
    from pipeline.stream_control import check_camera

    bus = _bus(st)
    spec = body.model_dump(exclude={"name"}, exclude_defaults=True)
    try:
        camera = check_camera(body.name, spec)
    except ConfigError as exc:
        raise ApiError(422, str(exc)) from None
    if body.name in bus.cameras():
        raise ApiError(409, f"stream {body.name!r} was added already (DELETE it first)")
    busy = False
    for sid in bus.streams():
        stream, _, session = sid.partition("/")
        counts = bus.stream_counts(stream, session) if stream == body.name else {}
        busy = busy or bool(counts and "end_seq" not in counts)
    if busy:
        raise ApiError(409, f"stream {body.name!r} is being captured already")
    record = {
        **camera.model_dump(exclude_defaults=True),
        "source": camera.source,
        "id": secrets.token_hex(8),
        "added": time.time(),
    }
    if not bus.add_camera(body.name, record):
        raise ApiError(409, f"stream {body.name!r} was added already (DELETE it first)")
    (out,) = [s for s in list_streams(st) if s.name == body.name]
    return out


@router.delete(
    "/streams/{name}",
    response_model=Stream,
    responses={404: {"model": Error}, 503: {"model": Error}},
)
def remove_stream(name: StreamName, st: Annotated[State, Depends(state)]) -> Stream:
    """Remove a camera added at run time: its capture process stops it within about a
    second; the frames it captured are still processed and counted (its session turns
    `finishing`, then `done`). 404 for a stream that was not added through the API."""
    from pipeline.api.common import stream_name

    bus = _bus(st)
    stream_name(name)
    before = {s.name: s for s in list_streams(st)}.get(name)
    if not bus.remove_camera(name) or before is None:
        raise ApiError(404, f"no stream {name!r} added at run time (POST /api/streams)")
    return before
