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
from typing import Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.recognition.thresholds import operating_points
from pipeline.registry import BackendError, BackendOptions, Registry


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
    resize_width: int | None = Field(
        None, ge=64, description="downscale wider frames to this width before encoding"
    )
    max_queue: int = Field(
        16, ge=1, description="detect-queue depth at which live sources drop and files wait"
    )
    max_frame_age_s: float = Field(
        2.0, gt=0, description="live frames older than this when detection starts are dropped"
    )
    realtime: bool = Field(False, description="pace video files at their own frame rate")
    reconnect_s: float = Field(2.0, ge=0, description="wait before reopening a failed live source")
    shot_cut_threshold: float | None = Field(
        0.4,
        gt=0,
        le=1,
        description="hue/saturation histogram distance of consecutive frames that marks a "
        "shot cut (every track ends there); null: never",
    )


class DetectorConfig(BackendSection):
    registry_package = "pipeline.detectors"
    # blazeface also runs on overlapping 384-px tiles: 25-40 px faces in 640-px frames
    pipeline_options = {"blazeface": {"tile_size": 384}}

    backend: str = Field("blazeface", description="detector backend (facepipe backends)")
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

    @model_validator(mode="after")
    def _calibrated_threshold(self) -> RecognitionConfig:
        if self.threshold is None:
            # not through __setattr__: that would validate the whole section again
            self.__dict__["threshold"] = operating_points(self.num_jitters, self.flip).far_1pct
        return self


class AttributesConfig(BackendSection):
    registry_package = "pipeline.attributes"

    enabled: bool = True
    backend: str = Field(
        "ensemble", description="age/gender backend (docs/attributes.md compares them)"
    )
    min_gender_confidence: float = Field(
        0.6, ge=0.5, le=1, description="below this fused probability gender is 'unknown'"
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


class WorkersConfig(Section):
    detect: int = Field(2, ge=1, description="detect worker processes `facepipe run` starts")
    track: int = Field(1, ge=1)
    recognize: int = Field(1, ge=1)
    attributes: int = Field(1, ge=1)
    sink: int = Field(1, ge=1)
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
        if "backend" in env_section and env_section["backend"] != file_backend:
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
