"""The web UI in headless Chromium (Debian's ``chromium`` package, driven by Playwright
with ``executable_path``; ``.ci/run`` installs it): a real uvicorn server on a free
127.0.0.1 port over a real store and Redis. Screenshots are checked for content: the
live view of the demo clip (run through the real pipeline) shows the face's box drawn
where the detector found the face; the event page shows the snapshot and the context
image (the whole frame, the face's box drawn where the sink saw it). Names, "not this
person" and enrolment done through the pages change the store.

Skipped when /usr/bin/chromium (or Playwright) is absent."""

from __future__ import annotations

import io
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.pipeline.web.conftest import TOKEN, World, make_app

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("FACEPIPE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # root in CI containers
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        yield b
        b.close()


@pytest.fixture()
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


@contextmanager
def serving(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """``app`` on uvicorn in a thread; yields its base URL."""
    import uvicorn

    from pipeline.commands.serve import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            thread.join(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def png_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def green_share(rgb: np.ndarray, x: int, y: int, w: int, h: int, band: int = 2) -> float:
    """The share of the box outline (x, y, w, h; each side's pixels within ``band``) in
    the live view's box green."""
    from pipeline.web.live import BOX_RGB

    assert BOX_RGB == (0, 255, 0)
    hh, ww = rgb.shape[:2]

    def green(a: np.ndarray) -> np.ndarray:
        a = a.astype(int)
        return (a[..., 1] > 200) & (a[..., 0] < 60) & (a[..., 2] < 60)

    x2, y2 = min(ww - 1, x + w - 1), min(hh - 1, y + h - 1)
    sides = [
        green(rgb[max(0, y - band) : y + band + 1, x : x2 + 1]).any(axis=0),
        green(rgb[max(0, y2 - band) : y2 + band + 1, x : x2 + 1]).any(axis=0),
        green(rgb[y : y2 + 1, max(0, x - band) : x + band + 1]).any(axis=1),
        green(rgb[y : y2 + 1, max(0, x2 - band) : x2 + band + 1]).any(axis=1),
    ]
    return float(np.mean(np.concatenate(sides)))


def image_loaded(page, selector: str) -> int:  # type: ignore[no-untyped-def]
    """Wait for the image to load; its naturalWidth."""
    loaded = "s => { const i = document.querySelector(s); return i?.complete && i.naturalWidth }"
    page.wait_for_function(loaded, arg=selector)
    return page.eval_on_selector(selector, "i => i.naturalWidth")


# ----- the live view of a clip run through the real pipeline ---------------------------
@pytest.fixture()
def demo_run(redis_url, home, demo_media):  # type: ignore[no-untyped-def]
    """The demo clip (a real face, scikit-image's astronaut) captured and run through
    every stage in this process (rq's SimpleWorker, burst), nobody enrolled."""
    from pipeline.capture import Capture
    from pipeline.config import load_config
    from pipeline.runtime import Runtime
    from pipeline.sources import Source
    from pipeline.store import EventStore
    from workers import base
    from workers.base import stage_worker

    cfg = load_config(None, environ={})
    cfg.tracker.min_hits = 2
    cfg.capture.max_queue = 1000
    rt = Runtime.from_config(cfg, redis_url)
    base.set_runtime(rt)
    Capture(rt, Source(str(demo_media["video"])), "demo").run()
    stages = ("detect", "track", "recognize", "attributes", "sink")
    for _ in range(10):
        for stage in stages:
            stage_worker(stage, rt, name=f"{stage}-web").work(burst=True, logging_level="WARNING")
        if not any(rt.bus.depth(s) for s in stages):
            break
    yield rt, EventStore(cfg.store_url)
    base.set_runtime(rt)


def test_live_view_of_a_clip_with_a_face_shows_the_drawn_box(page, demo_run):
    from pipeline.api import create_app
    from tests.pipeline.api.conftest import encoder_factory

    rt, store = demo_run
    (ev,) = store.find_events()
    rec = rt.bus.latest("demo")  # the newest frame the sink stored, with its faces
    assert rec is not None and rec.faces, "the sink kept no frame with a face"
    (face,) = rec.faces
    assert face.track_id == ev["track_id"]
    raw = rt.frames.get(rec.key)
    x, y, w, h = face.clipped(rec.width, rec.height).box
    assert green_share(raw, x, y, w, h) < 0.05  # nothing green there before drawing
    app = create_app(rt.config, store=store, bus=rt.bus, encoder_factory=encoder_factory)
    with serving(app) as base:
        page.goto(f"{base}/live")  # the overview: a picture a second per stream
        assert "demo" in page.inner_text("figcaption")
        assert image_loaded(page, "img.live-still") == rec.width
        first = page.eval_on_selector("img.live-still", "i => i.src")
        page.wait_for_function("s => document.querySelector('img.live-still').src != s", arg=first)
        page.goto(f"{base}/live/demo")
        assert image_loaded(page, "#live-demo") == rec.width
        shot = png_rgb(page.locator("#live-demo").screenshot())
        page.goto("about:blank")  # closes the MJPEG stream
    assert shot.shape[1] == rec.width  # shown at its natural size
    s = shot.shape[1] / rec.width
    on_box = green_share(shot, round(x * s), round(y * s), round(w * s), round(h * s))
    assert on_box > 0.9, on_box  # the box is drawn where the face is
    # and only there: a box of the same size elsewhere in the frame is not green
    ox = 0 if x > rec.width / 2 else rec.width - w - 1
    assert green_share(shot, round(ox * s), round(y * s), round(w * s), round(h * s)) < 0.3
    # the face inside the box is the frame's, not a placeholder
    inner = shot[y + 8 : y + h - 8, x + 8 : x + w - 8].astype(float)
    assert np.abs(inner - raw[y + 8 : y + h - 8, x + 8 : x + w - 8]).mean() < 12


def test_the_event_page_shows_the_context_image_with_the_box(page, demo_run):
    import json

    from pipeline.api import create_app
    from tests.pipeline.api.conftest import encoder_factory

    rt, store = demo_run
    (ev,) = store.find_events()
    assert ev["context"] and Path(ev["context"]).is_file(), "the sink kept no context image"
    plain = np.asarray(Image.open(ev["context"]).convert("RGB"))
    (box,) = json.loads(ev["context_faces"])
    x, y, w, h, track = box
    assert track == ev["track_id"]
    assert green_share(plain, x, y, w, h) < 0.05  # the stored frame has nothing drawn
    app = create_app(rt.config, store=store, bus=rt.bus, encoder_factory=encoder_factory)
    with serving(app) as base:
        page.goto(f"{base}/events/{ev['id']}")
        assert image_loaded(page, "#context") == plain.shape[1]
        shot = png_rgb(page.locator("#context").screenshot())
        label = page.eval_on_selector("#context", "i => i.alt")
    assert "faces boxed" in label
    assert abs(shot.shape[1] - plain.shape[1]) <= 1  # the whole frame at its natural size
    on_box = green_share(shot, x, y, w, h)
    assert on_box > 0.9, on_box  # the box is drawn where the event's face is
    ox = 0 if x > plain.shape[1] / 2 else plain.shape[1] - w - 1
    assert green_share(shot, ox, y, w, h) < 0.3  # and not elsewhere
    inner = shot[y + 8 : y + h - 8, x + 8 : x + w - 8].astype(float)
    assert np.abs(inner - plain[y + 8 : y + h - 8, x + 8 : x + w - 8]).mean() < 12


# ----- pages over the sink-built world (tests/pipeline/api/conftest.py) ---------------
def test_login_then_the_event_page_shows_the_snapshot(page, world: World):
    ev = world.store.find_events(person="zoe")[0]
    with serving(make_app(world, token=TOKEN)) as base:
        page.goto(f"{base}/events/{ev['id']}")
        assert page.url.startswith(f"{base}/login?next=")  # no session yet
        page.fill("input[name=token]", TOKEN)
        page.click("#login button[type=submit]")
        page.wait_for_url(f"{base}/events/{ev['id']}")
        assert f"Event {ev['id']}: zoe" in page.inner_text("h1")
        width = image_loaded(page, "#snapshot")  # the <img> loaded through the cookie
        shot = png_rgb(page.locator("#snapshot").screenshot())
        cookies = {c["name"]: c for c in page.context.cookies()}
        # the buttons' fetch calls to /api carry the session too
        page.goto(f"{base}/unknowns")
        row = page.locator('tr.unknown[data-name="unknown-2"]')
        row.locator("form.name input[name=name]").fill("xavier")
        row.locator("form.name button").click()
        page.wait_for_selector("#message:not([hidden])")
        assert "xavier" in page.inner_text("#message")
    assert world.store.find_events(person="xavier")  # unknown-2 is xavier now
    snap = np.asarray(Image.open(ev["snapshot"]).convert("RGB"))
    h, w = snap.shape[:2]
    assert width == w and abs(shot.shape[0] - h) <= 1 and abs(shot.shape[1] - w) <= 1
    # the screenshot shows the crop (the element may sit on a fractional pixel: best of
    # the one-pixel alignments)
    shifts = [
        (dy, dx) for dy in range(shot.shape[0] - h + 1) for dx in range(shot.shape[1] - w + 1)
    ]
    diffs = [
        np.abs(shot[dy : dy + h, dx : dx + w].astype(float) - snap).mean() for dy, dx in shifts
    ]
    assert min(diffs) < 8, diffs
    c = cookies["facepipe_session"]
    assert c["httpOnly"] and c["sameSite"] == "Strict" and TOKEN not in c["value"]


def test_event_log_filters_and_thumbnails(page, world: World):
    with serving(make_app(world)) as base:
        page.goto(f"{base}/events")
        assert page.locator("tr.event").count() == 6
        page.select_option("select[name=stream]", "lobby")
        page.fill("input[name=person]", "unknown-1")
        page.click("#filters button[type=submit]")
        page.wait_for_url("**/events?person=unknown-1&stream=lobby**")
        assert page.locator("tr.event").count() == 1
        assert image_loaded(page, "tr.event img.thumb") > 0


def test_naming_an_unknown_through_the_ui_renames_it_in_the_store(page, world: World):
    uid = "lobby/s2/3"
    assert world.store.events_by_uid([uid])[uid]["unknown_id"] == "unknown-3"
    with serving(make_app(world)) as base:
        page.goto(f"{base}/unknowns")
        row = page.locator('tr.unknown[data-name="unknown-3"]')
        assert image_loaded(page, 'tr.unknown[data-name="unknown-3"] img.thumb') > 0
        row.locator("form.name input[name=name]").fill("yvonne")
        row.locator("form.name button").click()
        page.wait_for_selector("#message:not([hidden])")
        assert "yvonne" in page.inner_text("#message")
        page.wait_for_load_state()
        page.goto(f"{base}/people")
        assert page.locator('tr.person[data-name="yvonne"]').count() == 1
    assert world.store.events_by_uid([uid])[uid]["person"] == "yvonne"


def test_not_this_person_through_the_ui(page, world: World):
    uid = "door/s1/3"
    ev = world.store.events_by_uid([uid])[uid]
    assert ev["person"] == "zoe"
    with serving(make_app(world)) as base:
        page.on("dialog", lambda d: d.accept())  # "Is event N really not zoe?"
        page.goto(f"{base}/events/{ev['id']}")
        page.click("#not-person button")
        page.wait_for_selector("#message:not([hidden])")
        assert f"event {ev['id']} is not zoe" in page.inner_text("#message")
    assert world.store.events_by_uid([uid])[uid]["person"] != "zoe"


def test_enrol_by_upload_and_search_by_photo_through_the_ui(page, world: World):
    with serving(make_app(world)) as base:
        page.goto(f"{base}/search")
        page.set_input_files("#search input[name=photo]", str(world.photo))
        page.click("#search button[type=submit]")
        page.wait_for_selector("p.count")
        assert page.locator("tr.event").count() == 2  # the astronaut on both streams
        assert "unknown-1" in page.inner_text("table.events")
        page.goto(f"{base}/people")
        page.fill("#enrol input[name=name]", "eileen")
        page.set_input_files("#enrol input[name=photos]", str(world.photo))
        page.click("#enrol button[type=submit]")
        page.wait_for_selector("#message:not([hidden])")
        assert "enrolled eileen" in page.inner_text("#message")
    people = {p["name"]: p for p in world.store.people()}
    assert people["eileen"]["photos"] == 1
    labels = {e["track_uid"]: e["person"] for e in world.store.find_events()}
    assert labels["door/s1/1"] == labels["lobby/s2/1"] == "eileen"


def accept_dialogs(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Accept every confirm() of the page; returns the list their messages go into."""
    dialogs: list[str] = []

    def answer(d) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(d.message)
        d.accept()

    page.on("dialog", answer)
    return dialogs


def test_merge_and_erase_through_the_ui(page, world: World):
    with serving(make_app(world)) as base:
        dialogs = accept_dialogs(page)
        page.goto(f"{base}/unknowns")
        row = page.locator('tr.unknown[data-name="unknown-2"]')
        row.locator("form.merge input[name=other]").fill("unknown-3")
        row.locator("form.merge button").click()
        page.wait_for_selector("#message:not([hidden])")
        page.wait_for_url(f"{base}/unknowns")  # reloaded after the answer
        page.wait_for_function("!document.querySelector('tr.unknown[data-name=\"unknown-3\"]')")
        assert page.locator("tr.unknown").count() == 2
        page.goto(f"{base}/people")
        page.locator('tr.person[data-name="zoe"] form.erase button').click()
        page.wait_for_selector("#message:not([hidden])")
        assert "erased zoe" in page.inner_text("#message")
        page.wait_for_function("!document.querySelector('tr.person[data-name=\"zoe\"]')")
    assert dialogs == ["Erase zoe entirely (photos, events, snapshots)?"]
    labels = {e["track_uid"]: e["person"] or e["unknown_id"] for e in world.store.find_events()}
    assert labels["lobby/s2/3"] == "unknown-2" and "door/s1/3" not in labels
    assert "zoe" not in {p["name"] for p in world.store.people()}
    # an error is shown, not swallowed: a person who is not there
    with serving(make_app(world)) as base:
        page.goto(f"{base}/unknowns")
        row = page.locator('tr.unknown[data-name="unknown-1"]')
        row.locator("form.merge input[name=other]").fill("unknown-9")
        row.locator("form.merge button").click()
        page.wait_for_selector("#message.bad:not([hidden])")
        assert "unknown-9" in page.inner_text("#message")


def test_add_and_remove_a_camera_through_the_ui(page, world: World):
    bus = world.rt.bus
    with serving(make_app(world)) as base:
        dialogs = accept_dialogs(page)
        page.goto(f"{base}/streams")
        form = page.locator("#add-stream")
        form.locator("input[name=name]").fill("gate")
        form.locator("input[name=source]").fill("http://127.0.0.1:9/cam.mjpg")
        form.locator("button").click()  # every_n_frames left empty: not sent
        page.wait_for_selector('tr.stream[data-name="gate"]')
        row = page.locator('tr.stream[data-name="gate"]')
        assert row.locator("td.status").inner_text() == "starting"  # no follower runs here
        assert bus.cameras()["gate"]["source"] == "http://127.0.0.1:9/cam.mjpg"
        # a bad key is shown as the API names it
        form = page.locator("#add-stream")
        form.locator("input[name=name]").fill("gate2")
        form.locator("input[name=source]").fill("0")
        form.locator("input[name=every_n_frames]").fill("0")
        page.eval_on_selector("#add-stream", "f => f.noValidate = true")  # past the browser's check
        form.locator("button").click()
        page.wait_for_selector("#message.bad:not([hidden])")
        assert "cameras.gate2.every_n_frames" in page.inner_text("#message")
        page.locator('tr.stream[data-name="gate"] form.remove button').click()
        page.wait_for_function("!document.querySelector('tr.stream[data-name=\"gate\"]')")
    assert dialogs == ["Stop capturing gate?"]
    assert bus.cameras() == {}
