"""/api/streams: streams with their status (Redis: capture sessions and frame counts)
and what the store holds of them (events, first and last seen)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from pipeline.api.app import State, state
from pipeline.api.models import Stream, StreamSession
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
    if st.bus is not None:
        registered = st.bus.streams()
        ordered = sorted(registered.items(), key=lambda kv: -float(kv[1].get("started") or 0))
        for sid, info in ordered:
            stream, _, session = sid.partition("/")
            shown = sessions.setdefault(stream, [])
            if len(shown) < SESSIONS_SHOWN:
                shown.append(_session(st, stream, session, info))
    out = []
    for name in sorted(set(stats) | set(sessions)):
        s, mine = stats.get(name, {}), sessions.get(name, [])
        states = {x.status for x in mine}
        status = next(
            (x for x in ("capturing", "finishing", "done") if x in states),
            "idle" if st.bus is not None else "unknown",
        )
        out.append(
            Stream(
                name=name,
                status=status,
                events=s.get("events", 0),
                first_seen=iso_utc(s.get("first_seen")),
                last_seen=iso_utc(s.get("last_seen")),
                sessions=mine,
            )
        )
    return out
