"""Secrets redacted from messages; private file modes."""

import logging
import os
import stat

import pytest

from pipeline.privacy import RedactFilter, private_umask, redact_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cannot reach Redis at redis://:PASSWORD@host:6379/0: refused",
         "cannot reach Redis at redis://:***@host:6379/0: refused"),
        ("rediss://default:p%40ss@h:6380/1", "rediss://default:***@h:6380/1"),
        ("postgresql+psycopg://facepipe:pw@db/facepipe", "postgresql+psycopg://facepipe:***@db/facepipe"),
        ("unix://:pw@/tmp/r.sock?db=0", "unix://:***@/tmp/r.sock?db=0"),
        ("unix:///tmp/r.sock?db=0&password=pw", "unix:///tmp/r.sock?db=0&password=***"),
        ("rtsp://user:cam-pw@cam/stream and redis://:x@r", "rtsp://user:***@cam/stream and redis://:***@r"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),  # no secret: unchanged
        ("postgresql://user@db/x", "postgresql://user@db/x"),
    ],
)  # fmt: skip
def test_redact_url(text, expected):
    assert redact_url(text) == expected


def test_log_records_are_redacted(caplog):
    logger = logging.getLogger("test_privacy")
    caplog.handler.addFilter(RedactFilter())
    logger.warning("connecting to %s", "redis://:hunter2@db:6379/0")
    assert "hunter2" not in caplog.text and "redis://:***@db:6379/0" in caplog.text


def test_private_umask_makes_files_0600_and_directories_0700(tmp_path):
    old = private_umask()
    try:
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "f").write_text("face")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "d" / "f").stat().st_mode) == 0o600
