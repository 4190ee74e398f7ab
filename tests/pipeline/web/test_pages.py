"""Every page of the web UI over plain HTTP (FastAPI's test client) against the API
tests' world: a real SQLite store and private Redis filled by the product's sink
(tests/pipeline/api/conftest.py): door tracks 1-3 = unknown-1, unknown-2, zoe; lobby
tracks 1-3 = unknown-1, unknown-2, unknown-3."""

from __future__ import annotations

import html
import re

import cv2
import numpy as np
import pytest

from pipeline.frames import decode_rgb
from pipeline.web import live, routes


def cells(page: str, row_class: str) -> list[list[str]]:
    """The text of each cell of the table rows ``<tr class="row_class">``."""
    out = []
    for row in re.findall(rf'<tr class="{row_class}"[^>]*>(.*?)</tr>', page, re.S):
        tds = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        out.append([html.unescape(re.sub(r"<[^>]+>|\s+", " ", td)).strip() for td in tds])
    return out


def events(page: str) -> list[str]:
    """The events listed on a page as stream:who."""
    return [f"{c[3]}:{c[2]}" for c in cells(page, "event")]


def ok(r) -> str:  # type: ignore[no-untyped-def]
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    return r.text


def test_events_page_newest_first_with_snapshots_and_filters(web, world):
    page = ok(web.get("/events"))
    assert events(page) == ["lobby:unknown-3", "lobby:unknown-2", "lobby:unknown-1",
                            "door:zoe", "door:unknown-2", "door:unknown-1"]  # fmt: skip
    assert "6 events, 1-6 shown" in page
    thumbs = re.findall(r'<img class="thumb" src="([^"]+)"', page)
    assert len(thumbs) == 6
    for src in thumbs:  # each thumbnail is the event's real snapshot
        r = web.get(src)
        assert r.status_code == 200 and decode_rgb(r.content).shape[2] == 3
    assert events(ok(web.get("/events?person=unknown-1"))) == ["lobby:unknown-1", "door:unknown-1"]
    assert events(ok(web.get("/events?stream=door&person="))) == [
        "door:zoe", "door:unknown-2", "door:unknown-1"]  # fmt: skip
    # the browser's datetime-local format; a time without zone is UTC (T0 = 08:00:00Z)
    assert events(ok(web.get("/events?since=2027-01-15T08:10:00"))) == [
        "lobby:unknown-3", "lobby:unknown-2", "lobby:unknown-1"]  # fmt: skip
    assert events(ok(web.get("/events?until=2027-01-15T08:00:15&since="))) == [
        "door:unknown-2", "door:unknown-1"]  # fmt: skip
    # the filter form offers the names and streams the store knows, keeps what was chosen
    page = ok(web.get("/events?stream=lobby"))
    for name in ("zoe", "unknown"):
        assert f'<option value="{name}">' in page
    assert '<option value="lobby" selected>' in page


def test_events_page_errors_are_shown(web):
    r = web.get("/events?person=nobody")
    assert r.status_code == 404 and "no person or unknown identity named &#39;nobody&#39;" in r.text
    r = web.get("/events?since=yesterday")
    assert r.status_code == 422 and "since: not a date and time" in r.text
    assert web.get("/events/999").status_code == 404
    assert "no event 999" in web.get("/events/999").text


def test_events_page_pages(web, monkeypatch):
    monkeypatch.setattr(routes, "PAGE", 4)
    page = ok(web.get("/events?stream="))
    assert len(events(page)) == 4 and "6 events, 1-4 shown" in page
    nxt = html.unescape(re.search(r'<a href="([^"]+)" rel="next">', page).group(1))
    assert nxt == "/events?offset=4" and 'rel="prev"' not in page
    page = ok(web.get(nxt))
    assert events(page) == ["door:unknown-2", "door:unknown-1"] and "6 events, 5-6 shown" in page
    prev = html.unescape(re.search(r'<a href="([^"]+)" rel="prev">', page).group(1))
    assert prev == "/events?offset=0" and 'rel="next"' not in page
    page = ok(web.get("/events?person=unknown&offset=4"))  # filters are kept in the links
    assert "/events?person=unknown&amp;offset=0" in page and len(events(page)) == 1


def test_event_page_snapshot_samples_and_not_button(web, world):
    zoe = world.store.find_events(person="zoe")[0]
    page = ok(web.get(f"/events/{zoe['id']}"))
    assert f"Event {zoe['id']}: zoe" in page
    src = re.search(r'<img id="snapshot" class="snapshot" src="([^"]+)"', page).group(1)
    assert src == f"/api/events/{zoe['id']}/snapshot" and web.get(src).status_code == 200
    src = re.search(r'<img id="context" class="context" src="([^"]+)"', page).group(1)
    assert src == f"/api/events/{zoe['id']}/context" and web.get(src).status_code == 200
    samples = cells(page, "sample")
    kinds = [c[0] for c in samples]
    assert kinds.count("identity") == 3 and kinds.count("attributes") == 3, samples
    assert "Samples (6)" in page
    assert f'data-url="/api/events/{zoe["id"]}/not"' in page and "Not zoe</button>" in page
    # an unknown's event has no "not" button
    u = world.store.find_events(person="unknown-3")[0]
    page = ok(web.get(f"/events/{u['id']}"))
    assert "Event" in page and "/not" not in page and "unknown-3" in page


def test_people_and_unknowns_pages(web, world):
    (zoe,) = cells(ok(web.get("/people")), "person")
    assert zoe[:4] == ["zoe", "1", "1", "2027-01-15T08:00:22.000Z"]
    page = ok(web.get("/people"))
    for action in ('data-url="/api/people/zoe/rename"', 'data-url="/api/people/zoe/merge"',
                   'data-method="DELETE" data-url="/api/people/zoe"', 'id="enrol"'):  # fmt: skip
        assert action in page
    page = ok(web.get("/unknowns"))
    rows = cells(page, "unknown")
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("unknown-1", "2", "door, lobby"), ("unknown-2", "2", "door, lobby"),
        ("unknown-3", "1", "lobby")]  # fmt: skip
    for n in (1, 2, 3):
        assert f'<img class="thumb" src="/api/unknowns/unknown-{n}/snapshot"' in page
        assert f'data-url="/api/unknowns/unknown-{n}/name"' in page
        assert web.get(f"/api/unknowns/unknown-{n}/snapshot").status_code == 200


def test_people_page_without_anyone(web, world):
    world.store.remove_person("zoe")
    assert "Nobody is enrolled yet." in ok(web.get("/people"))


def test_visits_page(web, world):
    page = ok(web.get("/visits/unknown-1"))
    assert "door → lobby" in page
    rows = cells(page, "visit")
    assert [(r[1], r[2], r[4]) for r in rows] == [
        ("door", "2027-01-15T08:00:00.000Z", "2.0 s"),
        ("lobby", "2027-01-15T08:10:00.000Z", "2.0 s"),
    ]
    assert [r[1] for r in cells(ok(web.get("/visits/zoe")), "visit")] == ["door"]
    r = web.get("/visits/nobody")
    assert r.status_code == 404 and "no person or unknown identity named" in r.text


@pytest.mark.slow  # dlib's HOG detector and encoder on a real photo
def test_search_page_finds_a_never_enrolled_face(web, world):
    assert 'enctype="multipart/form-data"' in ok(web.get("/search"))
    photo = world.photo.read_bytes()
    page = ok(web.post("/search", files={"photo": ("me.png", photo, "image/png")}))
    assert "2 matches for me.png" in page and "6 tracks searched" in page
    hits = cells(page, "event")
    assert [f"{c[3]}:{c[2]}" for c in hits] == ["door:unknown-1", "lobby:unknown-1"] or [
        f"{c[3]}:{c[2]}" for c in hits] == ["lobby:unknown-1", "door:unknown-1"]  # fmt: skip
    assert all(0 <= float(c[7]) < 0.2 for c in hits)
    assert len(re.findall(r'<img class="thumb" src="/api/events/\d+/snapshot"', page)) == 2
    r = web.post("/search", files={"photo": ("notes.txt", b"not an image", "text/plain")})
    assert r.status_code == 422 and "cannot read image notes.txt" in r.text


def green_share(rgb: np.ndarray, x: int, y: int, w: int, h: int) -> float:
    """The share of the box outline's pixels (x, y, w, h) that are the live view's green."""
    edge = np.concatenate([rgb[y, x : x + w], rgb[y + h - 1, x : x + w],
                           rgb[y : y + h, x], rgb[y : y + h, x + w - 1]])  # fmt: skip
    r, g, b = edge[:, 0].astype(int), edge[:, 1].astype(int), edge[:, 2].astype(int)
    return float(np.mean((g > 200) & (r < 60) & (b < 60)))


def test_the_sink_keeps_each_streams_newest_frame(world):
    rec = world.rt.bus.latest("door")
    assert rec is not None and (rec.session, rec.seq) == ("s1", 22)
    assert rec.key == world.rt.bus.frame_key(rec)
    (face,) = rec.faces
    assert face.track_id == 3 and face.box == (50, 30, 60, 60) and face.encoding is None
    assert world.rt.bus.latest("lobby").seq == 622 and world.rt.bus.latest("hall") is None
    ttl = world.rt.bus.conn.ttl(world.rt.bus.key("latest", "door"))
    assert 0 < ttl <= world.config.redis.frame_ttl_s


def test_live_frame_has_the_box_and_label_drawn(web, world):
    r = web.get("/live/door/frame.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    image = decode_rgb(r.content)
    assert image.shape == (120, 160, 3)
    assert green_share(image, 50, 30, 60, 60) > 0.9  # the face's box
    assert green_share(image, 0, 0, 40, 25) == 0  # nothing drawn far from it
    # the label: track id, the name the store fused, age and gender
    assert live.face_label(world.rt.bus.latest("door").faces[0], None) == "#3 27/F"
    ev = world.store.events_by_uid(["door/s1/3"])["door/s1/3"]
    assert live.face_label(world.rt.bus.latest("door").faces[0], ev) == f"#3 zoe {ev['age']:.0f}/F"


def test_live_placeholders(web, world):
    image = decode_rgb(web.get("/live/hall/frame.jpg").content)  # no frame of that stream
    assert image.shape == (360, 640, 3) and green_share(image, 0, 0, 640, 360) == 0
    world.rt.bus.conn.delete(world.rt.bus.latest("door").key)  # the image expired
    assert decode_rgb(web.get("/live/door/frame.jpg").content).shape == (360, 640, 3)
    assert web.get("/live/..%2Fx/frame.jpg").status_code in (404, 422)


def test_live_mjpeg_stream(web, world):
    r = web.get("/live/door/mjpeg?frames=2&fps=20")
    assert r.status_code == 200
    assert r.headers["content-type"] == "multipart/x-mixed-replace; boundary=frame"
    parts = [p for p in r.content.split(b"--frame\r\n") if p]
    assert len(parts) == 2
    for part in parts:
        head, _, body = part.partition(b"\r\n\r\n")
        assert b"Content-Type: image/jpeg" in head
        n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        frame = cv2.imdecode(np.frombuffer(body[:n], np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (120, 160, 3)
    # the overview shows a picture per stream (a browser keeps ~6 connections per host:
    # an MJPEG stream each would starve the page), a stream's page plays MJPEG
    page = ok(web.get("/live"))
    assert '<img class="live-still" src="/live/door/frame.jpg"' in page
    assert '<img class="live-still" src="/live/lobby/frame.jpg"' in page
    assert "mjpeg" not in page
    assert 'src="/live/door/mjpeg"' in ok(web.get("/live/door"))


def test_token_login_sets_a_strict_httponly_session_cookie(world):
    from fastapi.testclient import TestClient

    from tests.pipeline.web.conftest import TOKEN, make_app

    web = TestClient(make_app(world, token=TOKEN), follow_redirects=False)
    r = web.get("/events?stream=door")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fevents%3Fstream%3Ddoor"
    assert web.get("/login").status_code == 200
    for path in (
        "/api/events",
        "/live/door/frame.jpg",
        "/live/door/mjpeg",
        "/api/events/1/snapshot",
    ):
        assert web.get(path).status_code == 401, path
    r = web.post("/login", data={"token": "wrong-token-wrong-token", "next": "/events"})
    assert r.status_code == 401 and "wrong token" in r.text and "set-cookie" not in r.headers
    r = web.post("/login", data={"token": TOKEN, "next": "/events?stream=door"})
    assert r.status_code == 303 and r.headers["location"] == "/events?stream=door"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("facepipe_session=") and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    # the cookie opens the pages, the API (fetch, <img>) and the live view
    assert len(events(ok(web.get("/events?stream=door")))) == 3
    assert web.get("/api/events").json()["total"] == 6
    assert web.get("/live/door/frame.jpg").status_code == 200
    # a forged cookie is not a session; logging out ends it
    web.cookies.set("facepipe_session", TOKEN)
    assert web.get("/api/events").status_code == 401 and web.get("/events").status_code == 303
    r = web.post("/login", data={"token": TOKEN, "next": "//evil.example/x"})
    assert r.headers["location"] == "/events"  # no open redirect
    assert web.post("/logout").status_code == 303
    assert web.get("/api/events").status_code == 401
    # the bearer header still works as before
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (
        TestClient(make_app(world, token=TOKEN)).get("/api/events", headers=auth).status_code == 200
    )


def test_static_files_and_no_ui_routes_in_openapi(web):
    assert "callApi" in web.get("/static/app.js").text
    assert web.get("/static/style.css").status_code == 200
    paths = web.get("/openapi.json").json()["paths"]
    assert all(p.startswith("/api/") for p in paths)
    assert web.get("/", follow_redirects=False).headers["location"] == "/events"


def test_live_mjpeg_ends_when_the_server_stops(web):
    # `facepipe serve` sets app.state.should_exit (uvicorn's flag): an open live view
    # must not hold a stopping server for its grace period
    web.app.state.should_exit = lambda: True
    r = web.get("/live/door/mjpeg")  # no frame limit: ends only because the server stops
    assert r.status_code == 200 and r.content == b"--frame\r\n"


def test_viewers_of_a_stream_share_one_rendered_picture(world, monkeypatch):
    from pipeline.api import create_app

    st = create_app(world.config, store=world.store, bus=world.rt.bus).state.facepipe
    calls = []
    real = live.render
    monkeypatch.setattr(live, "render", lambda *a: calls.append(a[1]) or real(*a))
    cache = live.RenderCache(max_age_s=60)
    rec = world.rt.bus.latest("door")
    first = cache.get(st, "door", rec)
    assert [cache.get(st, "door", rec) for _ in range(5)] == [first] * 5 and calls == ["door"]
    cache.get(st, "door", world.rt.bus.latest("lobby"))  # another frame: drawn again
    cache.get(st, "lobby", world.rt.bus.latest("lobby"))
    assert calls == ["door", "door", "lobby"]
    cache.max_age_s = 0  # stale: drawn again (a renamed track shows)
    cache.get(st, "lobby", world.rt.bus.latest("lobby"))
    assert calls == ["door", "door", "lobby", "lobby"]


def test_events_of_a_video_file_show_the_position_in_the_file(web, world):
    world.store.set_session("door", "s1", live=False, fps=10.0)  # as the sink records it
    world.store.set_session("lobby", "s2", live=True, fps=25.0)
    rows = {f"{c[3]}:{c[2]}": c[4] for c in cells(ok(web.get("/events")), "event")}
    assert rows["door:unknown-2"].endswith("at 1.0 s of the file")  # frames 10-12 at 10/s
    assert rows["door:zoe"].endswith("at 2.0 s of the file")
    assert "of the file" not in rows["lobby:unknown-3"]  # a live camera has none
    zoe = world.store.find_events(person="zoe")[0]
    page = ok(web.get(f"/events/{zoe['id']}"))
    pos = re.search(r'<dd id="video-pos">([^<]+)</dd>', page).group(1)
    assert pos == "2.0 s to 2.2 s into the video"
    lobby = world.store.find_events(stream="lobby")[0]
    assert 'id="video-pos"' not in ok(web.get(f"/events/{lobby['id']}"))


def test_streams_page_lists_streams_and_offers_adding_a_camera(web, world):
    world.rt.bus.add_camera("gate", {"source": "rtsp://u:pw@10.0.0.9/1", "id": "x1",
                                     "added": 1.8e9})  # fmt: skip
    world.rt.bus.set_camera_status("gate", {"id": "x1", "state": "failed", "error": "no route"})
    page = ok(web.get("/streams"))
    rows = {c[0].split()[0]: c for c in cells(page, "stream")}
    assert set(rows) == {"door", "lobby", "gate"}
    assert rows["door"][1] == "done" and rows["door"][4] == "9 / 9 / 0"
    assert rows["lobby"][1] == "capturing"
    assert rows["gate"][1] == "failed"
    assert " ".join(rows["gate"][5].split()) == "failed: no route rtsp://u:***@10.0.0.9/1"
    assert 'data-url="/api/streams/gate"' in page and 'data-method="DELETE"' in page
    assert page.count("Remove</button>") == 1  # only the camera added at run time
    assert '<form class="api" id="add-stream" data-method="POST" data-url="/api/streams"' in page
