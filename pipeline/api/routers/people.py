"""/api/people: enrolled people (list, enrol by photo upload, rename, merge, erase) and
their visits across streams. The identity operations are the CLI's
(:class:`pipeline.identities.Identities`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from pipeline.api.app import ApiError, State, state
from pipeline.api.common import correction, erase, identity_error, person_name, visits
from pipeline.api.models import Correction, Erased, Error, MergeBody, NameBody, Person, Visits
from pipeline.api.uploads import encode_uploads
from pipeline.record import iso_utc

router = APIRouter(tags=["people"])

NOT_FOUND = {404: {"model": Error}}


def _people(st: State) -> dict[str, Person]:
    stats = st.store.person_stats()
    out = {}
    for p in st.store.people():
        s = stats.get(p["name"], {})
        out[p["name"]] = Person(
            name=p["name"],
            photos=p["photos"],
            events=s.get("events", 0),
            first_seen=iso_utc(s.get("first_seen")),
            last_seen=iso_utc(s.get("last_seen")),
            created=iso_utc(p["created"]) or "",
        )
    return out


@router.get("/people", response_model=list[Person])
def list_people(st: Annotated[State, Depends(state)]) -> list[Person]:
    """Enrolled people with their photo count, event count and last sighting."""
    return list(_people(st).values())


@router.post(
    "/people",
    response_model=Correction,
    status_code=201,
    responses={409: {"model": Error}, 413: {"model": Error}},
)
def enroll(
    st: Annotated[State, Depends(state)],
    name: Annotated[str, Form(description="the person's name")],
    photos: Annotated[list[UploadFile], File(description="photos, one face each")],
) -> Correction:
    """Enrol NAME from uploaded photos (each showing exactly one face), as `facepipe
    enroll` does; past events move to NAME only when clearly NAME."""
    name = person_name(name)
    encoded = encode_uploads(st, photos, st.config.recognition.enroll_jitters)
    n = st.store.enroll(
        name,
        [v for _, v, _, _ in encoded],
        [f"upload:{f}" for f, _, _, _ in encoded],
        [q for _, _, _, q in encoded],
    )
    changes = st.identities().after_enrolment(name)
    return correction(f"enrolled {name}: {n} photo(s)", changes)


def _person(st: State, name: str) -> Person:
    person_name(name)
    found = _people(st).get(name)
    if found is None:
        raise ApiError(404, f"no enrolled person named {name!r}")
    return found


@router.get("/people/{name}", response_model=Person, responses=NOT_FOUND)
def get_person(name: str, st: Annotated[State, Depends(state)]) -> Person:
    return _person(st, name)


@router.post(
    "/people/{name}/rename",
    response_model=Correction,
    responses={**NOT_FOUND, 409: {"model": Error}},
)
def rename(name: str, body: NameBody, st: Annotated[State, Depends(state)]) -> Correction:
    """Rename a person; only their events change."""
    from pipeline.identities import IdentityError

    _person(st, name)
    new = person_name(body.name)
    try:
        changes = st.identities().rename(name, new)
    except IdentityError as exc:
        raise identity_error(exc) from None
    return correction(f"renamed {name} to {new}", changes)


@router.post("/people/{name}/merge", response_model=Correction, responses=NOT_FOUND)
def merge(name: str, body: MergeBody, st: Annotated[State, Depends(state)]) -> Correction:
    """Join ``other`` (a person or an unknown-N) into this person."""
    from pipeline.identities import IdentityError

    _person(st, name)
    other = person_name(body.other, allow_unknown=True)
    try:
        changes = st.identities().merge(name, other)
    except IdentityError as exc:
        raise identity_error(exc) from None
    return correction(f"merged {other} into {name}", changes)


@router.delete("/people/{name}", response_model=Erased, responses=NOT_FOUND)
def erase_person(name: str, st: Annotated[State, Depends(state)]) -> Erased:
    """Forget a person entirely: photos' encodings, negatives, their events with samples
    and snapshot files (as `facepipe people --erase`)."""
    return erase(st, person_name(name))


@router.get("/people/{name}/visits", response_model=Visits, responses=NOT_FOUND)
def person_visits(
    name: str,
    st: Annotated[State, Depends(state)],
    gap_s: Annotated[float, Query(ge=0, le=86400 * 365)] = 60.0,
) -> Visits:
    """The person's appearances across streams in time order (camera A -> B -> C)."""
    return visits(st, person_name(name), gap_s)
