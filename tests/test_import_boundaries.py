"""The runtime (``pipeline``, ``workers``) never imports training code nor TensorFlow.

Training, fitting and data-set building live in the top-level ``training`` package, which
imports the runtime, never the reverse; TensorFlow/Keras are imported only by a backend
that needs them, when it is constructed. Each check runs in a fresh interpreter, so what
other tests imported does not count.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline
import workers

REPO = Path(pipeline.__file__).resolve().parent.parent
FORBIDDEN = ("training", "tensorflow", "keras")

# Imports every module of the given packages (a package's __main__ runs a command, and
# Alembic's env.py runs only inside Alembic's migration context: not imported), then, for
# each stage given with --stages, runs `facepipe worker STAGE --burst` with the default
# config (builds and warms up the stage's model); prints the modules that failed to
# import and the forbidden top-level packages found in sys.modules.
PROBE = """
import importlib, json, pkgutil, sys

packages, stages = sys.argv[1].split(","), sys.argv[2:]
failed = {}
for name in packages:
    pkg = importlib.import_module(name)
    for info in pkgutil.walk_packages(pkg.__path__, name + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__" or info.name == "pipeline.migrations.env":
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed[info.name] = repr(exc)
if stages:
    from pipeline.cli import main

    for stage in stages:
        main(["worker", stage, "--burst"], standalone_mode=False)
top = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"failed": failed, "top": top}))
"""


def probe(packages: list[str], stages: list[str] = (), env: dict | None = None) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(packages), *stages],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_runtime_modules_import_no_training_and_no_tensorflow() -> None:
    result = probe(["pipeline", "workers"])
    assert result["failed"] == {}
    assert [m for m in result["top"] if m in FORBIDDEN] == []


@pytest.mark.slow
def test_stage_workers_with_the_default_config_import_no_training_and_no_tensorflow(
    redis_url: str, home: Path
) -> None:
    import os

    from pipeline.stages import STAGE_NAMES

    env = {k: v for k, v in os.environ.items() if k != "FACEPIPE_CONFIG"}
    env["REDIS_URL"] = redis_url
    result = probe(["pipeline", "workers"], list(STAGE_NAMES), env=env)
    assert [m for m in result["top"] if m in FORBIDDEN] == []


def test_training_modules_import_and_do_not_load_tensorflow_at_import() -> None:
    result = probe(["training"])
    assert result["failed"] == {}
    assert "training" in result["top"]
    assert "tensorflow" not in result["top"] and "keras" not in result["top"]


def _imports(path: Path) -> list[str]:
    """Every module named by an import statement of a file (also inside functions)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def _offending(folder: Path, package: str) -> list[str]:
    """``file: module`` for each import, in ``folder``, of ``package`` or a module in it."""
    return [
        f"{p.relative_to(REPO)}: {name}"
        for p in sorted(folder.rglob("*.py"))
        for name in _imports(p)
        if name == package or name.startswith(package + ".")
    ]


def test_no_import_statement_of_the_runtime_names_training() -> None:
    """Also lazy imports inside functions, which the fresh-interpreter check cannot see."""
    for package in (pipeline, workers):
        assert _offending(Path(package.__file__).parent, "training") == []


@pytest.mark.parametrize(
    ("inner", "outer"),
    [
        ("agegender", "pipeline.attributes"),  # the backends import the models, not back
        ("vj", "pipeline.detectors"),
        ("cnn_detector", "pipeline.detectors"),
        ("commands", "pipeline.cli"),  # the CLI registers the commands, not back
    ],
)
def test_inner_packages_do_not_import_their_users(inner: str, outer: str) -> None:
    folder = Path(pipeline.__file__).parent / inner
    assert _offending(folder, outer) == []


def test_facepipe_train_lists_its_commands_and_help_does_not_load_them() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    for name in ("age-gender", "cnn", "viola-jones"):
        assert f"  {name} " in out.stdout
    code = (
        "import sys\nfrom pipeline.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'training', 'tensorflow'}))"
    )
    top = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert "  train " in top.stdout
    assert top.stdout.strip().splitlines()[-1] == "[]"
