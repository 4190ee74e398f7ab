"""A populated pipeline for the API tests: a real event store (SQLite in a temp dir, or
the machine's PostgreSQL), a real private Redis, and events written by the product's own
sink (:class:`workers.sink.SinkStage`) from tracked frames whose images are in Redis, so
snapshots are real files under the snapshots directory.

The world (times are T0 + seconds; nobody is enrolled when the tracks are stored):

* stream ``door``, session ``s1``: track 1 = the astronaut (scikit-image's portrait, the
  demo's face) at 0-2 s; track 2 = stranger X at 10-12 s; track 3 = zoe at 20-22 s.
* stream ``lobby``, session ``s2``: track 1 = the astronaut at 600-602 s; track 2 =
  stranger X at 610-612 s; track 3 = stranger Y at 620-622 s.
* zoe is enrolled (from an encoding) before her track is stored, so it is named; the
  astronaut and X and Y become unknown-1, unknown-2, unknown-3 (in that order).
* Redis knows both capture sessions: door finished (every frame accounted), lobby is
  still capturing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import Config, load_config
from pipeline.record import Face, FrameRecord, Observations, Samples
from pipeline.runtime import Runtime
from pipeline.store import EventStore

T0 = 1.8e9  # 2027-01-15T08:00:00Z
FRAMES = 3


@dataclass
class World:
    config: Config
    rt: Runtime
    store: EventStore
    photo: Path  # a photo of the astronaut (exactly one face)
    astronaut: np.ndarray  # its encoding (1 jitter, as the recognize stage's samples)


def encoder_factory(num_jitters: int):  # type: ignore[no-untyped-def]
    """The real dlib encoder, at 1 re-sampling whatever is asked (tests run faster)."""
    from pipeline.recognition.encoder import DlibEncoder

    return DlibEncoder(num_jitters=1)


@pytest.fixture(scope="session")
def astronaut(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    from pipeline.demo import write_enrollment_photo
    from pipeline.recognition.enroll import find_one_face, read_rgb

    photo = write_enrollment_photo(tmp_path_factory.mktemp("photo") / "astronaut.png")
    image = read_rgb(photo)
    vec = encoder_factory(1).encode(image, [find_one_face(image, photo)])[0]
    return photo, np.asarray(vec, dtype=np.float64)


def stranger(seed: int, near: np.ndarray) -> np.ndarray:
    """A face encoding about 0.9 from ``near`` (clearly someone else)."""
    d = np.random.default_rng(seed).normal(size=128)
    return near + d / np.linalg.norm(d) * 0.9


def store_track(rt: Runtime, sink, stream: str, session: str, track: int, t: float,
                enc: np.ndarray, age: float, gender: str) -> None:  # fmt: skip
    """FRAMES frames of one tracked face through the sink: observations, identity and
    attribute samples (each frame's image in Redis, for the snapshot)."""
    rng = np.random.default_rng([track, int(t)])
    image = np.full((120, 160, 3), 90, np.uint8)
    image[30:90, 50:110] = rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)
    for i in range(FRAMES):
        rec = FrameRecord(stream=stream, session=session, seq=int(t) + i, ts=T0 + t + i,
                          width=160, height=120)  # fmt: skip
        rec.key = rt.bus.frame_key(rec)
        rt.frames.put(rec.key, image)
        noise = rng.normal(size=128) * 0.004
        face = Face(box=(50, 30, 60, 60), track_id=track, quality=0.5 + 0.1 * i,
                    encoding=list(enc + noise), age=age + i, gender=gender,
                    gender_confidence=0.9)  # fmt: skip
        rec.faces = [face]
        if i == FRAMES - 1:
            rec.ended_tracks = [track]
        sink.process(Observations([rec]))
        sink.process(Samples("identity", rec))
        sink.process(Samples("attributes", rec))


def build_world(cfg: Config, redis_url: str, photo: Path, astro: np.ndarray) -> World:
    from workers.sink import SinkStage

    rt = Runtime.from_config(cfg, redis_url)
    store = EventStore(cfg.store_url)
    zoe = stranger(3, astro)
    store.enroll("zoe", [zoe], ["zoe.jpg"])
    sink = SinkStage(rt)
    x, y = stranger(1, astro), stranger(2, astro)
    bus = rt.bus
    bus.register_stream("door", "s1", {"source": "/videos/door.mp4", "live": False})
    bus.register_stream("lobby", "s2", {"source": "rtsp://cam:secret@lobby/1", "live": True})
    store_track(rt, sink, "door", "s1", 1, 0, astro, 40, "female")
    store_track(rt, sink, "door", "s1", 2, 10, x, 30, "male")
    store_track(rt, sink, "door", "s1", 3, 20, zoe, 25, "female")
    store_track(rt, sink, "lobby", "s2", 1, 600, astro, 41, "female")
    store_track(rt, sink, "lobby", "s2", 2, 610, x, 31, "male")
    store_track(rt, sink, "lobby", "s2", 3, 620, y, 60, "male")
    bus.count_frame("door", "s1", "captured", 3 * FRAMES)
    bus.set_end("door", "s1", 22)
    bus.count_frame("lobby", "s2", "captured", 3 * FRAMES + 2)
    return World(cfg, rt, store, photo, astro)


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request, home, redis_url, astronaut) -> World:  # type: ignore[no-untyped-def]
    cfg = load_config(None, environ={})
    if request.param == "postgresql":
        cfg.store.url = request.getfixturevalue("pg_url")
    return build_world(cfg, redis_url, *astronaut)


@pytest.fixture()
def sqlite_world(home, redis_url, astronaut) -> World:  # type: ignore[no-untyped-def]
    return build_world(load_config(None, environ={}), redis_url, *astronaut)


def make_client(w: World, **api: object):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from pipeline.api import create_app

    for k, v in api.items():
        setattr(w.config.api, k, v)
    app = create_app(w.config, store=w.store, bus=w.rt.bus, encoder_factory=encoder_factory)
    return TestClient(app)


@pytest.fixture()
def client(world: World):  # type: ignore[no-untyped-def]
    return make_client(world)


@pytest.fixture()
def client_for():  # type: ignore[no-untyped-def]
    """``client_for(world, **api settings)``: a test client of an app over ``world``."""
    return make_client
