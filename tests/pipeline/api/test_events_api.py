"""/api/events against a real store (SQLite, PostgreSQL) filled by the sink (conftest)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

T0 = 1.8e9  # as in conftest: 2027-01-15T08:00:00Z


def iso(t: float) -> str:
    return datetime.fromtimestamp(T0 + t, UTC).isoformat()


def ids(r) -> list[str]:  # type: ignore[no-untyped-def]
    """The events of a page as stream:track (PostgreSQL's ids have gaps)."""
    assert r.status_code == 200, r.text
    return [f"{e['stream']}:{e['track']}" for e in r.json()["items"]]


@pytest.fixture()
def eid(world):  # type: ignore[no-untyped-def]
    """{"door:1": event id, ...}"""
    return {f"{e['stream']}:{e['track_id']}": e["id"] for e in world.store.find_events()}


D1, D2, D3, L1, L2, L3 = "door:1", "door:2", "door:3", "lobby:1", "lobby:2", "lobby:3"


def test_list_filters_paging_newest_first(client):
    r = client.get("/api/events")
    assert ids(r) == [L3, L2, L1, D3, D2, D1] and r.json()["total"] == 6
    r = client.get("/api/events", params={"limit": 2, "offset": 1})
    assert ids(r) == [L2, L1] and r.json()["total"] == 6 and r.json()["limit"] == 2
    assert ids(client.get("/api/events", params={"person": "unknown-1"})) == [L1, D1]
    assert ids(client.get("/api/events", params={"person": "zoe"})) == [D3]
    assert ids(client.get("/api/events", params={"person": "unknown"})) == [L3, L2, L1, D2, D1]
    assert ids(client.get("/api/events", params={"stream": "lobby"})) == [L3, L2, L1]
    assert ids(client.get("/api/events", params={"since": iso(600)})) == [L3, L2, L1]
    assert ids(client.get("/api/events", params={"until": iso(15)})) == [D2, D1]
    both = {"since": iso(1), "until": iso(600.5), "stream": "door"}
    assert ids(client.get("/api/events", params=both)) == [D3, D2, D1]
    assert ids(client.get("/api/events", params={"min_confidence": 0.99})) == [D3]
    e = client.get("/api/events", params={"person": "zoe"}).json()["items"][0]
    assert e["label"] == "zoe" and e["stream"] == "door" and e["track"] == 3
    assert e["first_seen"] == "2027-01-15T08:00:20.000Z" and e["frames"] == 3
    assert e["first_frame"] == 20 and e["last_frame"] == 22 and e["ended"] is True
    assert e["gender"] == "female" and 24 < e["age"] < 28
    assert e["snapshot_url"] == f"/api/events/{e['id']}/snapshot"


def test_list_errors_are_json_with_the_right_status(client):
    r = client.get("/api/events", params={"person": "nobody"})
    assert r.status_code == 404
    assert r.json() == {"detail": "no person or unknown identity named 'nobody'"}
    assert client.get("/api/events", params={"person": "unknown-9"}).status_code == 404
    for bad in ({"limit": 0}, {"limit": "x"}, {"offset": -1}, {"since": "yesterday"},
                {"min_confidence": 2}, {"person": "a\x00b"}, {"stream": "../etc"}):  # fmt: skip
        r = client.get("/api/events", params=bad)
        assert r.status_code == 422, (bad, r.text)
        assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    r = client.get("/api/events", params={"limit": 0})
    assert r.json()["detail"].startswith("query.limit:")


def test_one_event_with_samples_and_its_snapshot(client, eid):
    r = client.get(f"/api/events/{eid[D1]}")
    assert r.status_code == 200
    ev = r.json()
    assert ev["label"] == "unknown-1" and ev["unknown_id"] == "unknown-1"
    kinds = [s["kind"] for s in ev["samples"]]
    assert kinds.count("identity") == 3 and kinds.count("attributes") == 3
    assert all("encoding" not in s for s in ev["samples"])
    assert [s["seq"] for s in ev["samples"] if s["kind"] == "identity"] == [0, 1, 2]
    snap = client.get(f"/api/events/{eid[D1]}/snapshot")
    assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
    assert snap.content[:2] == b"\xff\xd8"
    assert client.get("/api/events/999").json() == {"detail": "no event 999"}
    assert client.get("/api/events/999").status_code == 404
    assert client.get("/api/events/999/snapshot").status_code == 404
    assert client.get("/api/events/0").status_code == 422
    assert client.get("/api/events/abc").status_code == 422
    assert client.get(f"/api/events/{2**40}").status_code == 422


def test_a_snapshot_path_outside_the_snapshots_directory_is_never_served(client, world, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"\xff\xd8 not yours")
    root = world.config.snapshots_path
    (ev1, ev2) = world.store.find_events(stream="door", person="unknown-2")[:1] + \
        world.store.find_events(person="zoe")  # fmt: skip
    world.store.set_snapshot(ev1["track_uid"], str(secret), 9.0)
    world.store.set_snapshot(ev2["track_uid"], str(root / ".." / ".." / secret.name), 9.0)
    for ev in (ev1, ev2):
        r = client.get(f"/api/events/{ev['id']}/snapshot")
        assert r.status_code == 404 and "not available" in r.json()["detail"]


def test_this_event_is_not_name(client, eid):
    z = eid[D3]
    r = client.post(f"/api/events/{z}/not", json={"name": "zoe"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["result"].startswith(f"event {z} is not zoe: now ")
    assert [(c["event"], c["old"]) for c in body["changes"]] == [(z, "zoe")]
    assert client.get(f"/api/events/{z}").json()["person"] is None
    assert client.post("/api/events/999/not", json={"name": "zoe"}).status_code == 404
    assert client.post(f"/api/events/{z}/not", json={}).status_code == 422
    assert client.post(f"/api/events/{z}/not", json={"name": "unknown-2"}).status_code == 422
    assert client.post(f"/api/events/{z}/not", json={"name": "zoe", "x": 1}).status_code == 422


def test_the_context_image_is_the_whole_frame_with_boxes_and_current_names(client, world, eid):
    import cv2
    import numpy as np

    ev = client.get(f"/api/events/{eid[D1]}").json()
    assert ev["context_url"] == f"/api/events/{eid[D1]}/context"
    r = client.get(ev["context_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (120, 160)  # the whole frame (conftest's), not the crop
    green = (img[:, :, 1] > 200) & (img[:, :, 0] < 80) & (img[:, :, 2] < 80)
    ys, xs = np.nonzero(green)
    # the box (50, 30, 60, 60) is drawn; the label sits above it
    assert xs.min() <= 52 and xs.max() >= 107 and ys.max() >= 87
    assert not green[100:, :40].any()  # nothing drawn far from the face
    plain = cv2.imread(world.store.event_by_id(eid[D1])["context"])
    assert plain.shape[:2] == (120, 160)
    assert not ((plain[:, :, 1] > 200) & (plain[:, :, 0] < 80) & (plain[:, :, 2] < 80)).any()


def test_an_event_without_a_context_image_says_so(client, world, eid):
    ev = world.store.event_by_id(eid[D2])
    world.store.set_context(ev["track_uid"], None, None)
    assert client.get(f"/api/events/{eid[D2]}").json()["context_url"] is None
    r = client.get(f"/api/events/{eid[D2]}/context")
    assert r.status_code == 404 and r.json() == {"detail": f"event {eid[D2]} has no context image"}
    assert client.get("/api/events/999/context").json() == {"detail": "no event 999"}


def test_a_context_path_outside_the_snapshots_directory_is_never_served(client, world, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"\xff\xd8 not yours")
    root = world.config.snapshots_path
    ev = world.store.find_events(person="zoe")[0]
    for path in (str(secret), str(root / ".." / ".." / secret.name)):
        world.store.set_context(ev["track_uid"], path, "[]")
        r = client.get(f"/api/events/{ev['id']}/context")
        assert r.status_code == 404 and "not available" in r.json()["detail"]
