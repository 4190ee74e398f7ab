"""Photo uploads: search by face (finds a person who was never enrolled), enrol by
upload (past events follow), and the limits: body size (413), pixels (413), not an
image, no face (422). The real dlib encoder on the demo's real face (scikit-image's
astronaut); the store is filled by the sink (conftest)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # dlib's HOG detector and encoder on real photos


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def labels(world) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        f"{e['stream']}:{e['track_id']}": e["person"] or e["unknown_id"] or "unknown"
        for e in world.store.find_events()
    }


def test_search_by_photo_then_enrol_by_upload(sqlite_world, client_for):
    client = client_for(sqlite_world)
    photo = sqlite_world.photo.read_bytes()
    # the astronaut was never enrolled: her tracks are unknown-1, on two streams
    r = client.post("/api/search", files={"photo": ("me.png", photo, "image/png")})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["searched_tracks"] == 6 and res["max_distance"] == pytest.approx(
        sqlite_world.config.recognition.threshold
    )
    hits = [(h["event"]["stream"], h["event"]["label"]) for h in res["items"]]
    assert sorted(hits) == [("door", "unknown-1"), ("lobby", "unknown-1")]
    assert all(h["distance"] < 0.1 for h in res["items"])
    assert res["items"] == sorted(res["items"], key=lambda h: h["distance"])
    # a looser distance also brings the strangers (0.9 away), nearest first, limited
    r = client.post("/api/search", params={"max_distance": 1.5, "limit": 4},
                    files={"photo": ("me.png", photo, "image/png")})  # fmt: skip
    far = r.json()["items"]
    assert len(far) == 4 and [h["event"]["label"] for h in far[:2]] == ["unknown-1"] * 2
    assert all(0.8 < h["distance"] < 1.0 for h in far[2:])

    # enrol her by upload: her past events move to the name (clearly her)
    r = client.post("/api/people", data={"name": "Eileen Collins"},
                    files=[("photos", ("a.png", photo, "image/png"))])  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["result"] == "enrolled Eileen Collins: 1 photo(s)"
    assert sorted(c["old"] for c in r.json()["changes"]) == ["unknown-1", "unknown-1"]
    got = labels(sqlite_world)
    assert got["door:1"] == got["lobby:1"] == "Eileen Collins"
    people = {p["name"]: p for p in client.get("/api/people").json()}
    assert people["Eileen Collins"]["photos"] == 1 and people["Eileen Collins"]["events"] == 2
    # the photo's quality is stored, as `facepipe enroll` stores it (the enrolment gate)
    from pipeline.recognition.enroll import enrol_photos

    gallery = sqlite_world.store.gallery()
    pairs = zip(gallery.names, gallery.quality, strict=True)
    (gallery_quality,) = [q for n, q in pairs if n == "Eileen Collins"]
    ((_, cli_quality),) = enrol_photos([str(sqlite_world.photo)], num_jitters=1)
    assert gallery_quality == pytest.approx(cli_quality) and gallery_quality > 0
    r = client.post("/api/people", data={"name": "unknown-4"},
                    files=[("photos", ("a.png", photo, "image/png"))])  # fmt: skip
    assert r.status_code == 422 and "name" in r.json()["detail"]


def test_bad_uploads_are_refused_with_the_right_status(sqlite_world, client_for):
    sqlite_world.config.limits.max_image_pixels = 300 * 300
    client = client_for(sqlite_world, max_upload_bytes=200_000)
    photo = sqlite_world.photo.read_bytes()

    def search(content: bytes, name: str = "x.png"):  # type: ignore[no-untyped-def]
        return client.post("/api/search", files={"photo": (name, content, "image/png")})

    r = search(b"hello, not an image", "notes.txt")
    assert r.status_code == 422 and "notes.txt" in r.json()["detail"]
    assert "not a readable image" in r.json()["detail"] and "/tmp" not in r.json()["detail"]
    r = search(png(np.full((100, 100, 3), 128, np.uint8)), "grey.png")
    assert r.status_code == 422 and "no face found" in r.json()["detail"]
    r = search(png(np.zeros((400, 400, 3), np.uint8)), "big.png")  # 160,000 px > 90,000
    assert r.status_code == 413 and "too large" in r.json()["detail"]
    r = search(photo + b"\0" * 250_000)  # a body over api.max_upload_bytes
    assert r.status_code == 413 and r.json()["detail"]
    chunks = iter([b"--b\r\n" + b"x" * 100_000] * 3)  # streamed: no Content-Length
    r = client.post("/api/search", content=chunks,
                    headers={"content-type": "multipart/form-data; boundary=b"})  # fmt: skip
    assert r.status_code == 413 and "api.max_upload_bytes" in r.json()["detail"]
    assert client.post("/api/search").status_code == 422  # no photo
    r = client.post("/api/people", data={"name": "x"})
    assert r.status_code == 422
    assert labels(sqlite_world)["door:1"] == "unknown-1"  # nothing changed
