"""The records that cross the queues: frames and faces, and the stages' messages.

A :class:`FrameRecord` describes one captured frame: where it came from (stream,
capture session, sequence number, capture time), where its pixels are (a Redis key
holding the encoded image) and what the stages found in it (a list of :class:`Face`).
Every stage reads a ``FrameRecord`` and writes one; on the wire it is plain JSON
(``to_json`` / ``from_json``), never pickle.

The other messages wrap or point at frame records: :class:`FrameBatch` (the detect
stage's jobs: one or more consecutive frames of a stream; the recognize and attributes
stages' jobs: the samples one hold of the track stage chose), :class:`TrackJob` (a stream
has work for the track stage), :class:`Encodings` (the recognize stage's encodings of
sampled faces, for the track stage's re-identification) and the sink's messages
(:class:`Observations`, :class:`Samples`, :class:`Merge`, tagged by ``type`` on the
wire; :func:`sink_message_from_dict` reads any of them). Every ``from_dict`` rejects an
unknown or a missing field with a ``ValueError`` naming it.

Boxes are ``(x, y, w, h)`` in pixels of the original frame (top-left corner, width,
height). Adapters convert each model's native output once, at the edge
(``Face.from_trbl`` for dlib/face_recognition's ``(top, right, bottom, left)``).
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

Box = tuple[int, int, int, int]


def checked_fields(cls: type, data: Any) -> dict[str, Any]:
    """A copy of ``data``, a JSON object for dataclass ``cls``, with every field known and
    every required field present; a ``ValueError`` names the offending field(s)."""
    name = cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"a {name} must be a JSON object, got {type(data).__name__}")
    spec = fields(cls)
    unknown = set(data) - {f.name for f in spec}
    if unknown:
        raise ValueError(f"unknown {name} field(s): {sorted(unknown)}")
    missing = [
        f.name
        for f in spec
        if f.default is MISSING and f.default_factory is MISSING and f.name not in data
    ]
    if missing:
        raise ValueError(f"missing {name} field(s): {missing}")
    return dict(data)


@dataclass
class Face:
    """One face in one frame, filled in stage by stage."""

    box: Box
    score: float = 1.0
    landmarks: list[tuple[float, float]] | None = None
    track_id: int | None = None
    # set by the track stage when this face is sampled for recognition/attributes
    quality: float | None = None
    # recognition
    encoding: list[float] | None = None
    name: str | None = None
    distance: float | None = None
    # attributes
    age: float | None = None
    gender: str | None = None
    gender_confidence: float | None = None

    def __post_init__(self) -> None:
        self.box = tuple(int(round(v)) for v in self.box)  # type: ignore[assignment]
        if len(self.box) != 4:
            raise ValueError(f"box must be (x, y, w, h), got {self.box!r}")
        self.score = float(self.score)

    @classmethod
    def from_trbl(cls, trbl: tuple[int, int, int, int], score: float = 1.0) -> Face:
        """Adapter for dlib/face_recognition's ``(top, right, bottom, left)`` boxes."""
        top, right, bottom, left = trbl
        return cls(box=(left, top, right - left, bottom - top), score=score)

    @classmethod
    def from_xyxy(cls, xyxy: tuple[float, float, float, float], score: float = 1.0) -> Face:
        x1, y1, x2, y2 = xyxy
        return cls(box=(x1, y1, x2 - x1, y2 - y1), score=score)

    def trbl(self) -> tuple[int, int, int, int]:
        x, y, w, h = self.box
        return (y, x + w, y + h, x)

    def xyxy(self) -> tuple[int, int, int, int]:
        x, y, w, h = self.box
        return (x, y, x + w, y + h)

    def scaled(self, sx: float, sy: float) -> Face:
        """A copy with the box and landmarks multiplied by ``sx`` (x) and ``sy`` (y)."""
        x, y, w, h = self.box
        data = self.to_dict()
        data["box"] = (x * sx, y * sy, w * sx, h * sy)
        if self.landmarks is not None:
            data["landmarks"] = [(px * sx, py * sy) for px, py in self.landmarks]
        return Face.from_dict(data)

    def clipped(self, width: int, height: int) -> Face:
        """A copy with the box clipped to an image of ``width`` x ``height``."""
        x1, y1, x2, y2 = self.xyxy()
        x1, y1 = max(0, x1), max(0, y1)
        x2, y2 = min(width, x2), min(height, y2)
        data = self.to_dict()
        data["box"] = (x1, y1, max(0, x2 - x1), max(0, y2 - y1))
        return Face.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        # hand-written (not dataclasses.asdict, which deep-copies recursively and was
        # ~0.7 ms per frame record in the track stage's profile)
        data: dict[str, Any] = {"box": list(self.box), "score": self.score}
        for name in _FACE_OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.landmarks is not None:
            data["landmarks"] = [list(p) for p in self.landmarks]
        if self.encoding is not None:
            data["encoding"] = list(self.encoding)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Face:
        data = checked_fields(cls, data)
        if data.get("landmarks") is not None:
            data["landmarks"] = [tuple(p) for p in data["landmarks"]]
        return cls(**data)


_FACE_OPTIONAL = (
    "track_id", "quality", "name", "distance", "age", "gender", "gender_confidence",
)  # fmt: skip


@dataclass
class FrameRecord:
    """One captured frame and what the stages found in it."""

    stream: str
    seq: int
    ts: float  # capture time, seconds since the epoch
    session: str = ""  # id of one capture run of the stream; keeps track ids unique
    key: str | None = None  # Redis key of the encoded image
    width: int = 0
    height: int = 0
    live: bool = False
    faces: list[Face] = field(default_factory=list)
    dropped: str | None = None  # reason, when a stage dropped this frame
    ended_tracks: list[int] = field(default_factory=list)
    # tracks confirmed on this frame: {track_id: [first capture ts, frames so far, first seq]}
    track_starts: dict[int, list[float]] = field(default_factory=dict)
    last: bool = False  # the last frame of a finite source
    # False: detection skipped this frame; the track stage fills ``faces`` with the
    # tracker's predicted boxes of its confirmed tracks
    detected: bool = True
    cut: bool = False  # the first frame of a new shot (pipeline/shots.py): tracks end here
    # why detection skipped it: "schedule" (detector.every_n_frames) or "load" (a live
    # camera whose detections in flight were at their bound, pipeline/capture.py)
    undetected: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "seq": self.seq,
            "ts": self.ts,
            "session": self.session,
            "key": self.key,
            "width": self.width,
            "height": self.height,
            "live": self.live,
            "faces": [f.to_dict() for f in self.faces],
            "dropped": self.dropped,
            "ended_tracks": list(self.ended_tracks),
            "track_starts": {k: list(v) for k, v in self.track_starts.items()},
            "last": self.last,
            "detected": self.detected,
            "cut": self.cut,
            "undetected": self.undetected,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameRecord:
        data = checked_fields(cls, data)
        data["faces"] = [Face.from_dict(f) for f in data.get("faces", [])]
        # JSON object keys are strings
        data["track_starts"] = {int(k): v for k, v in data.get("track_starts", {}).items()}
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> FrameRecord:
        return cls.from_dict(json.loads(text))

    def track_uid(self, track_id: int) -> str:
        """Globally unique id of a track: stream, capture session, track number."""
        return track_uid(self.stream, self.session, track_id)


def track_uid(stream: str, session: str, track_id: int) -> str:
    """Globally unique id of a track: ``stream/session/track number``."""
    return f"{stream}/{session}/{track_id}"


# ----- stage messages ------------------------------------------------------------------


@dataclass
class TrackJob:
    """A track job: stream ``stream``/``session`` may have frames or encodings waiting."""

    stream: str
    session: str

    def to_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "session": self.session}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrackJob:
        return cls(**checked_fields(cls, data))


@dataclass
class Encodings:
    """Encodings of sampled faces, for the track stage's tracker: those of one recognize
    job (the samples of one hold of the track stage, in order), ``seq`` the first sampled
    frame's.

    Each face carries its ``track_id``, ``encoding`` and ``quality`` (and its box).
    """

    stream: str
    session: str
    seq: int
    faces: list[Face] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "session": self.session,
            "seq": self.seq,
            "faces": [f.to_dict() for f in self.faces],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Encodings:
        data = checked_fields(cls, data)
        data["faces"] = [Face.from_dict(f) for f in data.get("faces", [])]
        return cls(**data)


@dataclass
class FrameBatch:
    """Frame records of one stream session in one job: consecutive frames for the detect
    stage (the capture batches them while the detect queue has jobs waiting), or the
    samples one hold of the track stage chose, one record per sampled frame, for the
    recognize and attributes stages.

    On the wire a batch of one frame is that :class:`FrameRecord` itself (as every detect
    job was before batching), a longer one ``{"records": [FrameRecord, ...]}``.
    """

    records: list[FrameRecord]

    def __post_init__(self) -> None:
        if not self.records:
            raise ValueError("a FrameBatch holds at least one frame")
        first = self.records[0]
        for rec in self.records[1:]:
            if (rec.stream, rec.session) != (first.stream, first.session):
                raise ValueError("the frames of a FrameBatch are of one stream session")

    @property
    def stream(self) -> str:
        return self.records[0].stream

    @property
    def session(self) -> str:
        return self.records[0].session

    @property
    def seq(self) -> int:
        return self.records[0].seq

    def to_dict(self) -> dict[str, Any]:
        if len(self.records) == 1:
            return self.records[0].to_dict()
        return {"records": [r.to_dict() for r in self.records]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrameBatch:
        if isinstance(data, dict) and "records" in data:
            data = checked_fields(cls, data)
            if not isinstance(data["records"], list):
                raise ValueError("FrameBatch field 'records' must be a list")
            return cls([FrameRecord.from_dict(r) for r in data["records"]])
        return cls([FrameRecord.from_dict(data)])


class SinkMessage:
    """Base of the sink's messages; ``to_dict`` adds the ``type`` tag ``TYPE``."""

    TYPE: ClassVar[str] = ""
    _types: ClassVar[dict[str, type[SinkMessage]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        SinkMessage._types[cls.TYPE] = cls

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.TYPE, **self._fields()}

    def _fields(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SinkMessage:
        """Any sink message, by its ``type`` tag (on a subclass: that type only)."""
        if not isinstance(data, dict):
            raise ValueError(f"a sink message must be a JSON object, got {type(data).__name__}")
        tag = data.get("type")
        sub = SinkMessage._types.get(tag) if isinstance(tag, str) else None
        if sub is None or (cls is not SinkMessage and sub is not cls):
            expected = [cls.TYPE] if cls is not SinkMessage else sorted(SinkMessage._types)
            raise ValueError(f"sink message field 'type' is {tag!r}; expected one of {expected}")
        body = {k: v for k, v in data.items() if k != "type"}
        return sub._from_fields(checked_fields(sub, body))

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> SinkMessage:
        return cls(**data)


@dataclass
class Observations(SinkMessage):
    """Tracked frames of one stream, in order (the track stage's output)."""

    TYPE: ClassVar[str] = "observations"
    records: list[FrameRecord]

    def _fields(self) -> dict[str, Any]:
        return {"records": [r.to_dict() for r in self.records]}

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> Observations:
        return cls([FrameRecord.from_dict(r) for r in data["records"]])


@dataclass
class Samples(SinkMessage):
    """Sampled faces of one stream session's frames (one record per sampled frame: the
    samples one hold of the track stage chose) with what a stage found: ``identity``
    (recognize), ``attributes`` (age/gender) or ``identity+attributes`` (both, from the
    attributes stage, which gets the recognize stage's output: one sink job per recognize
    job). ``records`` may be given as one :class:`FrameRecord`."""

    TYPE: ClassVar[str] = "samples"
    KINDS: ClassVar[tuple[str, ...]] = ("identity", "attributes", "identity+attributes")
    kind: Literal["identity", "attributes", "identity+attributes"]
    records: list[FrameRecord]

    def __post_init__(self) -> None:
        if self.kind not in self.KINDS:
            raise ValueError(f"Samples field 'kind' must be one of {self.KINDS}, got {self.kind!r}")
        if isinstance(self.records, FrameRecord):
            self.records = [self.records]
        if not isinstance(self.records, list) or not self.records:
            raise ValueError("Samples field 'records' must be a non-empty list of frame records")
        first = self.records[0]
        for rec in self.records:
            if not isinstance(rec, FrameRecord):
                raise ValueError(f"Samples holds frame records, not {type(rec).__name__}")
            if (rec.stream, rec.session) != (first.stream, first.session):
                raise ValueError("the records of a Samples message are of one stream session")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of samples this message holds: ``identity``, ``attributes`` or both."""
        return tuple(self.kind.split("+"))

    def _fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "records": [r.to_dict() for r in self.records]}

    @classmethod
    def _from_fields(cls, data: dict[str, Any]) -> Samples:
        records = data["records"]
        if not isinstance(records, list):
            raise ValueError("Samples field 'records' must be a list")
        return cls(data["kind"], [FrameRecord.from_dict(r) for r in records])


@dataclass
class Merge(SinkMessage):
    """The tracker re-identified track ``from_id`` as the continuation of ``into_id``."""

    TYPE: ClassVar[str] = "merge"
    stream: str
    session: str
    from_id: int
    into_id: int

    def __post_init__(self) -> None:
        for name in ("from_id", "into_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"Merge field {name!r} must be a track id, got {value!r}")

    def _fields(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "session": self.session,
            "from_id": self.from_id,
            "into_id": self.into_id,
        }


sink_message_from_dict = SinkMessage.from_dict


def iso_utc(ts: float | None) -> str | None:
    """A capture time (seconds since the epoch) as ISO 8601 UTC, milliseconds, ``Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
