#!/usr/bin/env bash
# The project's test command: install from the project's files, lint, run the tests.
# Tests start their own private redis-server; the PostgreSQL store tests use the
# machine's server on 127.0.0.1:5432 when there is one and skip otherwise; tests on
# ../shared/datasets skip when it is absent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
VENV="${FACEPIPE_VENV:-$ROOT/.venv}"
cd "$ROOT"
"$VENV/bin/ruff" check .
exec "$VENV/bin/python" -m pytest -q "$@"
