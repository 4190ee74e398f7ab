"""/api/people and /api/unknowns: list, snapshot, visits, name, rename, merge, erase (the
CLI's identity operations), against the sink-filled store of conftest."""

from __future__ import annotations

from pathlib import Path


def labels(world) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        f"{e['stream']}:{e['track_id']}": e["person"] or e["unknown_id"] or "unknown"
        for e in world.store.find_events()
    }


def test_lists_snapshots_and_visits(client):
    (zoe,) = client.get("/api/people").json()
    assert zoe["name"] == "zoe" and zoe["photos"] == 1 and zoe["events"] == 1
    assert zoe["last_seen"] == "2027-01-15T08:00:22.000Z"
    assert client.get("/api/people/zoe").json() == zoe
    r = client.get("/api/people/nobody")
    assert r.status_code == 404 and r.json() == {"detail": "no enrolled person named 'nobody'"}
    assert client.get("/api/people/unknown-1").status_code == 422

    unknowns = client.get("/api/unknowns").json()
    assert [(u["name"], u["events"], u["streams"]) for u in unknowns] == [
        ("unknown-1", 2, ["door", "lobby"]),
        ("unknown-2", 2, ["door", "lobby"]),
        ("unknown-3", 1, ["lobby"]),
    ]
    assert unknowns[0]["snapshot_url"] == "/api/unknowns/unknown-1/snapshot"
    snap = client.get("/api/unknowns/unknown-1/snapshot")
    assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"
    assert client.get("/api/unknowns/unknown-9").status_code == 404
    assert client.get("/api/unknowns/zoe").status_code == 422

    v = client.get("/api/unknowns/unknown-1/visits").json()
    assert v["name"] == "unknown-1"
    assert [(x["stream"], x["first_seen"], len(x["events"])) for x in v["visits"]] == [
        ("door", "2027-01-15T08:00:00.000Z", 1),
        ("lobby", "2027-01-15T08:10:00.000Z", 1),
    ]
    assert [x["stream"] for x in client.get("/api/people/zoe/visits").json()["visits"]] == ["door"]
    assert client.get("/api/people/nobody/visits").status_code == 404
    assert client.get("/api/people/zoe/visits", params={"gap_s": -1}).status_code == 422


def test_name_merge_rename_and_erase(client, world):
    snaps = {
        f"{e['stream']}:{e['track_id']}": Path(e["snapshot"]) for e in world.store.find_events()
    }
    r = client.post("/api/unknowns/unknown-1/name", json={"name": "eileen"})
    assert r.status_code == 200, r.text
    assert r.json()["result"] == "renamed unknown-1 to eileen"
    assert sorted((c["old"], c["new"]) for c in r.json()["changes"]) == [
        ("unknown-1", "eileen"), ("unknown-1", "eileen")
    ]  # fmt: skip
    people = {p["name"]: p for p in client.get("/api/people").json()}
    assert people["eileen"]["photos"] == 2 and people["eileen"]["events"] == 2
    visits = client.get("/api/people/eileen/visits").json()["visits"]
    assert [x["stream"] for x in visits] == ["door", "lobby"]

    r = client.post("/api/unknowns/unknown-3/merge", json={"other": "unknown-2"})
    assert r.status_code == 200 and len(r.json()["changes"]) == 2
    assert labels(world) == {"door:1": "eileen", "door:2": "unknown-3", "door:3": "zoe",
                             "lobby:1": "eileen", "lobby:2": "unknown-3",
                             "lobby:3": "unknown-3"}  # fmt: skip
    assert client.post("/api/unknowns/unknown-3/merge", json={"other": "zoe"}).status_code == 422

    r = client.post("/api/people/zoe/rename", json={"name": "eileen"})
    assert r.status_code == 409 and "exists already" in r.json()["detail"]
    assert client.post("/api/people/nobody/rename", json={"name": "x"}).status_code == 404
    assert client.post("/api/people/zoe/rename", json={"name": "unknown-4"}).status_code == 422
    r = client.post("/api/people/zoe/rename", json={"name": "Zoë Martin"})
    assert r.status_code == 200 and labels(world)["door:3"] == "Zoë Martin"

    r = client.post("/api/people/Zoë Martin/merge", json={"other": "unknown-3"})
    assert r.status_code == 200, r.text
    assert {k for k, v in labels(world).items() if v == "Zoë Martin"} == {
        "door:2", "door:3", "lobby:2", "lobby:3"
    }  # fmt: skip

    r = client.delete("/api/people/eileen")
    assert r.status_code == 200
    assert r.json() == {"result": "erased eileen", "events": 2, "samples": 12, "negatives": 0,
                        "snapshot_files": 4}  # fmt: skip  (2 face crops, 2 context images)
    assert {k for k, p in snaps.items() if not p.exists()} == {"door:1", "lobby:1"}
    assert set(labels(world)) == {"door:2", "door:3", "lobby:2", "lobby:3"}
    assert client.get("/api/people/eileen").status_code == 404
    assert client.delete("/api/people/eileen").status_code == 404
    assert client.delete("/api/unknowns/unknown-9").status_code == 404
    assert client.delete("/api/unknowns/zoe").status_code == 422


def test_erase_an_unknown(client, world):
    r = client.delete("/api/unknowns/unknown-2")
    assert r.status_code == 200 and r.json()["events"] == 2
    assert r.json()["snapshot_files"] == 4  # each event's face crop and context image
    assert [u["name"] for u in client.get("/api/unknowns").json()] == ["unknown-1", "unknown-3"]
    assert client.get("/api/events", params={"person": "unknown-2"}).status_code == 404
