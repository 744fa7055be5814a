"""Run one program in a fresh sandboxed process (see child.py for what happens inside)."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from .policy import Isolation, Limits
from .program import Program
from .result import ExecutionResult, Report, Status, classify

CHILD = Path(__file__).with_name("child.py")
OUTPUT_CHARS = 4000
REPORT_BYTES = 1 << 16


def child_environment(workdir: str) -> dict[str, str]:
    """The program's whole environment: nothing is inherited from the harness."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "HOME": workdir, "TMPDIR": workdir, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }


def run_program(program: Program, limits: Limits, isolation: Isolation, uid: int | None) -> ExecutionResult:
    """Run `program` under `limits` and `isolation` (as `uid` when given) in a new, empty working
    directory, which is deleted afterwards together with every process the program left."""
    workdir = tempfile.mkdtemp(prefix="evalharness-sandbox-")
    try:
        if uid is not None:
            os.chown(workdir, uid, uid)
        return _run_in(workdir, program, limits, isolation, uid)
    finally:
        if uid is not None and not isolation.pid_namespace:
            kill_all_processes_of(uid)
        _remove_tree(workdir)


def kill_all_processes_of(uid: int) -> None:
    """SIGKILL every process running as `uid` (needs root; used without a PID namespace)."""
    subprocess.run([sys.executable, "-s", "-B", str(CHILD), "--kill-all", str(uid)], env={}, cwd="/",
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
                   check=False)


def _run_in(workdir: str, program: Program, limits: Limits, isolation: Isolation, uid: int | None) -> ExecutionResult:
    token = secrets.token_hex(16)
    config: dict[str, Any] = {
        "token": token, "workdir": workdir, "limits": _limits_dict(limits),
        "isolation": {"uid": uid, "pid_namespace": isolation.pid_namespace,
                      "network_namespace": isolation.network_namespace,
                      "readonly_filesystem": isolation.readonly_filesystem},
        "program": {"solution": program.solution, "test": program.test, "entry_point": program.entry_point},
    }
    config_fd = os.memfd_create("evalharness-program")  # the token never appears in argv or the environment
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    try:
        with open(config_fd, "wb", closefd=False) as f:
            f.write(json.dumps(config).encode())
        os.lseek(config_fd, 0, os.SEEK_SET)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-s", "-B", str(CHILD), str(config_fd), str(write_fd)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir, env=child_environment(workdir),
                    pass_fds=(config_fd, write_fd), start_new_session=True,
                )
            except OSError as exc:
                return ExecutionResult(Status.ERROR, f"could not start the sandbox: {exc}", time.monotonic() - start)
            os.close(write_fd)
            write_fd = -1
            timed_out = not _wait_for_exit(proc.pid, limits.wall_seconds)
            inner = _open_pidfds(_children(proc.pid)) if timed_out else []
            _kill_group(proc.pid)  # before reaping, so the group id cannot have been reused
            proc.wait()
            _wait_all_exited(inner)  # the PID namespace's init: once it has exited, the namespace is empty
            wall = time.monotonic() - start
            report = Report.parse(_read_available(read_fd), token)
            stdout, stderr = _head(out), _tail(err)
    finally:
        for fd in (config_fd, read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
    status, error = classify(report, timed_out, limits, stderr)
    return ExecutionResult(status, error, wall, stdout, stderr)


def _limits_dict(limits: Limits) -> dict[str, int]:
    """The limits child.py applies itself (the wall clock is the harness's)."""
    return {name: int(value) for name, value in dataclasses.asdict(limits).items() if name != "wall_seconds"}


def _wait_for_exit(pid: int, timeout: float) -> bool:
    """True if the process exited within `timeout` seconds; it is left unreaped."""
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if poller.poll(remaining * 1000):
                return True
        return False
    finally:
        os.close(pidfd)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _open_pidfds(pids: list[int]) -> list[int]:
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            pass
    return fds


def _wait_all_exited(pidfds: list[int], timeout: float = 5.0) -> None:
    """Wait until every process behind `pidfds` has exited (not necessarily been reaped); close them."""
    deadline = time.monotonic() + timeout
    try:
        for fd in pidfds:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            poller.poll(max(0.0, deadline - time.monotonic()) * 1000)
    finally:
        for fd in pidfds:
            os.close(fd)


def _read_available(fd: int) -> bytes:
    """What is in the pipe now, without waiting for writers that may still hold it open."""
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    size = 0
    while size < REPORT_BYTES:
        try:
            chunk = os.read(fd, REPORT_BYTES - size)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _head(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read(OUTPUT_CHARS).decode("utf-8", "replace")


def _tail(f: IO[bytes]) -> str:
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - OUTPUT_CHARS))
    return f.read().decode("utf-8", "replace")


def _remove_tree(path: str) -> None:
    """Delete the working directory; without root, first give back permissions the program removed."""
    if os.geteuid() != 0:
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                sub = os.path.join(root, name)
                if not os.path.islink(sub):
                    os.chmod(sub, 0o700)
    shutil.rmtree(path, ignore_errors=True)
