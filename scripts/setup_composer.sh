#!/usr/bin/env bash
# Create .venv-composer: evalharness with the Composer extra, for tests/composer and training with ICLEvaluator.
# Separate from .venv because mosaicml 0.32.1 pins torch<2.7.1 (.venv has torch 2.13.0).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EVALHARNESS_COMPOSER_VENV:-.venv-composer}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
stamp="$VENV/.evalharness-installed"
want="$(cat pyproject.toml scripts/constraints-composer.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "${PIP[@]}" install -c scripts/constraints-composer.txt -e ".[composer]" pytest
  echo "$want" > "$stamp"
fi
