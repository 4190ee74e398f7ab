"""/api/unknowns: unrecognised people clustered into unknown-N (list, snapshot, name,
merge, erase, visits)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from pipeline.api.app import ApiError, State, state
from pipeline.api.common import (
    correction,
    erase,
    identity_error,
    person_name,
    snapshot_file,
    visits,
)
from pipeline.api.models import Correction, Erased, Error, MergeBody, NameBody, Unknown, Visits
from pipeline.identities import UNKNOWN_RE
from pipeline.record import iso_utc

router = APIRouter(tags=["unknowns"])

NOT_FOUND = {404: {"model": Error}}


def _unknown_name(name: str) -> str:
    if not UNKNOWN_RE.match(name):
        raise ApiError(422, f"{name!r} is not an unknown-N")
    return name


def _rows(st: State) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["name"]: r for r in st.identities().unknown_list()}


def _model(r: dict) -> Unknown:  # type: ignore[type-arg]
    return Unknown(
        name=r["name"],
        events=r["events"],
        streams=r["streams"],
        first_seen=iso_utc(r["first_seen"]) or "",
        last_seen=iso_utc(r["last_seen"]) or "",
        snapshot_url=f"/api/unknowns/{r['name']}/snapshot" if r["snapshot"] else None,
    )


@router.get("/unknowns", response_model=list[Unknown])
def list_unknowns(st: Annotated[State, Depends(state)]) -> list[Unknown]:
    """unknown-N identities with their events, streams and best snapshot."""
    return [_model(r) for r in _rows(st).values()]


def _unknown(st: State, name: str) -> dict:  # type: ignore[type-arg]
    row = _rows(st).get(_unknown_name(name))
    if row is None:
        raise ApiError(404, f"no unknown identity named {name!r}")
    return row


@router.get("/unknowns/{name}", response_model=Unknown, responses=NOT_FOUND)
def get_unknown(name: str, st: Annotated[State, Depends(state)]) -> Unknown:
    return _model(_unknown(st, name))


@router.get(
    "/unknowns/{name}/snapshot",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}}}, **NOT_FOUND},
)
def unknown_snapshot(name: str, st: Annotated[State, Depends(state)]) -> FileResponse:
    """The best face crop among the unknown-N's events (JPEG)."""
    return snapshot_file(st, _unknown(st, name)["snapshot"], name)


@router.post(
    "/unknowns/{name}/name",
    response_model=Correction,
    responses={**NOT_FOUND, 409: {"model": Error}},
)
def name_unknown(name: str, body: NameBody, st: Annotated[State, Depends(state)]) -> Correction:
    """Name an unknown-N: its events get the name and their encodings are enrolled (an
    existing person's name is a merge into that person)."""
    from pipeline.identities import IdentityError

    _unknown(st, name)
    new = person_name(body.name)
    ids = st.identities()
    try:
        if new in {p["name"] for p in st.store.people()}:
            return correction(f"merged {name} into {new}", ids.merge(new, name))
        return correction(f"renamed {name} to {new}", ids.rename(name, new))
    except IdentityError as exc:
        raise identity_error(exc) from None


@router.post("/unknowns/{name}/merge", response_model=Correction, responses=NOT_FOUND)
def merge_unknowns(name: str, body: MergeBody, st: Annotated[State, Depends(state)]) -> Correction:
    """Join unknown-N ``other`` into this one."""
    from pipeline.identities import IdentityError

    _unknown(st, name)
    other = _unknown_name(body.other)
    try:
        changes = st.identities().merge(name, other)
    except IdentityError as exc:
        raise identity_error(exc) from None
    return correction(f"merged {other} into {name}", changes)


@router.delete("/unknowns/{name}", response_model=Erased, responses=NOT_FOUND)
def erase_unknown(name: str, st: Annotated[State, Depends(state)]) -> Erased:
    """Forget an unknown-N entirely: its events with samples and snapshot files."""
    return erase(st, _unknown_name(name))


@router.get("/unknowns/{name}/visits", response_model=Visits, responses=NOT_FOUND)
def unknown_visits(
    name: str,
    st: Annotated[State, Depends(state)],
    gap_s: Annotated[float, Query(ge=0, le=86400 * 365)] = 60.0,
) -> Visits:
    """The unknown-N's appearances across streams in time order."""
    return visits(st, _unknown_name(name), gap_s)
