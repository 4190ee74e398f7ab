"""The HTTP API of `facepipe serve` (FastAPI): events, people, unknowns, search by face,
streams and health, over the same event store and Redis as the pipeline.

:func:`create_app` builds the application; everything it serves is under ``/api`` (the
web UI, a later addition, can be mounted beside it by the same app). OpenAPI is generated
from the typed response models (:mod:`pipeline.api.models`): ``/openapi.json``, Swagger
UI at ``/docs``. Every error is JSON ``{"detail": message}``. docs/api.md documents it.
"""

from __future__ import annotations

from pipeline.api.app import create_app

__all__ = ["create_app"]
