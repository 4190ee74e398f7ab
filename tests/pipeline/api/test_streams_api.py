"""POST /api/streams and DELETE /api/streams/{name}: cameras added and removed at run
time through the desired set in a real Redis (what a capture process does with it:
tests/pipeline/test_stream_control.py, and with the whole pipeline
tests/system/test_runtime_streams.py)."""

from __future__ import annotations

import pytest


@pytest.fixture()
def api(sqlite_world, client_for):  # type: ignore[no-untyped-def]
    return client_for(sqlite_world)


def streams(api) -> dict[str, dict]:  # type: ignore[no-untyped-def,type-arg]
    return {s["name"]: s for s in api.get("/api/streams").json()}


def test_add_a_camera_then_remove_it(api, sqlite_world):
    bus = sqlite_world.rt.bus
    body = {"name": "gate", "source": "rtsp://viewer:pw@10.0.0.9/1", "every_n_frames": 2,
            "capture": {"max_queue": 4}}  # fmt: skip
    r = api.post("/api/streams", json=body)
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["name"] == "gate" and s["status"] == "starting" and s["sessions"] == []
    assert s["added"]["source"] == "rtsp://viewer:***@10.0.0.9/1"  # no password shown
    assert s["added"]["state"] == "waiting" and s["added"]["added"].endswith("Z")
    spec = bus.cameras()["gate"]  # the desired set, for the capture processes
    assert spec["source"] == body["source"] and spec["every_n_frames"] == 2
    assert spec["capture"] == {"max_queue": 4} and spec["id"]
    assert streams(api)["gate"]["added"]["state"] == "waiting"
    # what a capture process says shows; an old camera's status of that name does not
    bus.set_camera_status("gate", {"id": spec["id"], "state": "failed", "error": "no route"})
    gate = streams(api)["gate"]
    assert gate["status"] == "failed" and gate["added"]["error"] == "no route"
    bus.set_camera_status("gate", {"id": "older", "state": "ended"})
    assert streams(api)["gate"]["added"]["state"] == "waiting"

    r = api.post("/api/streams", json=body)
    assert r.status_code == 409 and "added already" in r.json()["detail"]
    r = api.delete("/api/streams/gate")
    assert r.status_code == 200 and r.json()["name"] == "gate"
    assert "gate" not in bus.cameras() and "gate" not in streams(api)
    r = api.delete("/api/streams/gate")
    assert r.status_code == 404
    assert r.json() == {"detail": "no stream 'gate' added at run time (POST /api/streams)"}
    assert api.delete("/api/streams/door").status_code == 404  # not added through the API
    assert api.post("/api/streams", json=body).status_code == 201  # the name is free again
    assert bus.cameras()["gate"]["id"] != spec["id"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"name": "gate", "source": "0", "capture": {"max_queue": 0}}, 422,
         "cameras.gate.capture.max_queue: Input should be greater than or equal to 1"),
        ({"name": "gate", "source": "0", "capture": {"max_qeue": 3}}, 422,
         "cameras.gate.capture: unknown capture key(s) max_qeue"),
        ({"name": "gate", "source": "0", "every_n_frames": 0}, 422,
         "cameras.gate.every_n_frames: Input should be greater than or equal to 1"),
        ({"name": "gate", "source": ""}, 422, "cameras.gate.source: String should have"),
        ({"name": "../etc", "source": "0"}, 422, "cameras: camera bad stream name"),
        ({"name": "gate", "source": "0", "colour": "red"}, 422, "colour: Extra inputs"),
        ({"source": "0"}, 422, "name: Field required"),
        ({"name": "lobby", "source": "0"}, 409, "stream 'lobby' is being captured already"),
    ],
)  # fmt: skip
def test_a_bad_camera_is_refused_naming_the_key(api, sqlite_world, body, status, detail):
    r = api.post("/api/streams", json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(detail), r.json()
    assert sqlite_world.rt.bus.cameras() == {}


def test_adding_a_stream_needs_redis(sqlite_world):
    from fastapi.testclient import TestClient

    from pipeline.api import create_app

    plain = TestClient(create_app(sqlite_world.config, store=sqlite_world.store))
    assert sqlite_world.config.redis.url is None
    r = plain.post("/api/streams", json={"name": "gate", "source": "0"})
    assert r.status_code == 503 and "needs Redis" in r.json()["detail"]
    assert plain.delete("/api/streams/gate").status_code == 503
