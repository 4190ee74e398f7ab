"""/api/events: the event log (filters, paging), one event, its snapshot and context image,
corrections."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, Response

from pipeline.api.app import ApiError, State, state
from pipeline.api.common import (
    EventId,
    correction,
    epoch,
    identity_error,
    person_name,
    snapshot_file,
    stored_file,
    stream_name,
)
from pipeline.api.models import Correction, Error, Event, EventDetail, EventPage, NameBody, Sample
from pipeline.record import iso_utc

router = APIRouter(tags=["events"])


@router.get("/events", response_model=EventPage, responses={404: {"model": Error}})
def list_events(
    st: Annotated[State, Depends(state)],
    person: Annotated[
        str | None,
        Query(description="a name, 'unknown' (every unrecognised event) or an unknown-N"),
    ] = None,
    stream: Annotated[str | None, Query(description="a stream name")] = None,
    since: Annotated[
        datetime | None, Query(description="seen at or after (ISO 8601; no zone: UTC)")
    ] = None,
    until: Annotated[datetime | None, Query(description="seen at or before")] = None,
    min_confidence: Annotated[
        float | None, Query(ge=0, le=1, description="person_confidence at least this")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> EventPage:
    """Events newest first (by first seen); an unknown person is 404."""
    if person is not None and person != "unknown":
        person_name(person, allow_unknown=True)
        if not st.store.identity_exists(person):
            raise ApiError(404, f"no person or unknown identity named {person!r}")
    if stream is not None:
        stream_name(stream)
    filters = dict(
        person=person,
        stream=stream,
        since=epoch(since),
        until=epoch(until),
        min_confidence=min_confidence,
    )
    rows = st.store.with_positions(st.store.find_events(**filters, limit=limit, offset=offset))
    return EventPage(
        items=[Event.from_row(r) for r in rows],
        total=st.store.count_events(**filters),
        limit=limit,
        offset=offset,
    )


def _event(st: State, event_id: int) -> dict:  # type: ignore[type-arg]
    ev = st.store.event_by_id(event_id)
    if ev is None:
        raise ApiError(404, f"no event {event_id}")
    return ev


@router.get("/events/{event_id}", response_model=EventDetail, responses={404: {"model": Error}})
def get_event(event_id: EventId, st: Annotated[State, Depends(state)]) -> EventDetail:
    """One event with its samples (face encodings are not shown)."""
    ev = _event(st, event_id)
    samples = [
        Sample(
            kind=s["kind"],
            seq=s["seq"],
            ts=iso_utc(s["ts"]) or "",
            quality=s["quality"],
            name=s["name"],
            distance=s["distance"],
            age=s["age"],
            p_female=s["p_female"],
        )
        for s in st.store.event_samples(ev["track_uid"])
    ]
    (ev,) = st.store.with_positions([ev])
    return EventDetail(**Event.from_row(ev).model_dump(), samples=samples)


@router.get(
    "/events/{event_id}/snapshot",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Error}},
)
def get_snapshot(event_id: EventId, st: Annotated[State, Depends(state)]) -> FileResponse:
    """The event's best face crop (JPEG), only from the snapshots directory."""
    return snapshot_file(st, _event(st, event_id)["snapshot"], f"event {event_id}")


@router.get(
    "/events/{event_id}/context",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 404: {"model": Error}},
)
def get_context(event_id: EventId, st: Annotated[State, Depends(state)]) -> Response:
    """The event's context image (JPEG): the whole frame its snapshot was cut from, with
    the faces of that frame boxed and labelled (track id, and the name, age and gender the
    store holds now); only from the snapshots directory."""
    from pipeline.web.live import render_context

    ev = _event(st, event_id)
    path = stored_file(st, ev.get("context"), f"event {event_id}", "context image")
    try:
        data = render_context(st, ev, path)
    except ValueError as exc:
        raise ApiError(404, f"event {event_id}: {exc}") from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})


@router.post(
    "/events/{event_id}/not",
    response_model=Correction,
    responses={404: {"model": Error}},
)
def not_person(
    event_id: EventId, body: NameBody, st: Annotated[State, Depends(state)]
) -> Correction:
    """ "This event is not NAME": the event's face becomes a negative example of NAME;
    that event and NAME's events are re-matched (as `facepipe events --not`)."""
    from pipeline.identities import IdentityError

    name = person_name(body.name)
    try:
        changes = st.identities().mark_not(event_id, name)
    except IdentityError as exc:
        raise identity_error(exc) from None
    ev = _event(st, event_id)
    now = ev["person"] or ev["unknown_id"] or "unknown"
    return correction(f"event {event_id} is not {name}: now {now}", changes)
