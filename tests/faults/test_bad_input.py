"""Bad input is refused or reported, never silently truncated (issue 11, item 4).

* a video with corrupt bytes in the middle: the frames before and after the damage are
  read and processed, a warning names the file and the frames, the capture result, the
  run's summary and the exit status (3) say it was cut short;
* images and frames larger than ``limits.max_image_pixels`` are refused at every entry
  point (detect, analyze, enroll, verify, capture);
* stream and person names that could climb out of a directory are refused at every entry
  point, and a hostile stream name arriving in a queue message writes nothing anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.capture import Capture
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.demo import make_demo_video, write_enrollment_photo
from pipeline.names import BadName
from pipeline.record import Face, FrameRecord, Samples
from pipeline.runtime import Runtime
from pipeline.sources import Source, SourceError
from pipeline.store import EventStore
from workers import base
from workers.base import stage_worker

FRAMES = 60
WARNING_RE = re.compile(r"bad\.mp4: frames (\d+)-(\d+) unreadable .*resumed at frame (\d+)")


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An intact clip and a copy with 5 % of its bytes, in the middle, overwritten."""
    d = tmp_path_factory.mktemp("videos")
    good = make_demo_video(d / "good.mp4", frames=FRAMES)
    data = bytearray(good.read_bytes())
    start = len(data) // 2
    end = start + len(data) // 20
    data[start:end] = bytes(end - start)
    (d / "bad.mp4").write_bytes(bytes(data))
    return {"good": good, "bad": d / "bad.mp4", "photo": write_enrollment_photo(d / "p.png")}


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FACEPIPE") and k != "REDIS_URL"}  # fmt: skip
    env.update(FACEPIPE_HOME=str(home), FACEPIPE__METRICS__PORT="0", **extra)
    return env


# ----- corrupt video -------------------------------------------------------------------


def test_an_intact_file_is_read_to_the_end_and_not_cut_short(videos):
    src = Source(str(videos["good"]))
    assert sum(1 for _ in src) == FRAMES
    assert src.unreadable == 0 and not src.cut_short


def test_frames_after_corrupt_bytes_are_read_with_a_warning_naming_file_and_frames(videos, caplog):
    caplog.set_level(logging.WARNING, logger="pipeline.sources")
    src = Source(str(videos["bad"]))
    n = sum(1 for _ in src)
    assert src.cut_short and 0 < src.unreadable < FRAMES // 2
    assert n + src.unreadable == FRAMES  # every frame is either read or counted unreadable
    (m,) = [m for r in caplog.records if (m := WARNING_RE.search(r.getMessage()))]
    first, last, resumed = map(int, m.groups())
    assert last - first + 1 == src.unreadable and resumed == last + 1
    assert n > first  # frames after the damage were read (the decoder resynchronised)


def test_capture_counts_the_unreadable_frames_in_the_stream_counts(videos, redis_url, home):
    cfg = load_config(None, environ={})
    cfg.capture.max_queue = 1000  # no detect worker here: room for every frame
    rt = Runtime.from_config(cfg, redis_url)
    result = Capture(rt, Source(str(videos["bad"])), "bad").run()
    assert result.cut_short and result.captured + result.unreadable == FRAMES
    counts = rt.bus.stream_counts("bad", result.session)
    assert counts["unreadable"] == result.unreadable and counts["captured"] == result.captured


def test_capture_command_exits_3_saying_cut_short(videos, redis_url, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "pipeline", "capture", str(videos["bad"]), "--stream", "bad",
         "--no-wait"],
        env=clean_env(tmp_path / "home", REDIS_URL=redis_url, FACEPIPE__CAPTURE__MAX_QUEUE="1000"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert WARNING_RE.search(res.stderr)
    assert re.search(r"CUT SHORT: bad: \d+ frame\(s\) of .*bad\.mp4 unreadable", res.stderr)


@pytest.mark.slow
def test_run_on_a_corrupt_video_processes_every_readable_frame_and_exits_3(videos, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(videos["bad"]), "--stream", "bad", "--json"],
        env=clean_env(tmp_path / "home"), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 3, res.stderr
    m = WARNING_RE.search(res.stderr)
    assert m, res.stderr[-2000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    st = summary["streams"]["bad"]
    assert summary["cut_short"] == ["bad"]
    assert st["unreadable"] == int(m[2]) - int(m[1]) + 1
    assert st["captured"] + st["unreadable"] == FRAMES
    assert summary["processed"] == st["captured"] > int(m[1])  # before and after the damage


def test_the_text_summary_has_a_cut_short_line(capsys):
    from pipeline.commands.run import print_summary

    s = {"frames": 53, "processed": 53, "seconds": 1.0, "fps": 53.0, "people": {},
         "stage_seconds": {}, "failed_jobs": 0,
         "streams": {"bad": {"source": "bad.mp4", "captured": 53, "processed": 53,
                             "unreadable": 7}}}  # fmt: skip
    print_summary(s, as_json=False)
    assert "CUT SHORT: stream bad: 7 frame(s) of bad.mp4 unreadable" in capsys.readouterr().out


# ----- pixel limits -------------------------------------------------------------------


def invoke(*args: str, **env: str):  # type: ignore[no-untyped-def]
    environ = {k: None for k in os.environ if k.startswith("FACEPIPE") or k == "REDIS_URL"}
    return CliRunner().invoke(main, list(args), env={**environ, **env})


@pytest.mark.slow
@pytest.mark.parametrize("command", ["detect", "analyze", "enroll", "verify"])
def test_every_image_command_refuses_an_image_over_the_configured_limit(videos, tmp_path, command):
    photo = videos["photo"]  # 220 x 260 = 57,200 pixels
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(f"1\t{photo.name}\t{photo.name}\t1\n")
    args = {
        "detect": ["detect", str(photo)],
        "analyze": ["analyze", str(photo)],
        "enroll": ["enroll", "ann", str(photo)],
        "verify": ["verify", "--pairs", str(pairs), "--root", str(photo.parent), "--json"],
    }[command]
    home = str(tmp_path / "home")
    res = invoke(*args, FACEPIPE_HOME=home, FACEPIPE__LIMITS__MAX_IMAGE_PIXELS="50000")
    assert "too large: 220 x 260 pixels, more than 50,000" in res.output, res.output
    ok = invoke(*args, FACEPIPE_HOME=home, FACEPIPE__LIMITS__MAX_IMAGE_PIXELS="60000")
    assert "too large" not in ok.output, ok.output  # the key is the limit, not the file


def test_a_source_with_frames_over_the_limit_is_refused(videos, redis_url, tmp_path):
    with pytest.raises(SourceError, match=r"640 x 360 pixels are more than the limit of 200,000"):
        Source(str(videos["good"]), max_pixels=200_000)
    res = invoke("capture", str(videos["good"]), FACEPIPE_HOME=str(tmp_path / "home"),
                 REDIS_URL=redis_url, FACEPIPE__LIMITS__MAX_IMAGE_PIXELS="200000")  # fmt: skip
    assert res.exit_code == 1 and "more than the limit of 200,000" in res.output


def test_live_frames_over_the_limit_are_skipped_with_one_warning(videos, caplog):
    import threading

    caplog.set_level(logging.WARNING, logger="pipeline.sources")
    src = Source(str(videos["good"]), reconnect_s=5.0)
    src.live, src.max_pixels = True, 200_000  # as a camera whose frames grew after opening
    threading.Timer(1.0, src.stop).start()
    assert list(src) == []  # no frame over the limit reaches the pipeline
    assert src.refused == FRAMES
    warnings = [r.getMessage() for r in caplog.records if "more than the limit" in r.getMessage()]
    assert warnings == [f"{videos['good']}: frames of 640 x 360 pixels are more than the limit "
                        "of 200,000 (limits.max_image_pixels); refused"]  # fmt: skip


# ----- names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["run", "{video}", "--stream", ".."],
        ["run", "{video}", "--stream", "../../etc"],
        ["run", "{video}", "--enroll", "../x={photo}"],
        ["capture", "{video}", "--stream", "a/b"],
        ["enroll", "../../x", "{photo}"],
        ["enroll", "unknown-3", "{photo}"],
        ["people", "--rename", "ann", "a\\b"],
    ],
)
def test_hostile_names_are_refused_at_every_entry_point(videos, tmp_path, args):
    home = tmp_path / "home"
    args = [a.format(video=videos["good"], photo=videos["photo"]) for a in args]
    res = invoke(*args, FACEPIPE_HOME=str(home), REDIS_URL="redis://127.0.0.1:1/0")
    assert res.exit_code == 2, res.output  # a usage error, before anything starts
    assert re.search(r"bad (stream|person) name|cannot be a person's name", res.output)
    assert not (home / "snapshots").exists() and not (home / "logs").exists()


def test_default_stream_names_are_valid_names():
    from pipeline.commands.run import default_stream_name
    from pipeline.names import check_stream

    for spec in ["../../x.mp4", "..mp4", "/tmp/.hidden.mp4", "rtsp://cam/../../a", "0",
                 "http://h/" + "x" * 200, "/v/clip 1 (copy).mp4"]:  # fmt: skip
        assert check_stream(default_stream_name(spec)) == default_stream_name(spec)


def test_a_hostile_stream_name_in_a_queue_message_writes_nothing(redis_url, home, tmp_path):
    cfg = load_config(None, environ={})
    rt = Runtime.from_config(cfg, redis_url)
    base.set_runtime(rt)
    frame = FrameRecord(stream="cam", session="s1", seq=0, ts=1.0, width=64, height=64,
                        faces=[Face(box=(0, 0, 20, 20), track_id=1, quality=0.9,
                                    encoding=[0.0] * 128)])  # fmt: skip
    from workers.sink import SinkStage

    sink = SinkStage(rt)
    root = cfg.snapshots_path.resolve()
    assert sink.snapshot_path(frame, 1) == root / "cam" / "s1" / "1.jpg"
    for stream, session in [("..", "s1"), ("../../escape", "s1"), ("cam", ".."),
                            ("cam", "../../../tmp")]:  # fmt: skip
        hostile = FrameRecord(**{**frame.to_dict(), "stream": stream, "session": session,
                                 "faces": frame.faces})  # fmt: skip
        with pytest.raises(BadName):
            sink.snapshot_path(hostile, 1)
        rt.bus.send("sink", Samples("identity", hostile))
    stage_worker("sink", rt, name="sink-test").work(burst=True, logging_level="CRITICAL")
    assert rt.bus.depth("sink") == 0
    assert EventStore(cfg.store_url).events() == []  # refused before anything was stored
    written = [p for p in home.parent.rglob("*.jpg")]
    assert written == []
    base.set_runtime(rt)
