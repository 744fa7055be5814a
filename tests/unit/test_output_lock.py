"""The output folder's lock: held by one process, named to the next, released by the kernel when its holder dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalharness.output_lock import LOCK_FILE, OutputDirInUse, OutputLock

HOLD = "import sys, time; from evalharness.output_lock import OutputLock; OutputLock(sys.argv[1]).acquire(); " \
       "print('held', flush=True); time.sleep(600)"


def _holder(folder: Path) -> subprocess.Popen:
    """Another process that takes the folder's lock and keeps it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_with_the_first_ones_pid_host_and_start(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(OutputDirInUse) as caught:
            OutputLock(tmp_path).acquire()
        message = str(caught.value)
        assert f"output directory {tmp_path} is in use by another run (pid {proc.pid} on host {socket.gethostname()}, " \
               "started 20" in message
        assert "choose another --output-dir" in message and "\n" not in message
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_a_file_that_blocks_nothing(tmp_path):
    proc = _holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_FILE).exists()  # the stale file stays; the kernel dropped the lock with the process
    with OutputLock(tmp_path) as lock:
        record = json.loads((tmp_path / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and lock.held
    assert not (tmp_path / LOCK_FILE).exists()  # released: the folder is left as it was


def test_release_lets_the_next_run_in_and_a_second_open_in_one_process_is_refused(tmp_path):
    first = OutputLock(tmp_path).acquire()
    with pytest.raises(OutputDirInUse):
        OutputLock(tmp_path).acquire()  # flock is per open file: two runs in one process exclude each other too
    first.release()
    started = time.time()
    with OutputLock(tmp_path):
        assert time.time() - started < 1
