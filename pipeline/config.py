"""Configuration: one YAML file, validated, with environment overrides.

Precedence (highest first): environment variables, the YAML file given with
``--config`` / ``FACEPIPE_CONFIG``, the defaults below (which ``config/facepipe.yaml``
documents key by key).

Environment variables:

* ``REDIS_URL`` sets ``redis.url``; ``FACEPIPE_HOME`` sets the data directory (event
  database and snapshots, default ``~/.local/share/facepipe``).
* ``FACEPIPE__SECTION__KEY=value`` sets any key, e.g. ``FACEPIPE__DETECTOR__BACKEND=mtcnn``
  or ``FACEPIPE__WORKERS__DETECT=3``; values are parsed as YAML scalars.

Backend sections (``detector``, ``attributes``) name a backend and give its options:
the backend name must be one the registry lists, and ``options`` is validated by that
backend's ``Options`` model (so ``detector.options.upsampel`` is an error that names it).
The backend module is imported to find the model, never its heavy libraries (those load
when the backend is created). Options the pipeline uses unless told otherwise (the
section's ``pipeline_options``, e.g. blazeface's ``tile_size: 384``) apply to their
backend only. When the environment switches a section's backend, the file's options for
the other backend are dropped.

Unknown keys, in the file or in the environment, are errors that name the key.

The environment is parsed here rather than with pydantic-settings: that library ignores
``FACEPIPE__`` variables whose section is unknown (a misspelt section would be silently
dropped), leaves ``null`` as the string "null", and would not say which source a bad
value came from.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.recognition.thresholds import operating_points
from pipeline.registry import BackendError, BackendOptions, Registry

if TYPE_CHECKING:
    from pipeline.recognition.openset import OpenSetRule


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BackendSection(Section):
    """A section that chooses a backend of a registry and gives that backend's options."""

    registry_package: ClassVar[str]
    # options the pipeline uses for a backend unless the config sets them
    pipeline_options: ClassVar[dict[str, dict[str, Any]]] = {}

    backend: str
    options: SerializeAsAny[BackendOptions] = Field(
        default_factory=dict,
        validate_default=True,
        description='the backend\'s options (README "Backend options" lists them)',
    )

    @classmethod
    def registry(cls) -> Registry[Any]:
        return importlib.import_module(cls.registry_package).registry

    @classmethod
    def resolve_backend(cls, name: str) -> str:
        """The backend a configured name stands for (itself; see DetectorConfig)."""
        return name

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        try:
            cls.registry().get(name)  # imports the backend's module, not its libraries
        except BackendError as exc:
            raise ValueError(str(exc)) from None
        return name

    @field_validator("options", mode="plain")
    @classmethod
    def _backend_options(cls, value: Any, info: ValidationInfo) -> BackendOptions:
        backend = info.data.get("backend")
        if backend is None:  # the backend itself is invalid: that error says so
            return BackendOptions()
        options_cls = cls.registry().get(backend).Options
        if isinstance(value, options_cls):
            return value
        if isinstance(value, BackendOptions):
            value = value.model_dump(exclude_unset=True)
        if not isinstance(value, dict):
            raise PydanticCustomError("dict_type", "a mapping of option: value expected")
        try:
            return options_cls.model_validate({**cls.pipeline_options.get(backend, {}), **value})
        except ValidationError as exc:
            items = [
                (
                    ".".join(str(p) for p in err["loc"]),
                    f"unknown option of backend {backend!r} (its options: "
                    f"{', '.join(options_cls.model_fields) or 'none'})"
                    if err["type"] == "extra_forbidden"
                    else err["msg"],
                )
                for err in exc.errors()
            ]
            raise PydanticCustomError(
                "backend_options",
                "{problems}",
                {"problems": "; ".join(f"{k}: {m}" for k, m in items), "items": items},
            ) from None


class RedisConfig(Section):
    url: str | None = Field(
        None, description="redis:// or unix:// URL; null: `facepipe run` starts a private server"
    )
    prefix: str = Field("facepipe", description="prefix of every key and queue name")
    frame_ttl_s: int = Field(300, ge=5, description="seconds an encoded frame lives in Redis")
    session_ttl_s: int = Field(
        86400,
        ge=60,
        description="seconds a stream session's keys (frame counts, detect->track buffer, "
        "tracker state, encodings) outlive its last write; leftovers of an abandoned session "
        "expire",
    )
    reconnect_max_s: float = Field(
        5.0,
        gt=0,
        description="cap of the backoff between reconnect attempts while Redis is down "
        "(exponential from 0.1 s, with jitter)",
    )
    stream_retention_s: int | None = Field(
        30 * 86400,
        ge=60,
        description="seconds a stream with no session left in Redis keeps its own metric "
        'series; then they are folded into stream="(retired)" (totals kept, the metrics '
        "hashes stay bounded when stream names come and go); null: keep them forever",
    )


class CaptureConfig(Section):
    jpeg_quality: int = Field(90, ge=10, le=100)
    frame_format: Literal["auto", "jpeg", "raw"] = Field(
        "auto",
        description="how the capture stores the frames it decodes in Redis: jpeg "
        "(jpeg_quality), raw (BGR pixels: no JPEG encoding in the capture nor decoding in "
        "each stage, ~17x the bytes), auto: raw when Redis is reached over a unix socket "
        "(every reader is on this machine: `facepipe run`'s own Redis), else jpeg. MJPEG "
        "cameras passed through stay JPEG",
    )
    resize_width: int | None = Field(
        None, ge=64, description="downscale wider frames to this width before encoding"
    )
    mjpeg_passthrough: bool = Field(
        True,
        description="read http(s) MJPEG cameras' JPEGs as they come and store them in Redis "
        "as sent (no decoding and re-encoding in the capture; frames wider than "
        "resize_width are still re-encoded); false: every URL through OpenCV/FFmpeg",
    )
    max_queue: int = Field(
        16,
        ge=1,
        description="detect-queue depth (frames) at which files wait and live sources skip "
        "detection on their frames (the tracker predicts their faces)",
    )
    live_max_in_flight: int = Field(
        1,
        ge=1,
        description="a live source's frames in detection at most (sent or about to be, not "
        "yet detected); a frame due for detection beyond that skips it (undetected: load), "
        "so each camera's detection rate adapts to what the machine can do (1: at most "
        "every other frame; 2 lets an idle machine detect every frame of a camera)",
    )
    max_undetected: int = Field(
        5,
        ge=0,
        description="a live source's frames in a row without detection at most (at least "
        "detector.every_n_frames - 1); then its next frame is detected even if the detect "
        "queue holds max_queue frames (up to twice that), or, with live_max_in_flight frames "
        "of its own in detection, dropped (backpressure)",
    )
    max_frame_age_s: float = Field(
        2.0, gt=0, description="live frames older than this when detection starts are dropped"
    )
    realtime: bool = Field(False, description="pace video files at their own frame rate")
    reconnect_s: float = Field(2.0, ge=0, description="wait before reopening a failed live source")
    reconnect_max_s: float = Field(
        10.0,
        gt=0,
        description="cap of the backoff between attempts to reopen a live source that is down "
        "(exponential from reconnect_s, with jitter); live sources are retried forever",
    )
    timeout_s: float = Field(
        10.0,
        gt=0,
        description="seconds a network camera may take to open or to send the next frame "
        "before it counts as down",
    )
    batch_frames: int = Field(
        8,
        ge=1,
        le=64,
        description="frames per detect job at most (files; live sources send a job per "
        "frame): while the detect queue has jobs waiting, consecutive frames of a file go "
        "out as one job (1: a job per frame)",
    )
    batch_wait_s: float = Field(
        0.1,
        ge=0,
        description="a frame of a file paced at its frame rate (realtime) waits at most "
        "this long for the rest of its detect job's frames",
    )
    shot_cut_threshold: float | None = Field(
        0.4,
        gt=0,
        le=1,
        description="hue/saturation histogram distance of consecutive frames that marks a "
        "shot cut (every track ends there); null: never",
    )


class CameraConfig(Section):
    """One camera of ``cameras:``; its ``capture`` keys override the ``capture`` section."""

    source: str = Field(
        ..., min_length=1, description="video file, webcam index (0, 1, ...) or rtsp/http URL"
    )
    enabled: bool = Field(True, description="false: kept in the config but not run")
    every_n_frames: int | None = Field(
        None, ge=1, description="detection rate of this camera (default detector.every_n_frames)"
    )
    capture: dict[str, Any] = Field(
        default_factory=dict,
        description="keys of the capture section that differ for this camera "
        "(realtime, max_queue, resize_width, jpeg_quality, reconnect_s, ...)",
    )

    @field_validator("capture")
    @classmethod
    def _capture_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(CaptureConfig.model_fields))
        if unknown:
            raise ValueError(
                f"unknown capture key(s) {', '.join(unknown)} (capture keys: "
                f"{', '.join(CaptureConfig.model_fields)})"
            )
        CaptureConfig.model_validate(value)  # each value checked as the capture section does
        return value


class DetectorConfig(BackendSection):
    registry_package = "pipeline.detectors"
    # blazeface also runs on overlapping 384-px tiles: 25-40 px faces in 640-px frames;
    # yunet sees at most 480 px (a 640-px frame at 0.75: more accurate than tiled blazeface
    # at less CPU on WIDER, docs/detectors.md; null: the frame's own resolution)
    pipeline_options = {"blazeface": {"tile_size": 384}, "yunet": {"max_side": 480}}

    backend: str = Field(
        "auto",
        validate_default=True,
        description="detector backend (facepipe backends); auto: yunet where its wheel is "
        "installed (CPython 3.11 on x86-64 Linux), else blazeface (docs/detectors.md)",
    )

    @classmethod
    def resolve_backend(cls, name: str) -> str:
        """``auto``: the first installed backend of ``pipeline.detectors.AUTO_ORDER``."""
        from pipeline.detectors import resolve

        return resolve(name)

    @field_validator("backend", mode="before")
    @classmethod
    def _resolve_auto(cls, name: Any) -> Any:
        """``auto`` becomes the backend it picks here, so options, logs and the summary
        name the real one."""
        return cls.resolve_backend(name) if isinstance(name, str) else name

    min_size: int = Field(0, ge=0, description="ignore faces shorter than this (pixels)")
    every_n_frames: int = Field(
        1,
        ge=1,
        description="run detection on every n-th frame; on the others the tracker predicts "
        "the faces (fewer detect jobs, identities sampled from detected frames only)",
    )


class TrackerConfig(Section):
    model: Literal["kalman", "iou"] = Field(
        "kalman", description="kalman: motion-predicted IoU + gating; iou: greedy IoU"
    )
    iou_threshold: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="iou: minimum IoU to continue a track; kalman: IoU with the predicted box "
        "that admits a tentative track's match (confirmed ones are gated by the motion model)",
    )
    max_missed: int = Field(15, ge=0, description="frames a track may go undetected before it ends")
    min_hits: int = Field(
        3, ge=1, description="frames a face must be seen in before its track becomes an event"
    )
    max_tentative_missed: int = Field(
        1, ge=0, description="kalman: detection runs a not yet confirmed track may miss"
    )
    gap_timeout_s: float = Field(
        10.0, gt=0, description="seconds to wait for a missing frame before skipping it"
    )
    reid_threshold: float = Field(
        0.5,
        gt=0,
        lt=2,
        description="kalman: max encoding distance for a new track to continue an earlier one",
    )
    reid_margin: float = Field(
        0.1,
        ge=0,
        lt=2,
        description="kalman: a merge needs the candidate nearer than any other track by this",
    )
    reid_window: int = Field(
        60,
        ge=0,
        description="kalman: frames between an earlier track's last sighting and a new "
        "track's first within which they may be merged by appearance (0: never)",
    )


class SamplingConfig(Section):
    max_samples: int = Field(
        5, ge=1, description="recognition/attribute samples per track (first one at birth)"
    )
    every_n_frames: int = Field(
        5, ge=1, description="window of frames whose best face becomes a track's next sample"
    )
    min_face_px: int = Field(
        24, ge=0, description="faces smaller than this are tracked but not sampled"
    )
    settle_after: int | None = Field(
        3,
        ge=1,
        description="a track whose recognized samples gave one name this many times is not "
        "sampled again (its name is settled; age/gender come with the same samples); "
        "null: always up to max_samples",
    )
    max_in_flight: int | None = Field(
        None,
        ge=1,
        description="kalman tracker: samples of a track sent to recognition and not yet "
        "answered; the next one waits (the best face of a longer window) until an answer "
        "is back, so that a settled name stops the sampling in time. Which faces are "
        "sampled then depends on the recognize stage's speed (2 cost a short track's name "
        "in docs/benchmarks.md); null: no limit",
    )


class RecognitionConfig(Section):
    threshold: float | None = Field(
        None,
        gt=0,
        lt=2,
        description="max encoding distance to accept a gallery match; null: the point "
        "calibrated for num_jitters and flip where ~1 % of impostor pairs are accepted "
        "(pipeline/recognition/thresholds.py)",
    )
    num_jitters: int = Field(1, ge=1, le=100, description="dlib encoder re-samplings per face")
    engine: Literal["onnx", "dlib"] = Field(
        "onnx",
        description="what runs dlib's 128-d encoder network: onnx (onnxruntime, the same "
        "weights and encodings at a few ms per face) or dlib (its own code, ~100 ms per face "
        "on 2-core machines)",
    )
    flip: bool = Field(
        False,
        description="average each sample's encoding with its mirror image's (2x the "
        "encoding cost; a lower calibrated threshold, docs/recognition.md)",
    )
    enroll_jitters: int = Field(
        10, ge=1, le=100, description="re-samplings per enrolment photo (a steadier template)"
    )
    unknown_threshold: float = Field(
        0.5, gt=0, lt=2, description="max distance of an unknown track to an unknown-N cluster"
    )
    min_unknown_quality: float = Field(
        0.05, ge=0, le=1, description="best face quality a track needs to join an unknown-N"
    )
    unknown_margin: float = Field(
        0.1,
        ge=0,
        lt=2,
        description="an unknown track nearly as close to a second unknown-N as to the "
        "nearest (within this distance) joins neither",
    )
    min_name_quality: float = Field(
        0.05, ge=0, le=1, description="best face quality a track needs to be given a name"
    )
    upscale_below_px: int = Field(
        80, ge=0, description="faces shorter than this are upscaled before encoding"
    )
    target_fpir: float | None = Field(
        0.01,
        gt=0,
        lt=1,
        description="open-set rule: the share of not-enrolled people who may be given a "
        "name; the score threshold is calibrated per gallery size to keep it "
        "(pipeline/recognition/openset.py); null, or an explicit threshold: a fixed "
        "pair threshold whatever the gallery size",
    )
    margin: float | None = Field(
        None,
        ge=0,
        lt=2,
        description="open-set rule: the second-nearest enrolled person must be at least "
        "this much further than the nearest, else unknown; null: the calibrated margin",
    )
    min_enrol_quality: float = Field(
        0.2,
        ge=0,
        le=1,
        description="open-set rule: enrolled tracks (and photos with a known quality) "
        "below this quality do not count when the person has a better one; naming an "
        "unknown-N enrols only its tracks at or above it",
    )
    person_min_photos: int = Field(
        3,
        ge=0,
        description="open-set rule: people with at least this many photos must also be "
        "within a threshold from the spread of their own photos (never looser; 0: off)",
    )

    @model_validator(mode="after")
    def _calibrated_threshold(self) -> RecognitionConfig:
        if self.threshold is None:
            # not through __setattr__: that would validate the whole section again; and
            # not "set": the calibrated default is no explicit (fixed) pair threshold
            self.__dict__["threshold"] = operating_points(self.num_jitters, self.flip).far_1pct
            self.model_fields_set.discard("threshold")
        return self

    @property
    def threshold_explicit(self) -> bool:
        """The configuration sets ``threshold``: a fixed pair threshold for every gallery
        size, instead of the calibrated one per gallery size."""
        return "threshold" in self.model_fields_set

    @property
    def rule(self) -> OpenSetRule:
        """This section's open-set rule (pipeline/recognition/openset.py): what the
        recognize stage, the sink and every correction name faces with. One object per
        distinct setting, so its prepared-gallery cache is shared."""
        from pipeline.recognition.openset import OpenSetRule

        return OpenSetRule.from_config(self, explicit_threshold=self.threshold_explicit)


class AttributesConfig(BackendSection):
    registry_package = "pipeline.attributes"

    enabled: bool = True
    backend: str = Field(
        "ensemble", description="age/gender backend (docs/attributes.md compares them)"
    )
    min_gender_confidence: float = Field(
        0.8,
        ge=0.5,
        le=1,
        description="below this fused probability gender is 'unknown' (0.8: 96.3 % right on "
        "the 89.7 % of UTKFace validation faces given a gender with detector boxes; "
        "docs/attributes.md)",
    )


class StoreConfig(Section):
    url: str | None = Field(
        None, description="SQLAlchemy URL; null: sqlite file events.db in the data directory"
    )
    snapshots_dir: str | None = Field(
        None, description="where best snapshots go; null: snapshots/ in the data directory"
    )
    retention_days: float | None = Field(
        None,
        gt=0,
        description="delete events (with their samples and snapshots) last seen more than "
        "this many days ago, and unknown-N clusters left without events; null: keep forever. "
        "The sink prunes at most once an hour; `facepipe db prune` does it now",
    )
    context_images: bool = Field(
        True,
        description="keep a context image per event beside its snapshot: the whole frame of "
        "the snapshot (JPEG), shown with its faces' boxes by the API and the web UI",
    )
    context_max_width: int = Field(
        960, ge=64, le=8192, description="context images wider than this are scaled down"
    )


class MetricsConfig(Section):
    port: int = Field(9108, ge=0, le=65535, description="Prometheus endpoint port (0: off)")
    host: str = Field(
        "127.0.0.1",
        description="address the metrics endpoint listens on; 127.0.0.1: this machine only "
        "(0.0.0.0: every interface, e.g. in a container)",
    )


class LimitsConfig(Section):
    max_image_pixels: int = Field(
        50_000_000,
        ge=1,
        description="largest image or video frame accepted (width x height), at every entry "
        "point: detect, analyze, enroll, verify, capture; larger ones are refused",
    )


# workers.nice by default: the model stages yield the cores to capture, track and sink
# (docs/benchmarks.md, "Session of 2026-12-01": 3 live cameras p95 216 ms with, 301-990 without)
DEFAULT_WORKER_NICE = {"detect": 5, "recognize": 10, "attributes": 10}


class WorkersConfig(Section):
    detect: int = Field(2, ge=1, description="detect worker processes `facepipe run` starts")
    track: int = Field(1, ge=1)
    recognize: int = Field(
        1,
        ge=1,
        description="recognize worker processes `facepipe run` starts: one (a second one "
        "takes cores from detection: a live 30 fps camera then dropped 7 % of its frames "
        "at p95 958 ms instead of none at 237 ms; for video files 2 is ~10 % faster; "
        "docs/benchmarks.md)",
    )
    attributes: int = Field(1, ge=1)
    sink: int = Field(1, ge=1)
    nice: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_WORKER_NICE),
        description="CPU priority of each stage's workers, as nice values 0-19 (higher: "
        "lower priority; stages not named: 0): the heavy model stages yield the cores to "
        "the stages on a frame's way to its event (pipeline/priority.py)",
    )

    @field_validator("nice")
    @classmethod
    def _nice_per_stage(cls, value: dict[str, int]) -> dict[str, int]:
        from pipeline.stages import STAGE_NAMES

        for stage, nice in value.items():
            if stage not in STAGE_NAMES:
                raise ValueError(f"{stage!r} is not a stage ({', '.join(STAGE_NAMES)})")
            if not isinstance(nice, int) or not 0 <= nice <= 19:
                raise ValueError(f"{stage}: nice must be an integer 0-19, not {nice!r}")
        return value

    job_recovery_s: float = Field(
        10.0,
        ge=1,
        description="a job whose worker sent no heartbeat for this long (killed, machine "
        "gone) is requeued by the other workers; callers waiting for a stream give up after "
        "a few of these without progress",
    )
    max_job_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="a queued job larger than this is moved to the dead-letter list unread",
    )


class MqttConfig(Section):
    enabled: bool = Field(False, description="publish events to an MQTT broker")
    host: str = Field("127.0.0.1", description="broker host name or address")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 is usual with TLS)")
    username: str | None = Field(None, description="broker user name; null: anonymous")
    password: SecretStr | None = Field(None, description="broker password (never logged)")
    topic_prefix: str = Field(
        "facepipe",
        pattern=r"^[^#+\x00]+$",
        description="first level of every topic (no MQTT wildcards): PREFIX/events, ...",
    )
    tls: bool = Field(False, description="connect with TLS (the system's CA certificates)")
    tls_ca_certs: str | None = Field(None, description="CA bundle file for tls (null: system's)")
    qos: int = Field(1, ge=0, le=2, description="MQTT QoS of event messages")
    client_id: str | None = Field(None, description="MQTT client id; null: facepipe-HOST-PID")
    keepalive_s: int = Field(
        30, ge=5, description="MQTT keep-alive; the broker's LWT fires after ~1.5x"
    )
    reconnect_max_s: float = Field(
        30.0, ge=1, description="cap of the backoff between reconnect attempts (from 1 s)"
    )


class WebhookConfig(Section):
    url: str = Field(..., pattern=r"^https?://", description="http(s) URL that gets a JSON POST")
    events: list[Literal["new", "update", "end", "stream"]] = Field(
        default_factory=lambda: ["new", "update", "end", "stream"],
        min_length=1,
        description="which notifications this URL gets",
    )
    timeout_s: float = Field(5.0, gt=0, le=300, description="per attempt (connect + response)")
    retries: int = Field(3, ge=0, le=20, description="extra attempts after a failed one")
    max_backoff_s: float = Field(
        30.0, gt=0, description="cap of the wait between attempts (exponential from 0.5 s)"
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra HTTP headers (e.g. Authorization; never logged)"
    )


class NotifyConfig(Section):
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    only_known: bool = Field(
        False, description="send only about events of enrolled people (not unknowns)"
    )
    min_confidence: float = Field(
        0.0,
        ge=0,
        le=1,
        description="send about a named person only when the event's confidence (agreement "
        "of its samples) is at least this; unknowns are not affected",
    )
    snapshot_url: str | None = Field(
        None,
        description="template of the snapshot link in payloads, with {id} (event id) and "
        "{path} (snapshot path under the snapshots directory); null: no link",
    )
    queue_size: int = Field(
        1000, ge=1, description="notifications waiting per backend; beyond, new ones are dropped"
    )
    max_delay_s: float = Field(
        60.0, gt=0, description="a notification waiting longer than this (backend down) is dropped"
    )

    @field_validator("snapshot_url")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        try:
            if value is not None:
                value.format(id=1, path="cam/session/1.jpg")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{id}} and {{path}} may be filled in ({exc!r})") from None
        return value

    @property
    def enabled(self) -> bool:
        return self.mqtt.enabled or bool(self.webhooks)


class ApiConfig(Section):
    host: str = Field(
        "127.0.0.1",
        description="address `facepipe serve` listens on; 127.0.0.1: this machine only "
        "(0.0.0.0: every interface; set a token then)",
    )
    port: int = Field(8108, ge=1, le=65535, description="HTTP API port of `facepipe serve`")
    token: str | None = Field(
        None,
        min_length=16,
        max_length=512,
        pattern=r"^[A-Za-z0-9._~+/=-]+$",
        description="bearer token every API request must carry (Authorization: Bearer "
        "TOKEN); null: no authentication (keep host 127.0.0.1 then)",
    )
    max_upload_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="largest request body (photo uploads) accepted; larger ones get 413",
    )


class Config(Section):
    redis: RedisConfig = Field(default_factory=RedisConfig)
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    recognition: RecognitionConfig = Field(default_factory=RecognitionConfig)
    attributes: AttributesConfig = Field(default_factory=AttributesConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    cameras: dict[str, CameraConfig] = Field(
        default_factory=dict,
        description="named cameras `facepipe run` runs when given no SOURCES; the name is "
        "the stream name",
    )

    @field_validator("cameras", mode="before")
    @classmethod
    def _camera_keys_are_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    raise ValueError(
                        f"camera name {key!r} is not a string: quote it in the YAML "
                        "(YAML reads off/on/yes/no as booleans and 1, 2 as numbers)"
                    )
        return value

    @field_validator("cameras")
    @classmethod
    def _camera_names(cls, value: dict[str, CameraConfig]) -> dict[str, CameraConfig]:
        from pipeline.names import BadName, check_stream

        for name in value:
            try:
                check_stream(name)
            except BadName as exc:
                raise ValueError(f"camera {exc}") from None
        return value

    def camera(self, name: str) -> CameraConfig:
        """The camera ``name`` of ``cameras:``; :class:`ConfigError` names the known ones."""
        if name not in self.cameras:
            known = ", ".join(sorted(self.cameras)) or "none configured"
            raise ConfigError(f"no camera {name!r} in the config's cameras: ({known})")
        return self.cameras[name]

    def for_camera(self, name: str) -> Config:
        """This config as camera ``name`` runs it: its capture keys and detection rate
        replace the global ones."""
        cam = self.camera(name)
        update: dict[str, Any] = {}
        if cam.capture:
            update["capture"] = CaptureConfig.model_validate(
                {**self.capture.model_dump(), **cam.capture}
            )
        if cam.every_n_frames is not None:
            update["detector"] = self.detector.model_copy(
                update={"every_n_frames": cam.every_n_frames}
            )
        return self.model_copy(update=update) if update else self

    api: ApiConfig = Field(default_factory=ApiConfig)

    # ----- derived locations -------------------------------------------------
    @property
    def home(self) -> Path:
        return data_home()

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.home / 'events.db'}"

    @property
    def snapshots_path(self) -> Path:
        return (
            Path(self.store.snapshots_dir) if self.store.snapshots_dir else self.home / "snapshots"
        )


class ConfigError(ValueError):
    """Invalid configuration; the message names the offending key."""


ENV_PREFIX = "FACEPIPE__"


def data_home() -> Path:
    env = os.environ.get("FACEPIPE_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "facepipe"


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "backend_options":
            lines += [f"{source}: {key}.{sub}: {msg}" for sub, msg in err["ctx"]["items"]]
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {key}: {msg}")
    return "\n".join(lines)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            raise ConfigError(f"environment: {name}: empty key")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment: {name}: conflicts with another variable")
        node[path[-1]] = yaml.safe_load(raw) if raw != "" else None
    if environ.get("REDIS_URL"):
        out.setdefault("redis", {})["url"] = environ["REDIS_URL"]
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict) and k != "options":
            merged[k] = _merge(merged[k], v)
        elif isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = {**merged[k], **v}
        else:
            merged[k] = v
    return merged


def _drop_other_backend_options(data: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """The file's data without the options of a backend the environment switched away from."""
    out = dict(data)
    for name, field in Config.model_fields.items():
        section = field.annotation
        if not (isinstance(section, type) and issubclass(section, BackendSection)):
            continue
        file_section, env_section = out.get(name), env.get(name)
        if not isinstance(file_section, dict) or not isinstance(env_section, dict):
            continue
        file_backend = file_section.get("backend", section.model_fields["backend"].default)
        if "backend" in env_section and section.resolve_backend(
            str(env_section["backend"])
        ) != section.resolve_backend(str(file_backend)):
            out[name] = {k: v for k, v in file_section.items() if k != "options"}
    return out


def load_config(
    path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Load and validate the configuration (file, then environment overrides)."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    source = "defaults"
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
        data = loaded
        source = str(p)
    env = _env_overrides(environ)
    data = _drop_other_backend_options(data, env)
    try:
        Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
    try:
        return Config.model_validate(_merge(data, env))
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, "environment (FACEPIPE__* / REDIS_URL)")) from None
