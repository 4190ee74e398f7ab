"""Identity through the pipeline: each clip through ``facepipe run`` as a subprocess.

Each YouTube Faces clip and the Hamilton clip (both people of ``video/known/`` enrolled)
go through ``facepipe run --json`` (``python -m pipeline``) in a fresh temporary
``FACEPIPE_HOME``, with re-identification on (the defaults) and off
(``FACEPIPE__TRACKER__REID_WINDOW=0``); ``facepipe events --json`` gives the events
(tracks). :func:`analyze_run` reports events in total and per person, frames of the
longest event vs frames captured, merges (the run's ``track_aliases``), and on the
Hamilton clip each named event's frames and shots, names on events in a shot where that
person is not on screen, and named events per person vs the fewest the shot cuts allow.
"""

from __future__ import annotations

import bisect
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.datasets import REPO_ROOT as REPO
from pipeline.evaluation.common import log
from pipeline.evaluation.video import read_video, shot_cuts

HAMILTON = "short_hamilton_clip.mp4"
HAMILTON_CUTS = [20, 82, 211]  # what shot_cuts() finds; each checked by eye
# who is on screen in each shot, by eye: Lin-Manuel Miranda (standing) and Alex Lacamoire
# (piano); Alex in profile close-up (curly hair and beard as in his enrolment photo) and
# the audience; Lin alone; the audience
HAMILTON_CAST: list[set[str]] = [
    {"lin-manuel-miranda", "alex-lacamoire"},
    {"alex-lacamoire"},
    {"lin-manuel-miranda"},
    set(),
]
PIPELINE_TIMEOUT_S = 1800


def facepipe_env(home: Path, reid: bool) -> dict[str, str]:
    """The environment of one run: a fresh data directory, a private Redis (no
    ``REDIS_URL``), the default configuration, no metrics port (other runs on the machine
    may hold 9108); ``reid=False`` sets ``tracker.reid_window`` to 0 (no merges)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FACEPIPE_CONFIG", "FACEPIPE_HOME", "REDIS_URL")
        and not k.startswith("FACEPIPE__")
    }
    env["FACEPIPE_HOME"] = str(home)
    env["FACEPIPE__METRICS__PORT"] = "0"
    if not reid:
        env["FACEPIPE__TRACKER__REID_WINDOW"] = "0"
    return env


def iso_ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO time as ``facepipe events --json`` prints it."""
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def store_extras(db: Path, stream: str, session: str) -> tuple[dict[str, list[list[int]]], dict]:
    """From the run's event store (read only): the frames (``seq``) and capture times (ms,
    as the events print them) of each track's samples, and the merges
    (``track_aliases``: merged track uid -> surviving uid). ``facepipe events`` shows
    neither."""
    import sqlalchemy as sa

    from pipeline.record import iso_utc as iso
    from pipeline.store import make_engine, samples, track_aliases

    prefix = f"{stream}/{session}/"
    engine = make_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(samples.c.track_uid, samples.c.seq, samples.c.ts)
                .where(samples.c.track_uid.startswith(prefix, autoescape=True))
                .distinct()
            ).all()
            aliases = conn.execute(
                sa.select(track_aliases.c.from_uid, track_aliases.c.into_uid).where(
                    track_aliases.c.from_uid.startswith(prefix, autoescape=True)
                )
            ).all()
    finally:
        engine.dispose()
    by_uid: dict[str, list[list[int]]] = {}
    for uid, seq, ts in rows:
        by_uid.setdefault(uid, []).append([int(seq), iso_ms(iso(ts))])
    for v in by_uid.values():
        v.sort()
    return by_uid, {a.from_uid: a.into_uid for a in aliases}


def run_in_home(
    video: Path, stream: str, enroll: list[tuple[str, Path]], env: dict[str, str], log_path: Path
) -> dict[str, Any]:
    """``facepipe run VIDEO --json`` with ``env`` (its ``FACEPIPE_HOME`` prepared), then
    ``facepipe events --json`` there: the run's summary, this session's events, samples
    and merges, and its wall time. stderr goes to ``log_path``."""
    facepipe = [sys.executable, "-m", "pipeline"]  # the `facepipe` console script
    cmd = [*facepipe, "run", str(video), "--stream", stream, "--json"]
    for name, photo in enroll:
        cmd += ["--enroll", f"{name}={photo}"]
    t0 = time.monotonic()
    with open(log_path, "w") as err:
        proc = subprocess.run(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True,
            timeout=PIPELINE_TIMEOUT_S, check=False,
        )  # fmt: skip
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"facepipe run exited with {proc.returncode}; see {log_path}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    out = subprocess.run(
        [*facepipe, "events", "--json", "--stream", stream],
        cwd=REPO, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    events = [json.loads(ln) for ln in out.stdout.splitlines() if ln.strip()]
    session = summary["streams"][stream]["session"]
    samples, aliases = store_extras(Path(env["FACEPIPE_HOME"]) / "events.db", stream, session)
    return {
        "summary": summary,
        "events": [e for e in events if e["session"] == session],
        "samples": samples,
        "aliases": aliases,
        "wall_s": wall,
    }


def facepipe_run(
    video: Path, stream: str, enroll: list[tuple[str, Path]], reid: bool, tag: str, cache: Path
) -> dict[str, Any]:
    """:func:`run_in_home` in a fresh ``FACEPIPE_HOME``; stderr goes to
    ``runs/eval_tracking/pipeline/TAG.log``, the events, summary and store extras beside."""
    logs = cache / "pipeline"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="facepipe-eval-") as tmp:
        run = run_in_home(video, stream, enroll, facepipe_env(Path(tmp), reid),
                          logs / f"{tag}.log")  # fmt: skip
    (logs / f"{tag}.events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in run["events"]))
    (logs / f"{tag}.summary.json").write_text(json.dumps(run["summary"]) + "\n")
    (logs / f"{tag}.store.json").write_text(
        json.dumps({"samples": run["samples"], "aliases": run["aliases"]})
    )
    return run


def frame_bounds(
    evs: list[dict[str, Any]], samples: dict[str, list[list[int]]], n_frames: int, gap: int
) -> dict[str, list[int]]:
    """``[first_lo, first_hi, last_lo, last_hi]`` per event: bounds on its first and last
    frame, sound and exact where they meet.

    Events carry capture times, not frame numbers, and a file is captured as fast as the
    detect queue allows, so times do not map linearly to frames. What is exact: each
    sample's frame and time; capture times increase with the frame; an event's first
    and last seen are the times of its first and last frame; it has ``frames`` distinct
    frames; its first sample is ``gap`` (min_hits - 1) frames or more after its first
    frame (a track is sampled from its confirmation on). A time later than a frame known
    to be at or after frame ``s`` lies after ``s``, and so on: the bounds are narrowed
    with every known time (samples, and events' first and last frames) until nothing
    changes. Times are compared in whole milliseconds (as printed), strictly.
    """
    exact = sorted({(s, ms) for rows in samples.values() for s, ms in rows})
    b: dict[str, list[int]] = {}
    for e in evs:
        seqs = [s for s, _ in samples.get(e["uid"], [])]
        b[e["uid"]] = [
            0,
            min(seqs) - gap if seqs else n_frames - 1,
            max(seqs) if seqs else 0,
            n_frames - 1,
        ]
    changed = True
    while changed:
        changed = False
        # (s, t): a frame at or after s (lo) / at or before s (hi) was captured at t
        lo_at = (
            exact
            + [(b[e["uid"]][0], e["F"]) for e in evs]
            + [(b[e["uid"]][2], e["L"]) for e in evs]
        )
        hi_at = (
            exact
            + [(b[e["uid"]][1], e["F"]) for e in evs]
            + [(b[e["uid"]][3], e["L"]) for e in evs]
        )
        for e in evs:
            cur = b[e["uid"]]
            new = list(cur)
            for k, t in ((0, e["F"]), (2, e["L"])):
                new[k] = max(new[k], max((s + 1 for s, a in lo_at if a < t), default=0))
                new[k + 1] = min(
                    new[k + 1], min((s - 1 for s, a in hi_at if a > t), default=n_frames - 1)
                )
            new[2] = max(new[2], new[0] + e["frames"] - 1)
            new[1] = min(new[1], new[3] - e["frames"] + 1)
            if new != cur:
                b[e["uid"]], changed = new, True
    for uid, (f0, f1, l0, l1) in b.items():
        if f0 > f1 or l0 > l1:
            raise ValueError(f"{uid}: inconsistent frame bounds {b[uid]} (times not monotonic?)")
    return b


def shots_of(lo: int, hi: int, cuts: list[int]) -> set[int]:
    """Indices of the shots that frames ``lo..hi`` touch."""
    if lo > hi:
        return set()
    return set(range(bisect.bisect_right(cuts, lo), bisect.bisect_right(cuts, hi) + 1))


def min_tracks(cast: list[set[str]], person: str) -> int:
    """Runs of consecutive shots with ``person`` on screen: no track continues across a
    cut, so the fewest tracks (events) the person can have."""
    on = [person in c for c in cast]
    return sum(1 for i, x in enumerate(on) if x and (i == 0 or not on[i - 1]))


def analyze_run(
    run: dict[str, Any],
    stream: str,
    gap: int,
    cuts: list[int] | None = None,
    cast: list[set[str]] | None = None,
) -> dict[str, Any]:
    """Events, events per person, merges, the longest event; with ``cuts``/``cast``: each
    event's frames and shots, and names on events in shots without that person."""
    summary = run["summary"]
    st = summary["streams"][stream]
    captured = st.get("captured", 0)
    session = st["session"]
    into: dict[str, list[int]] = {}
    for frm, to in run["aliases"].items():
        into.setdefault(to, []).append(int(frm.rsplit("/", 1)[1]))
    evs = []
    for e in run["events"]:
        uid = f"{stream}/{session}/{e['track']}"
        evs.append(
            {
                "id": e["id"],
                "uid": uid,
                "track": e["track"],
                "label": e["person"] if e["person"] != "unknown" else e["unknown_id"] or "unknown",
                "named": e["person"] != "unknown",
                "frames": e["frames"],
                "identity_samples": e["identity_samples"],
                "F": iso_ms(e["first_seen"]),
                "L": iso_ms(e["last_seen"]),
                "sample_frames": sorted({s for s, _ in run["samples"].get(uid, [])}),
                "merged_from": sorted(into.get(uid, [])),
                "exact": [e.get("first_frame"), e.get("last_frame")],
            }
        )
    # frame numbers: the events' own first_frame/last_frame when the store has them, else
    # bounds from the capture times (checked against the exact ones when both exist)
    bounds = frame_bounds(evs, run["samples"], captured, gap)
    violations = 0
    for e in evs:
        f, last = e["exact"]
        if f is None or last is None:
            continue
        f0, f1, l0, l1 = bounds[e["uid"]]
        violations += not (f0 <= f <= f1 and l0 <= last <= l1)
        bounds[e["uid"]] = [f, f, last, last]
    exact_frames = all(None not in e["exact"] for e in evs)
    out: dict[str, Any] = {
        "session": session,
        "captured": captured,
        "processed": st.get("processed", 0),
        "seconds": summary["seconds"],
        "failed_jobs": summary["failed_jobs"],
        "events": len(evs),
        "per_person": dict(Counter(e["label"] for e in evs).most_common()),
        "merges": len(run["aliases"]),
        "longest_event_frames": max((e["frames"] for e in evs), default=0),
        "summary_people": summary["people"],
        "frames_from": "events (first_frame, last_frame)" if exact_frames else "capture times",
        "time_bounds_violations": violations,
    }
    detail = []
    for e in evs:
        f0, f1, l0, l1 = bounds[e["uid"]]
        row = {k: e[k] for k in ("id", "track", "label", "frames", "identity_samples")}
        row |= {
            "sample_frames": e["sample_frames"],
            "merged_from": e["merged_from"],
            "first_frame": [f0, f1],
            "last_frame": [l0, l1],
        }
        if cuts is not None and cast is not None:
            sure = {bisect.bisect_right(cuts, s) for s in e["sample_frames"]}
            for lo, hi in ((f0, f1), (l0, l1)):
                if len(shots_of(lo, hi, cuts)) == 1:
                    sure |= shots_of(lo, hi, cuts)
            possible = sure | shots_of(f0, f1, cuts) | shots_of(l0, l1, cuts)
            if not e["merged_from"]:  # one track: every frame between first and last
                sure |= shots_of(f1, l0, cuts)
                possible |= shots_of(f0, l1, cuts)
            row["shots"], row["shots_possible"] = sorted(sure), sorted(possible)
            wrong = None
            if e["named"]:
                if any(e["label"] not in cast[i] for i in sure):
                    wrong = "certain"
                elif any(e["label"] not in cast[i] for i in possible):
                    wrong = "possible"
            row["wrong_name"] = wrong
        detail.append(row)
    out["event_detail"] = detail
    if cuts is not None and cast is not None:
        people = sorted(set().union(*cast))
        out["wrong_names"] = {
            k: sum(1 for r in detail if r["wrong_name"] == k) for k in ("certain", "possible")
        }
        out["named_events"] = {p: sum(1 for e in evs if e["label"] == p) for p in people}
        out["min_events"] = {p: min_tracks(cast, p) for p in people}
    return out


def pipeline_eval(
    clips: list[Path], root: Path, runs: int, cache: Path, command: str, cut_threshold: float | None
) -> dict[str, Any]:
    """Each YouTube Faces clip and the Hamilton clip (both people enrolled) through
    ``facepipe run``, re-identification on (defaults) and off, ``runs`` times each."""
    from pipeline.config import TrackerConfig

    gap = TrackerConfig().min_hits - 1  # at detection on every frame (the default)
    jobs: list[tuple[str, Path, list[tuple[str, Path]], list[int] | None]] = []
    for clip in clips:
        videos = sorted(clip.glob("*.avi"))
        if videos:
            jobs.append((clip.name, videos[0], [], None))
    video = root.parent / "video" / HAMILTON
    if video.exists():
        cuts = shot_cuts(read_video(video), cut_threshold)
        if cuts != HAMILTON_CUTS:
            raise RuntimeError(f"{video.name}: shot cuts {cuts}, expected {HAMILTON_CUTS}")
        known = sorted((video.parent / "known").glob("*.png"))
        jobs.append(("hamilton", video, [(p.stem, p) for p in known], cuts))
    result: dict[str, Any] = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "uncommitted": subprocess.run(
            ["git", "status", "--porcelain", "--", "pipeline", "workers", "config"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.splitlines(),
        "runs_per_setting": runs,
        "clips": [],
    }
    for stream, path, enroll, cuts in jobs:
        entry: dict[str, Any] = {
            "clip": stream,
            "video": path.name,
            "enrolled": [n for n, _ in enroll],
            "runs": [],
        }
        if cuts is not None:
            entry["cuts"] = cuts
            entry["cast"] = [sorted(c) for c in HAMILTON_CAST]
        for reid in (True, False):
            for i in range(1, runs + 1):
                tag = f"{stream}-reid-{'on' if reid else 'off'}-{i}"
                log(f"facepipe run: {tag}")
                raw = facepipe_run(path, stream, enroll, reid, tag, cache)
                res = analyze_run(raw, stream, gap, cuts, HAMILTON_CAST if cuts else None)
                entry["runs"].append({"reid": reid, "run": i, "wall_s": raw["wall_s"], **res})
        result["clips"].append(entry)
    return result


def fmt_frames(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}~{hi}"


def render_pipeline(p: dict[str, Any]) -> list[str]:
    lines = [
        "### Identity through the pipeline: `facepipe run`",
        "",
        f"Command: `{p['command']}` (commit {p['git']}"
        + (
            ", uncommitted changes to "
            + ", ".join(f"`{ln[3:]}`" for ln in p["uncommitted"])
            + " in the tree"
            if p.get("uncommitted")
            else ""
        )
        + f"), {p['date']}; load average at start "
        f"{p['loadavg_start']}. Each run: `./facepipe run VIDEO --stream NAME --json` "
        "(default configuration, fresh `FACEPIPE_HOME`, private Redis, metrics port off), "
        "then `./facepipe events --json`; re-identification on = defaults "
        "(`tracker.reid_window` 60, `reid_threshold` 0.5), off = "
        f"`FACEPIPE__TRACKER__REID_WINDOW=0`; {p['runs_per_setting']} run(s) per setting. "
        "Merges are read from the run's `track_aliases` table.",
        "",
        "| clip | re-identification | run | events | events per person | merges "
        "| longest event / frames captured | wrong names (certain / possible) "
        "| named events per person (minimum) | run time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in p["clips"]:
        for r in c["runs"]:
            per = ", ".join(f"{k} {v}" for k, v in r["per_person"].items())
            wrong = (
                f"{r['wrong_names']['certain']} / {r['wrong_names']['possible']}"
                if "wrong_names" in r
                else "-"
            )
            named = (
                ", ".join(f"{k} {v} ({r['min_events'][k]})" for k, v in r["named_events"].items())
                if "named_events" in r
                else "-"
            )
            lines.append(
                f"| {c['clip']} | {'on' if r['reid'] else 'off'} | {r['run']} | {r['events']} "
                f"| {per} | {r['merges']} | {r['longest_event_frames']} / {r['captured']} "
                f"| {wrong} | {named} | {r['seconds']:.0f} s |"
            )
    for c in p["clips"]:
        if "cuts" not in c:
            continue
        starts = [0, *c["cuts"]]
        ends = [s - 1 for s in c["cuts"]] + [None]
        shot = [f"{a}-{b}" if b is not None else f"{a}-" for a, b in zip(starts, ends, strict=True)]
        lines += [
            "",
            f"Named events on `{c['video']}` (enrolled: {', '.join(c['enrolled'])}); shots "
            + "; ".join(
                f"{s}: {', '.join(who) or 'neither'}"
                for s, who in zip(shot, c["cast"], strict=True)
            )
            + ". Frames: first..last, `a~b` where the capture times only bound it "
            "(events carry times, not frame numbers; see the text).",
            "",
            "| re-identification | run | event (track) | person | frames | first..last frame "
            "| shots | sampled frames | merged tracks | wrong name |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in c["runs"]:
            for e in r["event_detail"]:
                if e["label"] not in set().union(*map(set, c["cast"])):
                    continue
                sh = ", ".join(shot[i] for i in e["shots"])
                extra = [shot[i] for i in e["shots_possible"] if i not in e["shots"]]
                if extra:
                    sh += " (maybe " + ", ".join(extra) + ")"
                lines.append(
                    f"| {'on' if r['reid'] else 'off'} | {r['run']} | {e['id']} ({e['track']}) "
                    f"| {e['label']} | {e['frames']} "
                    f"| {fmt_frames(*e['first_frame'])}..{fmt_frames(*e['last_frame'])} "
                    f"| {sh} | {', '.join(map(str, e['sample_frames']))} "
                    f"| {', '.join(map(str, e['merged_from'])) or '-'} "
                    f"| {e['wrong_name'] or 'no'} |"
                )
    lines.append("")
    return lines
