"""Fuzz the API from its own OpenAPI document (schemathesis' strategies, Hypothesis):
valid and invalid parameters and bodies (positive and negative generation) for every
operation, against the sink-filled SQLite store and the private Redis of conftest; no
request may get a server error (5xx), and every error is ``{"detail": message}``.

(schemathesis' own pytest fixture loader does not run on this pytest; its strategies
per operation are driven by Hypothesis' ``@given`` here instead.)"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from pipeline.api import create_app

pytestmark = pytest.mark.slow

EXAMPLES = 20  # per operation and generation mode


def test_no_server_errors_on_any_operation(sqlite_world):
    app = create_app(sqlite_world.config, store=sqlite_world.store, bus=sqlite_world.rt.bus)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    calls: dict[int, int] = {}

    def fuzz(strategy) -> None:  # type: ignore[no-untyped-def]
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=strategy)
        def check(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call()
            calls[response.status_code] = calls.get(response.status_code, 0) + 1
            body = response.content[:300].decode("utf-8", "replace")
            where = f"{case.method} {case.formatted_path} {case.query} -> {body}"
            assert response.status_code < 500, where
            if response.status_code >= 400:
                assert isinstance(response.json()["detail"], str), where

        check()

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(op.as_strategy(generation_mode=mode))
    print("status codes:", sorted(calls.items()))
    assert sum(calls.values()) >= len(operations) * 10
    assert any(400 <= s < 500 for s in calls) and any(s < 300 for s in calls)
