"""The web UI's pages. Each reads through the API's route functions (the same checks,
errors and models as ``/api``); buttons on the pages call ``/api`` with ``fetch``."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from pipeline.api.app import SESSION_COOKIE, ApiError, State, session_value, state
from pipeline.api.common import EventId
from pipeline.web import HERE, live

templates = Jinja2Templates(directory=HERE / "templates")
PAGE = 50  # events per page


class LoginRequired(Exception):
    """A page was asked for without a session while api.token is set."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def login_redirect(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse("/login?" + urlencode({"next": exc.next_path}), status_code=303)


def signed_in(request: Request, token: str | None) -> bool:
    """True without a token, or with the session cookie (or the bearer header)."""
    if token is None:
        return True
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if hmac.compare_digest(cookie.encode(), session_value(token).encode()):
        return True
    header = request.headers.get("authorization", "")
    return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())


def page_user(request: Request, st: Annotated[State, Depends(state)]) -> None:
    """Pages: to /login without a session."""
    if not signed_in(request, st.config.api.token):
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(path)


def media_user(request: Request, st: Annotated[State, Depends(state)]) -> None:
    """Images and streams: 401 without a session."""
    if not signed_in(request, st.config.api.token):
        raise ApiError(401, "log in at /login (or send Authorization: Bearer TOKEN)")


router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
Page = Annotated[None, Depends(page_user)]
Media = Annotated[None, Depends(media_user)]
St = Annotated[State, Depends(state)]


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    st: State = state(request)
    context.setdefault("error", None)
    context["auth"] = st.config.api.token is not None
    return templates.TemplateResponse(request, name, context, status_code=status)


def error_page(request: Request, exc: ApiError) -> HTMLResponse:
    return render(request, "error.html", exc.status, error=exc.detail)


def _local(path: str | None) -> str:
    """``path`` if it is a path on this site (no open redirect), else the events page."""
    if path and path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return "/events"


# ----- login ------------------------------------------------------------------------
@router.get("/login")
def login_form(request: Request, next: str = "/events") -> HTMLResponse:  # noqa: A002
    return render(request, "login.html", next=_local(next))


@router.post("/login", response_model=None)
def login(
    request: Request, st: St, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""
) -> Response:  # noqa: A002
    expected = st.config.api.token
    if expected is None:
        return RedirectResponse(_local(next), status_code=303)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return render(request, "login.html", 401, next=_local(next), error="wrong token")
    out = RedirectResponse(_local(next), status_code=303)
    out.set_cookie(
        SESSION_COOKIE,
        session_value(expected),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return out


@router.post("/logout")
def logout() -> RedirectResponse:
    out = RedirectResponse("/login", status_code=303)
    out.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return out


# ----- events -----------------------------------------------------------------------
@router.get("/")
def home(_: Page) -> RedirectResponse:
    return RedirectResponse("/events", status_code=303)


def _when(value: str | None, what: str) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(422, f"{what}: not a date and time ({value!r})") from None


@router.get("/events")
def events_page(
    request: Request,
    _: Page,
    st: St,
    person: str = "",
    stream: str = "",
    since: str = "",
    until: str = "",
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> HTMLResponse:
    from pipeline.api.routers.events import list_events

    filters = {"person": person, "stream": stream, "since": since, "until": until}
    # the names offered: people (cheap); an unknown-N is typed (or followed from a link)
    people = sorted({p["name"] for p in st.store.people()} | set(st.store.person_stats()))
    context: dict[str, Any] = dict(
        filters=filters,
        names=[*people, "unknown"],
        streams=sorted(st.store.stream_stats()),
    )
    try:
        result = list_events(
            st,
            person=person or None,
            stream=stream or None,
            since=_when(since, "since"),
            until=_when(until, "until"),
            min_confidence=None,
            limit=PAGE,
            offset=offset,
        )
    except ApiError as exc:
        return render(request, "events.html", exc.status, error=exc.detail, page=None, **context)
    kept = {k: v for k, v in filters.items() if v}

    def link(off: int) -> str:
        return "/events?" + urlencode({**kept, "offset": off})

    prev_link = link(max(0, offset - PAGE)) if offset > 0 else None
    next_link = link(offset + PAGE) if offset + PAGE < result.total else None
    return render(
        request, "events.html", page=result, prev_link=prev_link, next_link=next_link, **context
    )


@router.get("/events/{event_id}")
def event_page(request: Request, event_id: EventId, _: Page, st: St) -> HTMLResponse:
    from pipeline.api.routers.events import get_event

    try:
        event = get_event(event_id, st)
    except ApiError as exc:
        return error_page(request, exc)
    return render(request, "event.html", event=event)


# ----- people and unknowns ------------------------------------------------------------
@router.get("/people")
def people_page(request: Request, _: Page, st: St) -> HTMLResponse:
    from pipeline.api.routers.people import list_people

    return render(request, "people.html", people=list_people(st))


@router.get("/unknowns")
def unknowns_page(request: Request, _: Page, st: St) -> HTMLResponse:
    from pipeline.api.routers.unknowns import list_unknowns

    return render(request, "unknowns.html", unknowns=list_unknowns(st))


@router.get("/visits/{name}")
def visits_page(
    request: Request,
    name: str,
    _: Page,
    st: St,
    gap_s: Annotated[float, Query(ge=0, le=10**7)] = 60.0,
) -> HTMLResponse:
    from pipeline.api.common import visits

    try:
        result = visits(st, name, gap_s)
    except ApiError as exc:
        return error_page(request, exc)
    path = [v.stream for v in result.visits]
    return render(request, "visits.html", result=result, gap_s=gap_s, path=path)


# ----- search by photo -----------------------------------------------------------------
@router.get("/search")
def search_form(request: Request, _: Page) -> HTMLResponse:
    return render(request, "search.html", result=None)


@router.post("/search")
def search_page(
    request: Request,
    _: Page,
    st: St,
    photo: Annotated[UploadFile, File()],
) -> HTMLResponse:
    from pipeline.api.routers.search import search

    try:
        result = search(st, photo, max_distance=None, limit=50)
    except ApiError as exc:
        return render(request, "search.html", exc.status, result=None, error=exc.detail)
    return render(request, "search.html", result=result, filename=photo.filename)


# ----- streams -----------------------------------------------------------------------
@router.get("/streams")
def streams_page(request: Request, _: Page, st: St) -> HTMLResponse:
    """Every stream with its status and frame counts; add a camera, remove one added."""
    from pipeline.api.routers.streams import list_streams

    return render(request, "streams.html", streams=list_streams(st), redis=st.bus is not None)


# ----- live view ---------------------------------------------------------------------
@router.get("/live")
def live_page(request: Request, _: Page, st: St) -> HTMLResponse:
    from pipeline.api.routers.streams import list_streams

    return render(request, "live.html", streams=list_streams(st), one=None)


@router.get("/live/{stream}")
def live_stream_page(request: Request, stream: str, _: Page, st: St) -> HTMLResponse:
    from pipeline.api.common import stream_name

    try:
        stream_name(stream)
    except ApiError as exc:
        return error_page(request, exc)
    return render(request, "live.html", streams=[], one=stream)


@router.get("/live/{stream}/frame.jpg", response_class=Response)
def live_frame(stream: str, _: Media, st: St) -> Response:
    """The live view's current picture of ``stream`` (one JPEG)."""
    from pipeline.api.common import stream_name

    stream_name(stream)
    data = live.render(st, stream, live.latest(st, stream))
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get("/live/{stream}/mjpeg", response_class=StreamingResponse)
def live_mjpeg(
    request: Request,
    stream: str,
    _: Media,
    st: St,
    fps: Annotated[float, Query(gt=0, le=30)] = 5.0,
    frames: Annotated[int | None, Query(ge=1, le=10**6)] = None,
) -> StreamingResponse:
    """``stream``'s live view as MJPEG (``multipart/x-mixed-replace``) for an ``<img>``;
    ``frames``: end after that many pictures."""
    from pipeline.api.common import stream_name

    stream_name(stream)
    return StreamingResponse(
        live.mjpeg(request, st, stream, fps=fps, max_frames=frames),
        media_type=f"multipart/x-mixed-replace; boundary={live.BOUNDARY}",
        headers={"Cache-Control": "no-store"},
    )
