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

import pytest


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


# ---- Ctrl-C and SIGTERM: one clean line, the conventional exit code, nobody left running -------------------------
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
QUIET_TORCHRUN = [sys.executable, "-m", "evalharness.torchrun", "--standalone", "--nproc-per-node=2"]
INTERRUPTED = "evalharness: interrupted;"


def _start_interruptible(launcher: list[str], tiny_mpt_dir: Path, data_dir: Path, out: Path, log: Path) -> subprocess.Popen:
    """A long two-process run in a session of its own (as a terminal's foreground job), stderr into `log`."""
    env = {**{k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")},
           "EVALHARNESS_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = ["run", "--model", str(tiny_mpt_dir), "--tasks", "hellaswag", "--limit", "2000", "--batch-size", "1",
            "--dtype", "float32", "--threads", "1", "--output-dir", str(out)]
    cmd = [sys.executable, "-m", "evalharness", *args, "--nproc", "2"] if not launcher else [*launcher, "-m", "evalharness", *args]
    with log.open("w") as err:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)


def _interrupt(proc: subprocess.Popen, out: Path, how: str) -> int:
    """Once the run answers requests: Ctrl-C (SIGINT to the foreground process group) or SIGTERM to the launcher."""
    try:
        assert _wait_for(lambda: (out / "requests.sqlite").exists(), 240), "the run never started"
        time.sleep(3)  # into the run
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=120)
    finally:
        for pid in _processes_mentioning(str(out)):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("launcher", "how", "code"), [
    ([], "ctrl-c", 130), ([], "sigterm", 143), (QUIET_TORCHRUN, "sigterm", 143)],
    ids=["nproc-ctrl-c", "nproc-sigterm", "evalharness.torchrun-sigterm"])
def test_an_interrupted_multiprocess_run_ends_with_one_clean_line(launcher, how, code, tiny_mpt_dir, data_dir, tmp_path):
    """`evalharness run --nproc 2` (and evalharness.torchrun, torchrun without its traceback): used to end with
    torchrun's SignalException tracebacks after the workers' lines."""
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = _start_interruptible(launcher, tiny_mpt_dir, data_dir, out, log)
    assert _interrupt(proc, out, how) == code
    text = log.read_text()
    after_progress = text.rsplit("req/s]", 1)[-1].split()  # what follows the last progress bar
    assert " ".join(after_progress) == ("evalharness: interrupted; finished tasks' samples and the request cache are "
                                        "kept (--resume continues)"), text[-3000:]
    assert "Traceback" not in text and "death signal" not in text and "closing signal" not in text, text[-3000:]
    assert _wait_for(lambda: not _processes_mentioning(str(out)), 30), f"still running: {_processes_mentioning(str(out))}"
    assert not (out / "results.json").exists()


def test_plain_torchrun_workers_stop_cleanly(tiny_mpt_dir, data_dir, tmp_path):
    """Under plain torchrun the workers print one line; the only traceback is torchrun's own (its agent re-raises
    the signal by design, docs/distributed.md)."""
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = _start_interruptible(TORCHRUN, tiny_mpt_dir, data_dir, out, log)
    _interrupt(proc, out, "sigterm")
    text = log.read_text()
    assert text.count(INTERRUPTED) == 1, text[-3000:]
    assert text.count("Traceback") == text.count("SignalException: Process"), text[-3000:]
    assert "evalharness/" not in text.split(INTERRUPTED)[1], text[-3000:]  # no worker frame in any traceback
