"""Shared fixtures: a real private Redis server, data directories, demo media, the LFW
subset scikit-image ships (Viola-Jones runtime and training tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.bus import connect
from pipeline.redis_server import PrivateRedis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[PrivateRedis]:
    """A real redis-server of our own (unix socket), for the whole test session."""
    with PrivateRedis() as server:
        yield server


@pytest.fixture()
def redis_url(redis_server: PrivateRedis) -> Iterator[str]:
    """The private server's URL, flushed before and after each test."""
    conn = connect(redis_server.url)
    conn.flushall()
    yield redis_server.url
    conn.flushall()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """FACEPIPE_HOME in a temp dir, and no stray FACEPIPE__ / REDIS_URL from the caller."""
    for k in list(os.environ):
        if k.startswith("FACEPIPE__") or k in ("REDIS_URL", "FACEPIPE_CONFIG"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("FACEPIPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="session")
def lfw_subset() -> tuple[np.ndarray, np.ndarray]:
    """(faces, non_faces): 100 + 100 grey 25 x 25 uint8 crops that scikit-image ships."""
    from skimage import data

    from pipeline.vj.scan import to_gray

    imgs = np.stack([to_gray(i) for i in data.lfw_subset()])
    return imgs[:100], imgs[100:]


@pytest.fixture(scope="session")
def demo_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A short clip of a real face (scikit-image's astronaut) and an enrolment photo."""
    from pipeline.demo import make_demo_video, write_enrollment_photo

    d = tmp_path_factory.mktemp("demo")
    return {
        "photo": write_enrollment_photo(d / "eileen.png"),
        "video": make_demo_video(d / "demo.mp4", frames=30),
    }


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (127.0.0.1:5432, trust auth) for one test.

    Skips when no server answers. Each test gets its own database, so tests running at
    the same time (other checkouts too) never see each other's tables.
    """
    import uuid

    import sqlalchemy as sa

    server = "postgresql+psycopg://postgres@127.0.0.1:5432"
    try:
        admin = sa.create_engine(f"{server}/test", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"facepipe_test_{uuid.uuid4().hex[:12]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no driver, no server
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({type(exc).__name__})")
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
