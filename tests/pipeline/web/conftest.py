"""The web UI over the API tests' world (tests/pipeline/api/conftest.py): a real SQLite
store and private Redis with events written by the product's sink, snapshots included."""

from __future__ import annotations

import pytest

from pipeline.config import load_config
from tests.pipeline.api.conftest import World, astronaut, build_world, encoder_factory  # noqa: F401

TOKEN = "a-long-enough-web-token-42"


@pytest.fixture()
def world(home, redis_url, astronaut) -> World:  # noqa: F811
    return build_world(load_config(None, environ={}), redis_url, *astronaut)


def make_app(w: World, **api: object):  # type: ignore[no-untyped-def]
    from pipeline.api import create_app

    for k, v in api.items():
        setattr(w.config.api, k, v)
    return create_app(w.config, store=w.store, bus=w.rt.bus, encoder_factory=encoder_factory)


@pytest.fixture()
def web(world: World):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    return TestClient(make_app(world))
