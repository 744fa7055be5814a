"""Killing a multi-process run kills all of it: `kill -9 -- -PGID` of `evalharness run --nproc 2` used to leave
the workers (torchrun starts them in their own sessions) running to the end, writing results.json after the
user had stopped the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _processes_mentioning(marker: str) -> list[int]:
    """Pids of the live processes whose command line contains `marker`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if marker in cmdline and "zombie" not in state:
            out.append(int(entry.name))
    return out


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_sigkill_of_the_launchers_group_ends_every_worker(tiny_mpt_dir, data_dir, tmp_path):
    out = tmp_path / "killed-run"
    env = {**{k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")},
           "EVALHARNESS_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "evalharness", "run", "--model", str(tiny_mpt_dir), "--tasks", "hellaswag",
         "--limit", "2000", "--batch-size", "1", "--dtype", "float32", "--threads", "1", "--nproc", "2",
         "--output-dir", str(out)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # the launcher, torchrun and two workers (each in a session of its own)
        assert _wait_for(lambda: len(_processes_mentioning(str(out))) >= 4, 120), "the workers never started"
        time.sleep(3)  # into the run
        workers = [p for p in _processes_mentioning(str(out)) if os.getsid(p) != launcher.pid]
        assert workers, "expected workers outside the launcher's session"
        os.killpg(launcher.pid, signal.SIGKILL)  # what `kill -9 -- -PGID` does
        launcher.wait()
        assert _wait_for(lambda: not _processes_mentioning(str(out)), 30), \
            f"still running after the kill: {_processes_mentioning(str(out))}"
        assert not (out / "results.json").exists()
    finally:
        for pid in _processes_mentioning(str(out)):
            os.kill(pid, signal.SIGKILL)
