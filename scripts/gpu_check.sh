#!/usr/bin/env bash
# Run the CUDA paths the CPU test machines never run, and print each check's verdict and figures
# (docs/gpu-check.md). Arguments go to benchmarks/gpu_check.py, e.g. --work-dir /tmp/gpu-check --limit 100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then
  PY=.venv/bin/python
fi
exec "$PY" benchmarks/gpu_check.py "$@"
