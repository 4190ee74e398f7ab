"""Response and request bodies of the HTTP API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.record import iso_utc


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(Model):
    detail: str = Field(description="what went wrong")


class Event(Model):
    """One person event: one track of one face on one stream."""

    id: int
    person: str | None = Field(description="enrolled name, or null when unrecognised")
    unknown_id: str | None = Field(description="the unknown-N of an unrecognised person")
    label: str = Field(description="person, else unknown-N, else 'unknown'")
    person_confidence: float | None = Field(description="share of the samples that agree")
    person_distance: float | None
    stream: str
    session: str
    track: int
    first_seen: str = Field(description="ISO 8601 UTC")
    last_seen: str = Field(description="ISO 8601 UTC")
    duration_s: float
    first_frame: int | None = Field(description="frame number within the capture session")
    last_frame: int | None
    video_start_s: float | None = Field(
        None,
        description="a video file's event: seconds into the file of its first sighting "
        "(first_frame / the file's frame rate); null for live sources",
    )
    video_end_s: float | None = Field(None, description="the same of its last sighting")
    frames: int
    ended: bool
    age: float | None
    age_spread: float | None
    gender: Literal["male", "female", "unknown"]
    gender_confidence: float | None
    identity_samples: int
    attribute_samples: int
    snapshot_url: str | None = Field(description="the face crop (JPEG), when the sink kept one")
    context_url: str | None = Field(
        None,
        description="the whole frame of the snapshot with its faces' boxes and names drawn "
        "(JPEG), when the sink kept one (store.context_images)",
    )

    @classmethod
    def from_row(cls, ev: dict[str, Any]) -> Event:
        return cls(
            id=ev["id"],
            person=ev["person"],
            unknown_id=ev.get("unknown_id"),
            label=ev["person"] or ev.get("unknown_id") or "unknown",
            person_confidence=ev["person_confidence"],
            person_distance=ev.get("person_distance"),
            stream=ev["stream"],
            session=ev["session"],
            track=ev["track_id"],
            first_seen=iso_utc(ev["first_seen"]) or "",
            last_seen=iso_utc(ev["last_seen"]) or "",
            duration_s=round(ev["last_seen"] - ev["first_seen"], 3),
            first_frame=ev.get("first_frame"),
            last_frame=ev.get("last_frame"),
            video_start_s=ev.get("video_start_s"),
            video_end_s=ev.get("video_end_s"),
            frames=ev["n_frames"],
            ended=bool(ev["ended"]),
            age=None if ev["age"] is None else round(ev["age"], 1),
            age_spread=None if ev["age_spread"] is None else round(ev["age_spread"], 1),
            gender=ev["gender"] if ev["gender"] in ("male", "female") else "unknown",
            gender_confidence=ev["gender_confidence"],
            identity_samples=ev["identity_samples"],
            attribute_samples=ev["attribute_samples"],
            snapshot_url=f"/api/events/{ev['id']}/snapshot" if ev["snapshot"] else None,
            context_url=f"/api/events/{ev['id']}/context" if ev.get("context") else None,
        )


class EventPage(Model):
    items: list[Event]
    total: int = Field(description="events matching the filters")
    limit: int
    offset: int


class Sample(Model):
    kind: Literal["identity", "attributes"]
    seq: int = Field(description="frame number within the capture session")
    ts: str
    quality: float | None
    name: str | None = Field(description="identity: nearest enrolled name when sampled")
    distance: float | None
    age: float | None
    p_female: float | None


class EventDetail(Event):
    samples: list[Sample]


class Change(Model):
    """One event a correction relabelled."""

    event: int
    track_uid: str
    old: str
    new: str
    reason: str


class Correction(Model):
    result: str
    changes: list[Change]


class Erased(Model):
    result: str
    events: int
    samples: int
    negatives: int
    snapshot_files: int = Field(description="image files deleted: face crops and context images")


class Person(Model):
    name: str
    photos: int = Field(description="enrolled encodings")
    events: int
    first_seen: str | None
    last_seen: str | None
    created: str


class Unknown(Model):
    name: str = Field(description="unknown-N")
    events: int
    streams: list[str]
    first_seen: str
    last_seen: str
    snapshot_url: str | None


class NameBody(Model):
    name: str = Field(description="a person's name", min_length=1, max_length=200)


class MergeBody(Model):
    other: str = Field(
        description="the person or unknown-N that joins this one", min_length=1, max_length=200
    )


class Visit(Model):
    """Consecutive events of one identity on one stream (a stay in front of a camera)."""

    stream: str
    first_seen: str
    last_seen: str
    duration_s: float
    events: list[int]


class Visits(Model):
    name: str
    visits: list[Visit]


class SearchHit(Model):
    distance: float = Field(description="distance of the track's mean encoding to the photo's")
    event: Event


class SearchResult(Model):
    face: tuple[int, int, int, int] = Field(description="the photo's face box x, y, w, h")
    max_distance: float
    searched_tracks: int
    seconds: float = Field(description="time of the index query (encoding excluded)")
    items: list[SearchHit]


class StreamSession(Model):
    session: str
    source: str | None
    live: bool | None
    started: str | None
    status: Literal["capturing", "finishing", "done", "gone"]
    captured: int
    processed: int
    dropped: int


class AddedCamera(Model):
    """A camera added at run time (POST /api/streams) and what its capture process said."""

    source: str = Field(description="its source, any URL password as ***")
    added: str | None = Field(description="when it was added (ISO 8601 UTC)")
    state: Literal["waiting", "starting", "capturing", "ended", "stopped", "failed"] = Field(
        description="waiting: no capture process has taken it yet (is one running?)"
    )
    error: str | None = Field(None, description="why it failed")
    session: str | None = Field(None, description="its current capture session")
    owner: str | None = Field(None, description="the capture process running it")


class StreamAdd(Model):
    """A camera to add: the keys of a ``cameras:`` entry of the config, and its name."""

    name: str = Field(description="the stream name (1-64 of A-Z a-z 0-9 _ . -)")
    source: str = Field(description="video file, webcam index or rtsp/http URL")
    every_n_frames: int | None = Field(None, description="its detection rate")
    capture: dict[str, Any] = Field(
        default_factory=dict, description="capture keys that differ for it (max_queue, ...)"
    )


class Stream(Model):
    name: str
    status: Literal["capturing", "finishing", "done", "idle", "unknown", "starting", "failed"]
    events: int
    first_seen: str | None
    last_seen: str | None
    sessions: list[StreamSession]
    added: AddedCamera | None = Field(
        None, description="set when the stream is a camera added at run time"
    )


class Component(Model):
    ok: bool
    detail: str


class Health(Model):
    status: Literal["ok", "degraded", "down"]
    store: Component
    redis: Component
    workers: dict[str, int] = Field(description="live workers per stage (empty without Redis)")
    streams: dict[str, Component] = Field(
        default_factory=dict,
        description="per stream now captured from a live source (ok while it delivers "
        "frames) and per camera added at run time (not ok when it failed or no follower "
        "runs it); empty without Redis",
    )
