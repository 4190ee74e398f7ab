"""End to end: `facepipe run` as a user runs it (private Redis, worker processes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.datasets import datasets_root
from pipeline.stages import STAGE_NAMES
from tests.helpers import free_port

pytestmark = pytest.mark.slow


def facepipe(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FACEPIPE") and k not in ("REDIS_URL",)
    }
    env.update(FACEPIPE_HOME=str(home), **extra)
    return env


def test_run_names_enrolled_face_and_serves_metrics(tmp_path, demo_media):
    port = free_port()
    env = clean_env(tmp_path / "home", FACEPIPE__METRICS__PORT=str(port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(demo_media["video"]), "--stream", "demo",
         "--enroll", f"eileen-collins={demo_media['photo']}", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    scrapes = []
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                scrapes.append(r.read().decode())
        except OSError:
            pass
        time.sleep(0.2)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["frames"] == 30 and summary["processed"] == 30
    assert summary["people"] == {"eileen-collins": 1}
    assert summary["failed_jobs"] == 0
    # CPU accounting of the run: every process, and the part inside model inference
    assert set(summary["cpu_s"]) == {"run", "redis-server", *STAGE_NAMES}
    assert set(summary["inference_cpu_s"]) == {"detect", "recognize", "attributes"}
    assert summary["overhead"] > 0

    # the endpoint answered during the run with the pipeline's counters
    last = next(s for s in reversed(scrapes) if "facepipe_frames_processed_total{" in s)
    for name in ("facepipe_frames_captured_total{", "facepipe_faces_detected_total{",
                 "facepipe_stage_seconds_bucket{", "facepipe_capture_to_event_seconds_count{",
                 "facepipe_queue_depth{", "facepipe_workers{"):  # fmt: skip
        assert name in last, name
    detect_workers = [
        float(ln.split()[-1])
        for s in scrapes
        for ln in s.splitlines()
        if ln.startswith('facepipe_workers{stage="detect"}')
    ]
    assert max(detect_workers) == 2.0  # two detect processes served the queue

    # the event log that `run` wrote is the default store of `events`
    ev = facepipe("events", "--json", env=env)
    assert ev.returncode == 0, ev.stderr
    events = [json.loads(line) for line in ev.stdout.splitlines()]
    assert [e["person"] for e in events] == ["eileen-collins"]
    e = events[0]
    assert e["stream"] == "demo" and e["frames"] >= 25 and Path(e["snapshot"]).is_file()
    assert e["first_seen"].endswith("Z") and e["age"] is not None
    assert facepipe("events", "--person", "nobody", "--json", env=env).stdout == ""
    people = facepipe("people", "--json", env=env)
    assert json.loads(people.stdout) == {"name": "eileen-collins", "photos": 1}


def test_enroll_errors_name_the_file(tmp_path):
    import numpy as np
    from PIL import Image

    env = clean_env(tmp_path / "home")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    r = facepipe("enroll", "someone", str(blank), env=env)
    assert r.returncode != 0 and "blank.png: no face found" in r.stderr
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image")
    r = facepipe("enroll", "someone", str(junk), env=env)
    assert r.returncode != 0 and "junk.jpg: not a readable image" in r.stderr
    r = facepipe("run", str(tmp_path / "missing.mp4"), env=env)
    assert r.returncode != 0 and "not found" in r.stderr


HAMILTON = (datasets_root() or Path("/nonexistent")) / "video"


@pytest.mark.dataset
@pytest.mark.skipif(not (HAMILTON / "short_hamilton_clip.mp4").is_file(), reason="no datasets")
def test_hamilton_clip_names_both_people_and_no_one_else(tmp_path):
    env = clean_env(tmp_path / "home", FACEPIPE__METRICS__PORT="0")
    known = HAMILTON / "known"
    r = facepipe(
        "run", str(HAMILTON / "short_hamilton_clip.mp4"), "--json",
        "--enroll", f"lin-manuel-miranda={known / 'lin-manuel-miranda.png'}",
        "--enroll", f"alex-lacamoire={known / 'alex-lacamoire.png'}",
        env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["processed"] == 275
    ev = facepipe("events", "--json", env=env)
    events = [json.loads(line) for line in ev.stdout.splitlines()]
    names = {e["person"] for e in events}
    assert "lin-manuel-miranda" in names
    assert names <= {"lin-manuel-miranda", "alex-lacamoire", "unknown"}  # no wrong name
    # the clip's shots (cuts at frames 20, 82, 211): Lin stands in the first and is
    # filmed close in the third; Alex plays the piano in the first (26 px) and is seen in
    # profile in the second; the fourth shows the audience
    on_screen = {
        "lin-manuel-miranda": [(0, 19), (82, 210)],
        "alex-lacamoire": [(0, 19), (20, 81)],
    }
    for e in events:
        if e["person"] in on_screen:  # a named event lies inside that person's shots
            # (consecutive shots of one person count as one stretch: re-identification
            # may join his track of one shot to his track of the next into one event)
            stretches: list[tuple[int, int]] = []
            for a, b in on_screen[e["person"]]:
                if stretches and a == stretches[-1][1] + 1:
                    stretches[-1] = (stretches[-1][0], b)
                else:
                    stretches.append((a, b))
            span = (e["first_frame"], e["last_frame"])
            assert any(a <= span[0] and span[1] <= b for a, b in stretches), e
    per_person = {n: sum(e["person"] == n for e in events) for n in on_screen}
    assert per_person["lin-manuel-miranda"] == 2  # one per shot, each well within the rule
    # Alex, the 26-px pianist of the first shot, is a borderline face: his track's mean
    # encoding is 0.56 from his one enrolment photo where the rule names a face among 2
    # people within 0.565 (docs/openset.md, "Small faces": no encoding or enrolment
    # variant measured brings him clearly nearer without naming more strangers on LFW).
    # So the test checks the evidence and that the rule applied to it, not which side of
    # the threshold a 0.003 difference falls: his track is nearest to him, clearly nearer
    # than to Lin, and named exactly when the rule accepts it.
    from pipeline.evaluation.openset_video import explain_events

    (alex,) = [e for e in events if e["first_frame"] == 0 and e["person"] != "lin-manuel-miranda"]
    why = explain_events(env)[alex["stream"]][alex["track"]]
    assert why["nearest"] == "alex-lacamoire" and why["distance"] < 0.6, why
    assert why["margin"] >= 0.05, why  # Lin is clearly further
    accepted = re.search(r": score [0-9.]+ <= ", why["why"]) is not None  # the rule's yes
    assert (alex["person"] == "alex-lacamoire") == accepted, why
    # in the second shot (profile, larger) he may be named too: at most once (the default
    # detector, yunet, names him there; tiled blazeface does not, docs/detectors.md)
    later = [e for e in events if e["person"] == "alex-lacamoire" and e["first_frame"] >= 20]
    assert len(later) <= 1, later
    assert per_person["alex-lacamoire"] == int(accepted) + len(later)  # never in another shot


YOUTUBE = (datasets_root() or Path("/nonexistent")) / "youtube-faces-clips" / "Aaron_Guiel"


@pytest.mark.skipif(not (YOUTUBE / "Aaron_Guiel5.avi").is_file(), reason="no datasets")
def test_youtube_faces_clip_is_one_event_despite_its_jump(tmp_path):
    """The clip skips 36 source frames mid-way (the face jumps): re-identification joins it."""
    env = clean_env(tmp_path / "home", FACEPIPE__METRICS__PORT="0")
    r = facepipe("run", str(YOUTUBE / "Aaron_Guiel5.avi"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["processed"] == 132 and summary["tracks_merged"] == 1
    ev = facepipe("events", "--json", env=env)
    (event,) = [json.loads(line) for line in ev.stdout.splitlines()]
    assert event["frames"] >= 125 and event["last_frame"] == 131


def processes_with_env(marker: str) -> list[int]:
    """PIDs whose environment contains ``marker`` (our children carry FACEPIPE_HOME)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "environ").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def test_ctrl_c_stops_everything_cleanly(tmp_path, demo_media):
    import signal

    home = tmp_path / "home"
    env = clean_env(home, FACEPIPE__METRICS__PORT="0", FACEPIPE__CAPTURE__REALTIME="true")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(demo_media["video"]), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    marker = f"FACEPIPE_HOME={home}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the workers are up and frames flow
        logs = list((home / "logs").glob("run-*/detect-0.log"))
        if logs and len(processes_with_env(marker)) >= 7:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    time.sleep(0.5)
    assert processes_with_env(marker) == []  # no worker and no redis-server left behind


def test_distributed_pieces_share_one_redis(tmp_path, demo_media, redis_server):
    """capture + workers started one by one against REDIS_URL, two detect workers."""
    home = tmp_path / "home"
    env = clean_env(home, REDIS_URL=redis_server.url, FACEPIPE__METRICS__PORT="0",
                    FACEPIPE__REDIS__PREFIX="dist")  # fmt: skip
    r = facepipe("enroll", "eileen-collins", str(demo_media["photo"]), env=env)
    assert r.returncode == 0, r.stderr
    stages = ["detect", "detect", "track", "recognize", "attributes", "sink"]
    workers = [
        subprocess.Popen([sys.executable, "-m", "pipeline", "worker", s], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for s in stages
    ]  # fmt: skip
    try:
        cap = facepipe("capture", str(demo_media["video"]), "--stream", "door", env=env,
                       timeout=300)  # fmt: skip
        assert cap.returncode == 0, cap.stderr
        assert "all frames accounted for" in cap.stdout and "'processed': 30" in cap.stdout
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # identity samples may still be in flight
            ev = facepipe("events", "--json", env=env)
            people = [json.loads(x)["person"] for x in ev.stdout.splitlines()]
            if people == ["eileen-collins"]:
                break
            time.sleep(0.5)
        assert people == ["eileen-collins"]
        from rq import Worker

        from pipeline.bus import connect

        detect_jobs = [
            w.successful_job_count
            for w in Worker.all(connection=connect(redis_server.url))
            if "dist.detect" in w.queue_names()
        ]
        assert len(detect_jobs) == 2 and min(detect_jobs) > 0, detect_jobs
        # 30 frames: a job per frame, or fewer jobs of several frames when the queue is behind
        assert sum(detect_jobs) <= 30
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
    # both detect workers took jobs from the shared queue
    from pipeline.bus import Bus, connect
    from pipeline.metrics import Metrics

    m = Metrics(Bus(connect(redis_server.url), "dist"))
    assert m.total("facepipe_frames_processed_total", stream="door") == 30
