"""The application factory: configuration, store and Redis in, a FastAPI app out."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.api.models import Error
from pipeline.api.search import SearchIndex
from pipeline.config import Config
from pipeline.store import EventStore

if TYPE_CHECKING:
    from pipeline.bus import Bus
    from pipeline.identities import Identities

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as ``{"detail": message}`` with ``status``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class State:
    """What the routes share: the configuration, the store, Redis (None without one)."""

    config: Config
    store: EventStore
    bus: Bus | None
    index: SearchIndex
    encoder_factory: Any  # (num_jitters) -> an object with encode(rgb, [Face]) -> [vector]
    _encoders: dict[int, Any] = field(default_factory=dict, repr=False)

    def identities(self) -> Identities:
        from pipeline.identities import Identities

        return Identities.from_config(self.store, self.config)

    def encoder(self, num_jitters: int) -> Any:
        """The face encoder at ``num_jitters`` re-samplings (made once, on first use)."""
        if num_jitters not in self._encoders:
            self._encoders[num_jitters] = self.encoder_factory(num_jitters)
        return self._encoders[num_jitters]


SESSION_COOKIE = "facepipe_session"  # the web UI's login (pipeline/web): HttpOnly, Strict


def session_value(token: str) -> str:
    """The session cookie's value for ``token``: derived from it (HMAC-SHA256), so the
    cookie never holds the token itself; it changes when the token does."""
    return hmac.new(token.encode(), b"facepipe web session", hashlib.sha256).hexdigest()


def state(request: Request) -> State:
    return request.app.state.facepipe


def _dlib_encoder(num_jitters: int):  # type: ignore[no-untyped-def]
    from pipeline.recognition.encoder import DlibEncoder

    return DlibEncoder(num_jitters=num_jitters)


def _default_bus(config: Config) -> Bus | None:
    if not config.redis.url:
        return None
    from pipeline.bus import Bus, connect

    return Bus(connect(config.redis.url), config.redis.prefix, config.redis.session_ttl_s)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a JSON 413: by the Content-Length
    header before anything is read, and while a body without one is being read (the
    route's body parsing then fails with the 413, through the app's error handler)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"request body larger than {self.max_bytes:,} bytes (api.max_upload_bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                response = JSONResponse({"detail": self._detail()}, status_code=413)
                await response(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise StarletteHTTPException(413, self._detail())
            return message

        await self.app(scope, counted, send)


def _warm(index: SearchIndex) -> None:
    try:
        index.refresh(force=True)
    except Exception:  # the first search tries again and reports
        log.exception("building the search index failed")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def create_app(
    config: Config,
    store: EventStore | None = None,
    bus: Bus | None = None,
    encoder_factory: Any = None,
    warm_index: bool = False,
) -> FastAPI:
    """The API over ``store`` (default: the configured one) and ``bus`` (default: the
    configured Redis, or none: streams then come from the store only, health says so).
    ``encoder_factory(num_jitters)`` makes the face encoder of uploads (default: dlib's,
    as enrolment and the recognize stage use). ``warm_index`` builds the search index in
    a background thread now rather than at the first search (it reads every stored
    encoding: seconds to minutes on a large store, docs/api.md)."""
    from pipeline.api.routers import events, health, people, search, streams, unknowns

    store = store or EventStore(config.store_url)
    if bus is None:
        bus = _default_bus(config)
    token = config.api.token
    bearer = HTTPBearer(auto_error=False, description="api.token, when configured")

    def authorized(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials else ""
        if hmac.compare_digest(given.encode(), token.encode()):
            return
        cookie = request.cookies.get(SESSION_COOKIE, "")  # a browser logged in at /login
        if not hmac.compare_digest(cookie.encode(), session_value(token).encode()):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)")

    app = FastAPI(
        title="facepipe",
        version="1",
        description="Person events of the facepipe pipeline: query, correct, search by face. "
        'Errors are JSON {"detail": message}. See docs/api.md.',
        responses={401: {"model": Error}, 422: {"model": Error}},
    )
    app.state.facepipe = State(
        config=config,
        store=store,
        bus=bus,
        index=SearchIndex(store),
        encoder_factory=encoder_factory or _dlib_encoder,
    )
    if warm_index:
        index = app.state.facepipe.index
        threading.Thread(target=_warm, args=(index,), name="search-index", daemon=True).start()
    for module in (events, people, unknowns, search, streams, health):
        app.include_router(module.router, prefix="/api", dependencies=[Depends(authorized)])
    from pipeline.web import mount as mount_web_ui

    mount_web_ui(app)  # the web UI at / (pipeline/web, docs/api.md "Web UI")

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(sa_exc.OperationalError)
    async def _store_down(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "the event store is unavailable"}, status_code=503)

    @app.exception_handler(redis.ConnectionError)
    @app.exception_handler(redis.TimeoutError)
    async def _redis_down(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "Redis is unavailable"}, status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__})"}, status_code=500)

    app.add_middleware(BodyLimit, max_bytes=config.api.max_upload_bytes)
    return app
