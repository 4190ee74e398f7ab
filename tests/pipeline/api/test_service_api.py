"""/api/streams, /api/health, bearer-token auth, the OpenAPI document, config keys."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pipeline.api import create_app
from pipeline.config import ConfigError, load_config


def test_streams_with_status_from_redis_and_the_store(client):
    streams = {s["name"]: s for s in client.get("/api/streams").json()}
    door, lobby = streams["door"], streams["lobby"]
    assert door["status"] == "done" and door["events"] == 3
    assert door["first_seen"] == "2027-01-15T08:00:00.000Z"
    (s1,) = door["sessions"]
    assert s1["session"] == "s1" and s1["source"] == "/videos/door.mp4" and s1["live"] is False
    assert (s1["captured"], s1["processed"], s1["dropped"]) == (9, 9, 0)
    assert lobby["status"] == "capturing" and lobby["sessions"][0]["status"] == "capturing"
    assert lobby["sessions"][0]["source"] == "rtsp://cam:***@lobby/1"  # no password shown


def test_health_per_component(client, world):
    r = client.get("/api/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "degraded" and h["store"]["ok"] and h["redis"]["ok"]
    assert set(h["workers"]) == {"detect", "track", "recognize", "attributes", "sink"}
    assert not any(h["workers"].values())
    from rq import Worker

    w = Worker([world.rt.bus.queue(s) for s in h["workers"]], connection=world.rt.bus.conn)
    w.register_birth()
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and all(v == 1 for v in h["workers"].values())
    assert h["streams"] == {}

    # streams: a live camera down, then up; a camera added at run time that failed
    from pipeline.metrics import Metrics

    metrics = Metrics(world.rt.bus)
    metrics.set_gauge("facepipe_source_up", {"stream": "gate"}, 0.0, ttl_s=60)
    h = client.get("/api/health").json()
    assert h["status"] == "degraded" and h["streams"]["gate"]["ok"] is False
    assert "down" in h["streams"]["gate"]["detail"]
    metrics.set_gauge("facepipe_source_up", {"stream": "gate"}, 1.0, ttl_s=60)
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["streams"]["gate"] == {"ok": True, "detail": "live source up"}
    world.rt.bus.set_camera_status(
        "yard", {"id": "1", "state": "failed", "error": "cannot open rtsp://u:pw@cam/1"}
    )
    h = client.get("/api/health").json()
    assert h["status"] == "degraded" and h["streams"]["yard"]["ok"] is False
    assert "failed" in h["streams"]["yard"]["detail"] and "pw" not in h["streams"]["yard"]["detail"]
    world.rt.bus.set_camera_status("yard", {"id": "1", "state": "capturing"})
    metrics.clear_gauge("facepipe_source_up", {"stream": "gate"})  # its capture ended
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and set(h["streams"]) == {"yard"}
    w.register_death()
    assert client.get("/api/health/live").json() == {"status": "ok"}


def test_health_without_redis_and_with_redis_down(sqlite_world, tmp_path):
    from pipeline.bus import Bus, connect

    cfg = sqlite_world.config
    plain = TestClient(create_app(cfg, store=sqlite_world.store))  # no redis.url: none
    h = plain.get("/api/health").json()
    assert h["status"] == "ok" and "not configured" in h["redis"]["detail"]
    assert {s["status"] for s in plain.get("/api/streams").json()} == {"unknown"}
    dead = Bus(connect(f"unix://:pw@{tmp_path}/no.sock"), "facepipe")
    down = TestClient(create_app(cfg, store=sqlite_world.store, bus=dead))
    r = down.get("/api/health")
    assert r.status_code == 503 and r.json()["status"] == "down"
    assert not r.json()["redis"]["ok"] and "pw" not in r.text
    assert down.get("/api/events").status_code == 200  # the store still answers
    r = down.get("/api/streams")
    assert r.status_code == 503 and r.json() == {"detail": "Redis is unavailable"}


TOKEN = "s3cret-token-0123456789"


def test_bearer_token(sqlite_world):
    cfg = sqlite_world.config
    cfg.api.token = TOKEN
    c = TestClient(create_app(cfg, store=sqlite_world.store, bus=sqlite_world.rt.bus))
    r = c.get("/api/events")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json() == {"detail": "missing or wrong bearer token (Authorization: Bearer TOKEN)"}
    bad = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
    assert c.get("/api/events", headers=bad).status_code == 401
    assert c.delete("/api/people/zoe", headers=bad).status_code == 401
    assert c.get("/api/people/zoe").status_code == 401
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert c.get("/api/events", headers=ok).json()["total"] == 6
    assert c.get("/api/health", headers=ok).status_code == 200
    # the OpenAPI document and Swagger UI are open (no data); they declare the scheme
    doc = c.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert c.get("/docs").status_code == 200


def test_openapi_document_covers_every_route(client):
    doc = client.get("/openapi.json").json()
    paths = doc["paths"]
    for path in ("/api/events", "/api/events/{event_id}", "/api/events/{event_id}/snapshot",
                 "/api/events/{event_id}/not", "/api/people", "/api/people/{name}/visits",
                 "/api/unknowns", "/api/unknowns/{name}/name", "/api/search", "/api/streams",
                 "/api/health"):  # fmt: skip
        assert path in paths, path
    ev = paths["/api/events"]["get"]
    assert ev["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "EventPage"
    )
    assert "404" in ev["responses"]
    assert client.get("/api/nothing").json() == {"detail": "Not Found"}
    assert client.put("/api/events").status_code == 405


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"FACEPIPE__API__TOKEN": "short"}, "api.token: String should have at least 16"),
        ({"FACEPIPE__API__TOKEN": "has spaces in it 12345"}, "api.token: String should match"),
        ({"FACEPIPE__API__PORT": "70000"}, "api.port"),
        ({"FACEPIPE__API__MAX_UPLOAD_BYTES": "10"}, "api.max_upload_bytes"),
        ({"FACEPIPE__API__HOTS": "x"}, "api.hots: unknown key"),
    ],
)
def test_api_config_is_validated(env, error):
    with pytest.raises(ConfigError, match=error.replace(".", r"\.")):
        load_config(None, environ=env)


def test_api_config_defaults():
    api = load_config(None, environ={}).api
    assert (api.host, api.port, api.token, api.max_upload_bytes) == (
        "127.0.0.1", 8108, None, 10 * 1024 * 1024
    )  # fmt: skip
    assert load_config(None, environ={"FACEPIPE__API__TOKEN": TOKEN}).api.token == TOKEN


def test_a_store_that_does_not_answer_is_503(sqlite_world, tmp_path):
    import sqlalchemy as sa

    from pipeline.store import EventStore

    store = EventStore(f"sqlite:///{tmp_path / 'gone.db'}")
    store.engine = sa.create_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db")
    c = TestClient(create_app(sqlite_world.config, store=store, bus=sqlite_world.rt.bus))
    r = c.get("/api/events")
    assert r.status_code == 503 and r.json() == {"detail": "the event store is unavailable"}
    r = c.get("/api/health")
    assert r.status_code == 503 and r.json()["status"] == "down" and not r.json()["store"]["ok"]
