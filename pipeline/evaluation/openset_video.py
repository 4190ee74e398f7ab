"""Open-set identification on video, through the product: ``facepipe run`` against a gallery
of several hundred enrolled people.

One fresh ``FACEPIPE_HOME`` per rule. Its gallery: ``distractors`` LFW people (one photo
each, the first by file name, from ``lfw-pairs-subset``; the recognize stage's encoding of
it, cached under ``runs/verification/`` by :func:`pipeline.evaluation.verification.lfw_encodings`,
stored with :meth:`pipeline.store.EventStore.enroll` as ``facepipe enroll`` stores photos)
plus the two people of the Hamilton clip, enrolled by ``facepipe run --enroll`` from
``video/known/`` (the product's enrolment: HOG, 10 jitters). Then, in that home,
``facepipe run`` (a subprocess, the whole pipeline: capture, detect, track, recognize,
sink) on the Hamilton clip and on the YouTube Faces clip of Aaron Guiel, who is not
enrolled; ``facepipe events --json`` gives the events.

Expected: on the Hamilton clip both people named and nobody else (an event named in a
shot where that person is not on screen is a wrong name, by the shots and cast of
:mod:`pipeline.evaluation.tracking_pipeline`); on the Aaron Guiel clip no name at all.
Rules compared: the product's default (open-set, :mod:`pipeline.recognition.openset`)
and the fixed pair threshold it replaced (``recognition.threshold: 0.6`` explicit,
``margin: 0``, ``person_min_photos: 0``).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.datasets import REPO_ROOT as REPO
from pipeline.evaluation.common import log
from pipeline.evaluation.tracking_pipeline import (
    HAMILTON,
    HAMILTON_CAST,
    HAMILTON_CUTS,
    analyze_run,
    facepipe_env,
    run_in_home,
)

AARON = "Aaron_Guiel"
# the rule before issue 10, as configuration: a fixed pair threshold, no margin, no
# per-person thresholds
OLD_RULE = {
    "FACEPIPE__RECOGNITION__THRESHOLD": "0.6",
    "FACEPIPE__RECOGNITION__MARGIN": "0",
    "FACEPIPE__RECOGNITION__PERSON_MIN_PHOTOS": "0",
}
RULES = {"open-set (default)": {}, "pair threshold 0.60 (before)": OLD_RULE}


def distractor_people(lfw: Path, n: int, exclude: set[str]) -> list[str]:
    """The first image (by file name) of ``n`` LFW people, people sorted by name, skipping
    ``exclude`` (people who appear in the clips)."""
    from pipeline.evaluation.openset import people_of
    from pipeline.recognition.verify import load_pairs

    pairs = load_pairs(lfw / "pairs.tsv")
    people = people_of({k for p in pairs for k in (p.a, p.b)})
    chosen = [ims[0] for p, ims in sorted(people.items()) if p not in exclude]
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} LFW people to enrol, asked for {n}")
    return chosen[:n]


def store_url(env: dict[str, str]) -> str:
    """The event store of the run's ``FACEPIPE_HOME`` (what ``facepipe run`` opens there;
    the configuration reads the data directory from the process environment, not ``env``)."""
    return f"sqlite:///{Path(env['FACEPIPE_HOME']) / 'events.db'}"


def enrol_distractors(home: Path, env: dict[str, str], encodings: dict[str, Any]) -> int:
    """Store one encoding per LFW person in the home's event store (``facepipe enroll``'s
    ``EventStore.enroll``)."""
    from pipeline.evaluation.openset import person_of
    from pipeline.store import EventStore

    store = EventStore(store_url(env))
    try:
        for key, vec in encodings.items():
            store.enroll(person_of(key), [vec], [f"lfw:{key}"])
    finally:
        store.engine.dispose()
    return len(encodings)


def run_clip(
    video: Path, stream: str, env: dict[str, str], enroll: list[tuple[str, Path]], logs: Path
) -> dict[str, Any]:
    """``facepipe run VIDEO --json`` in the prepared home, then its events."""
    return run_in_home(video, stream, enroll, env, logs / f"{stream}.log")


def evaluate(
    datasets: Path, runs: Path, distractors: int, command: str = "", rules: list[str] | None = None
) -> dict[str, Any]:
    """Every rule of :data:`RULES` (or ``rules``): a fresh home with the gallery, the two
    clips; per clip the events and their names."""
    from pipeline.config import TrackerConfig
    from pipeline.evaluation.verification import lfw_encodings

    lfw = datasets / "lfw-pairs-subset"
    hamilton = datasets / "video" / HAMILTON
    known = sorted((hamilton.parent / "known").glob("*.png"))
    aaron = sorted((datasets / "youtube-faces-clips" / AARON).glob("*.avi"))[0]
    keys = distractor_people(lfw, distractors, exclude={AARON})
    enc = lfw_encodings(lfw, runs / "verification", 1, keys)
    gap = TrackerConfig().min_hits - 1
    logs = runs / "openset_video"
    logs.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "git": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "distractors": len(keys),
        "enrolled": [p.stem for p in known],
        "rules": {},
    }
    for rule in rules or list(RULES):
        with tempfile.TemporaryDirectory(prefix="facepipe-openset-") as tmp:
            home = Path(tmp)
            env = facepipe_env(home, reid=True) | RULES[rule]
            log(f"{rule}: enrolling {len(keys)} LFW distractors")
            enrol_distractors(home, env, enc)
            tag = "default" if not RULES[rule] else "before"
            clip_logs = logs / tag
            clip_logs.mkdir(parents=True, exist_ok=True)
            log(f"{rule}: facepipe run {hamilton.name}")
            ham = run_clip(hamilton, "hamilton", env, [(p.stem, p) for p in known], clip_logs)
            log(f"{rule}: facepipe run {aaron.name}")
            aar = run_clip(aaron, "aaron", env, [], clip_logs)
            why = explain_events(env)
        h = analyze_run(ham, "hamilton", gap, HAMILTON_CUTS, HAMILTON_CAST)
        a = analyze_run(aar, "aaron", gap)
        result["rules"][rule] = {
            "gallery_people": len(keys) + len(known),
            "hamilton": _brief(h, ham["wall_s"], why.get("hamilton", {})),
            "aaron": _brief(a, aar["wall_s"], why.get("aaron", {})),
        }
        log(f"{rule}: {json.dumps(result['rules'][rule])[:400]}")
    return result


def explain_events(env: dict[str, str]) -> dict[str, dict[int, dict[str, Any]]]:
    """Per stream and track: what the configured rule says about the event's stored
    samples (``Identities.explain``: nearest person, distance, threshold, margin, why)
    and the best sample's quality."""
    import sqlalchemy as sa

    from pipeline.config import load_config
    from pipeline.identities import Identities
    from pipeline.store import EventStore, samples

    cfg = load_config(None, environ=env)
    store = EventStore(store_url(env))
    out: dict[str, dict[int, dict[str, Any]]] = {}
    try:
        ids = Identities.from_config(store, cfg)
        gallery = store.gallery()
        for e in store.events():
            ident = ids.explain(e["track_uid"], gallery)
            with store.engine.connect() as conn:
                q = conn.execute(
                    sa.select(sa.func.max(samples.c.quality)).where(
                        samples.c.track_uid == e["track_uid"], samples.c.kind == "identity"
                    )
                ).scalar()
            out.setdefault(e["stream"], {})[int(e["track_uid"].rsplit("/", 1)[1])] = {
                "nearest": ident.nearest if ident else None,
                "distance": round(ident.distance, 3) if ident and ident.distance else None,
                "threshold": round(ident.threshold, 3) if ident and ident.threshold else None,
                "margin": round(ident.margin, 3) if ident and ident.margin else None,
                "why": ident.reason if ident else "no encodings",
                "best_quality": q,
                # the per-track vote: how many samples alone are nearest the same person
                "samples": ident.samples if ident else 0,
                "agreeing": round(ident.agreement * ident.samples) if ident else 0,
            }
    finally:
        store.engine.dispose()
    return out


def _brief(r: dict[str, Any], wall: float, why: dict[int, dict[str, Any]]) -> dict[str, Any]:
    named = [e for e in r["event_detail"] if not _unnamed(e["label"])]
    return {
        "events": r["events"],
        "captured": r["captured"],
        "wall_s": round(wall, 1),
        "per_person": r["per_person"],
        "named_events": dict(Counter(e["label"] for e in named)),
        "wrong_names": r.get("wrong_names"),
        "events_named": len(named),
        "detail": [
            {k: e.get(k) for k in ("id", "track", "label", "frames", "shots", "wrong_name")}
            | why.get(int(e["track"]), {})
            for e in r["event_detail"]
        ],
    }


def _vote_lines(rec: dict[str, Any]) -> list[str]:
    """What the per-track vote shows on the clips: strangers' tracks whose samples all
    agree on one enrolled person, against the enrolled people's own tracks."""
    rules = list(rec["rules"].values())
    if not rules:
        return []
    enrolled = set(rec["enrolled"])
    strangers, own = [], []
    for clip in ("hamilton", "aaron"):
        for e in rules[0][clip]["detail"]:
            n, k, who = e.get("samples", 0), e.get("agreeing", 0), e.get("nearest")
            if not n or who is None:
                continue
            wrong = clip == "aaron" or bool(e.get("wrong_name")) or who not in enrolled
            if wrong and n >= 3 and k == n:
                strangers.append(f"{clip} track {e['track']} ({who}, {k} of {n})")
            elif who in enrolled and not wrong:
                own.append(f"{clip} track {e['track']} ({who}, {k} of {n})")
    if not strangers:
        return []
    return [
        "",
        f"The per-track vote: {len(strangers)} track(s) of people who are not who their "
        "samples point to have every sample nearest the same enrolled person ("
        + ", ".join(strangers)
        + "), where the enrolled people's own tracks have "
        + (", ".join(own) or "none")
        + ". A track's samples are frames of one face under one light: they agree with each "
        "other whoever the face is, so their agreement is no evidence of who it is, and "
        "the vote never loosens the rule (the track is named from its samples' mean "
        "encoding under the same thresholds as one face).",
    ]


def _unnamed(label: str) -> bool:
    return label == "unknown" or label.startswith("unknown-")


def markdown(rec: dict[str, Any]) -> list[str]:
    """The video section of docs/openset.md."""
    lines = [
        "## Video: two enrolled people among several hundred",
        "",
        f"Command: `{rec['command']}`; run {rec['date']} (commit {rec['git']}, load average "
        f"{rec['loadavg_start'][0]} at the start). "
        "Library: `pipeline/evaluation/openset_video.py`.",
        "",
        f"Gallery: {rec['distractors']} LFW people (one photo each, the first by file name; "
        "the recognize stage's 1-jitter encoding, stored as `facepipe enroll` stores photos) "
        f"plus {', '.join(rec['enrolled'])} (`facepipe run --enroll` from `video/known/`, "
        "10 jitters). Each rule in a fresh `FACEPIPE_HOME`: `facepipe run` on the Hamilton "
        "clip, then on the YouTube Faces clip `Aaron_Guiel5.avi` (Aaron Guiel is not "
        "enrolled), default configuration otherwise. A Hamilton event named in a shot where "
        "that person is not on screen is a wrong name (shots and cast as in "
        "docs/tracking.md); on the Aaron Guiel clip any name is wrong.",
        "",
        "| rule | gallery | Hamilton: events | named (per person) "
        "| wrong names (certain / possible) | Aaron Guiel: events | named |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for rule, r in rec["rules"].items():
        h, a = r["hamilton"], r["aaron"]
        per = ", ".join(f"{k} {v}" for k, v in sorted(h["named_events"].items())) or "none"
        w = h["wrong_names"] or {}
        lines.append(
            f"| {rule} | {r['gallery_people']} | {h['events']} | {per} "
            f"| {w.get('certain', 0)} / {w.get('possible', 0)} | {a['events']} "
            f"| {a['events_named']}"
            + (
                " (" + ", ".join(f"{k} {v}" for k, v in sorted(a["named_events"].items())) + ")"
                if a["events_named"]
                else ""
            )
            + " |"
        )
    for rule, r in rec["rules"].items():
        h, a = r["hamilton"], r["aaron"]
        named = [p for p in rec["enrolled"] if h["named_events"].get(p)]
        missed = [p for p in rec["enrolled"] if not h["named_events"].get(p)]
        wrong = sum((h["wrong_names"] or {}).values()) + a["events_named"]
        lines += [
            "",
            f"{rule}: "
            + (f"{', '.join(named)} named" if named else "neither enrolled person named")
            + (f", {', '.join(missed)} not" if missed and named else "")
            + f"; {wrong} wrong name(s) on the two clips"
            + (", Aaron Guiel unknown." if not a["events_named"] else "."),
        ]
    lines += _vote_lines(rec)
    lines += [
        "",
        "Why, per event (the rule's own explanation of the event's stored samples, "
        "`Identities.explain`, before the face-quality gate: an event whose best face "
        "quality is below `recognition.min_name_quality`, 0.05, is never named; and the "
        "per-track vote: of the track's identity samples, how many alone have the same "
        "nearest person as the track's mean encoding):",
        "",
    ]
    for rule, r in rec["rules"].items():
        lines.append(f"- {rule}:")
        for clip in ("hamilton", "aaron"):
            for e in r[clip]["detail"]:
                if "why" not in e:
                    continue
                shots = f", shot(s) {', '.join(map(str, e['shots']))}" if e.get("shots") else ""
                wrong = (
                    " **wrong name**"
                    if e.get("wrong_name") or clip == "aaron" and not (_unnamed(e["label"]))
                    else ""
                )
                vote = (
                    f"; samples nearest {e['nearest']} alone: {e['agreeing']} of {e['samples']}"
                    if e.get("samples") and e.get("nearest")
                    else ""
                )
                lines.append(
                    f"  - {clip} track {e['track']} ({e['frames']} frames{shots}; quality "
                    f"{e['best_quality']:.2f}): {e['label']}{wrong}; {e['why']}{vote}"
                )
    return lines
