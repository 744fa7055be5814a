"""A kill in the middle of the CPU plugin's kernel build must not block later runs.

torch's extension build waits for as long as its lock file exists in the build folder; a build killed with
SIGKILL leaves that file behind, and every later run on the machine used to hang at its first batch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalharness.backends.hf_cpu.fused_ops import build_lock

pytest.importorskip("ninja")

LOAD = ("import sys; from evalharness.backends.hf_cpu.fused_ops import load_fused_ops; "
        "sys.exit(0 if load_fused_ops() is not None else 3)")


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "EVALHARNESS_CACHE_DIR": str(cache), "EVALHARNESS_FUSED_OPS": "1"}


def test_build_lock_removes_a_dead_builds_lock_file(tmp_path):
    build_dir = tmp_path / "kernels" / "k"
    build_dir.mkdir(parents=True)
    (build_dir / "lock").touch()  # what a killed torch build leaves
    with build_lock(build_dir):
        assert not (build_dir / "lock").exists()


def test_sigkill_during_the_kernel_build_then_the_next_run_builds(tmp_path):
    env = _env(tmp_path)
    kernels = tmp_path / "kernels"
    proc = subprocess.Popen([sys.executable, "-c", LOAD], env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while not list(kernels.glob("*/lock")):  # torch's build has started
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "the build never started"
            time.sleep(0.02)
        time.sleep(1.0)  # the compiler is running
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the loader, ninja and the compiler, as `kill -9 -- -PGID` does
        proc.wait()
    assert list(kernels.glob("*/lock")), "the killed build should have left torch's lock file"
    done = subprocess.run([sys.executable, "-c", LOAD], env=env, timeout=600)
    assert done.returncode == 0
    assert not list(kernels.glob("*/lock"))
