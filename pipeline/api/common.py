"""What several routers share: name checks, identity errors, the erase of files, visits."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from pipeline.api.app import ApiError, State
from pipeline.api.models import Change, Correction, Erased, Visit, Visits
from pipeline.names import BadName, check_person, check_stream
from pipeline.record import iso_utc

EventId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="an event's id")]


def person_name(name: str, allow_unknown: bool = False) -> str:
    """A valid person name (or unknown-N when allowed), else 422."""
    try:
        return check_person(name, allow_unknown=allow_unknown)
    except BadName as exc:
        raise ApiError(422, str(exc)) from None


def stream_name(name: str) -> str:
    try:
        return check_stream(name)
    except BadName as exc:
        raise ApiError(422, str(exc)) from None


def epoch(value: datetime | None) -> float | None:
    """A time filter as seconds since the epoch (a time without zone is UTC)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def identity_error(exc: Exception) -> ApiError:
    """An IdentityError as an HTTP error: 404 when something named does not exist, 409
    when the new name exists already, 422 otherwise."""
    message = str(exc)
    if message.startswith("no "):
        return ApiError(404, message)
    if "exists already" in message:
        return ApiError(409, message)
    return ApiError(422, message)


def correction(what: str, changes: list[Any]) -> Correction:
    return Correction(result=what, changes=[Change(**c.as_json()) for c in changes])


def erase(st: State, name: str) -> Erased:
    """Forget ``name`` (a person or an unknown-N) as `facepipe people --erase` does."""
    from pipeline.identities import IdentityError
    from pipeline.store import delete_snapshot_files

    try:
        deleted = st.identities().erase(name)
    except IdentityError as exc:
        raise identity_error(exc) from None
    files = delete_snapshot_files(deleted.snapshots, st.config.snapshots_path)
    return Erased(
        result=f"erased {name}",
        events=deleted.events,
        samples=deleted.samples,
        negatives=deleted.negatives,
        snapshot_files=files,
    )


def visits(st: State, name: str, gap_s: float) -> Visits:
    """``name``'s events in time order, consecutive ones on one stream (each starting at
    most ``gap_s`` after the previous ended) joined into one visit."""
    if not st.store.identity_exists(name) or name == "unknown":
        raise ApiError(404, f"no person or unknown identity named {name!r}")
    out: list[dict[str, Any]] = []
    for ev in st.store.find_events(person=name, newest_first=False):
        last = out[-1] if out else None
        if last and last["stream"] == ev["stream"] and ev["first_seen"] - last["last"] <= gap_s:
            last["last"] = max(last["last"], ev["last_seen"])
            last["events"].append(ev["id"])
        else:
            out.append({"stream": ev["stream"], "first": ev["first_seen"],
                        "last": ev["last_seen"], "events": [ev["id"]]})  # fmt: skip
    return Visits(
        name=name,
        visits=[
            Visit(
                stream=v["stream"],
                first_seen=iso_utc(v["first"]) or "",
                last_seen=iso_utc(v["last"]) or "",
                duration_s=round(v["last"] - v["first"], 3),
                events=v["events"],
            )
            for v in out
        ],
    )


def snapshot_file(st: State, path: str | None, what: str) -> FileResponse:
    """The snapshot file ``path`` if it lies inside the snapshots directory, else 404."""
    return FileResponse(stored_file(st, path, what, "snapshot"), media_type="image/jpeg")


def stored_file(st: State, path: str | None, what: str, kind: str) -> Path:
    """``path`` (a snapshot or context image) if it is a file inside the snapshots
    directory, else 404: no other file is ever served."""
    if not path:
        raise ApiError(404, f"{what} has no {kind}")
    root = st.config.snapshots_path.resolve()
    file = Path(path).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        raise ApiError(404, f"{what}: {kind} file not available")
    return file
