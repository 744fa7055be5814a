"""Running `python -m evalharness` as a user does, in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, cwd: Path, data_dir: Path | str | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter; data_dir=None removes EVALHARNESS_DATA_DIR from the environment."""
    env = dict(os.environ)
    env.pop("EVALHARNESS_DATA_DIR", None)
    if data_dir is not None:
        env["EVALHARNESS_DATA_DIR"] = str(data_dir)
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-m", "evalharness", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run failed cleanly: exit 2, no traceback, exactly one `evalharness: error:` line on stderr."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("evalharness: error: ")
    return lines[0]


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The run failed cleanly after the model loaded: exit 2, no traceback, one `evalharness: error:` line (log
    lines such as the accelerator's may come before it)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("evalharness: error")]
    assert len(errors) == 1, proc.stderr
    return errors[0]
