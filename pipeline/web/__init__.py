"""The web UI: server-rendered pages (Jinja2) with a little vanilla JavaScript, served at
``/`` by the API's process (``facepipe serve``), no build step.

Pages read through the API's own route functions (``pipeline/api/routers``); buttons
call the JSON API with ``fetch`` (``static/app.js``). With ``api.token`` set, ``/login``
sets an HttpOnly, SameSite=Strict session cookie that the API accepts as well as the
bearer header (images, MJPEG and ``fetch`` from the pages need no header). The live view
(``/live``) streams MJPEG of the newest frame the sink stored of each stream, with the
faces' boxes, track ids, names, age and gender drawn (``pipeline/web/live.py``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent


def mount(app: FastAPI) -> None:
    """Serve the UI's pages at ``/`` and its static files at ``/static`` on ``app``."""
    from pipeline.web.routes import LoginRequired, login_redirect, router

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(LoginRequired, login_redirect)
