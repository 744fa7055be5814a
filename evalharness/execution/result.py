"""The outcome of one program run, judged only from the runner's wait status and the result pipe."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from enum import Enum

from .policy import Limits

MEMORY_EXIT = 3  # child.py: the program raised MemoryError
ERROR_CHARS = 300


class Status(str, Enum):
    """passed: the test's check() returned. failed: it raised, or the program exited or never got
    there. timeout: wall-clock or CPU limit. memory: MemoryError (address-space limit). killed: ended
    by a signal. error: the sandbox itself failed; not the program's fault."""

    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    KILLED = "killed"
    ERROR = "error"


@dataclass(frozen=True)
class ExecutionResult:
    """`error` is the last line of stderr (e.g. "AssertionError", "NameError: name 'x' is not defined")
    or what ended the run, truncated; "" when passed. `stdout` is its start, `stderr` its end."""

    status: Status
    error: str
    wall_time: float
    stdout: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED


@dataclass
class Report:
    """What the sandbox's own code wrote to the result pipe (lines that carry the run's token)."""

    ready: bool = False
    passed: bool = False
    exit_status: int | None = None
    setup_error: str | None = None

    @classmethod
    def parse(cls, data: bytes, token: str) -> Report:
        report = cls()
        for raw in data.decode("utf-8", "replace").splitlines():
            mark, _, rest = raw.partition(" ")
            if mark != token:
                continue
            word, _, arg = rest.partition(" ")
            if word == "ready":
                report.ready = True
            elif word == "passed":
                report.passed = True
            elif word == "exit" and arg.lstrip("-").isdigit():
                report.exit_status = int(arg)
            elif word == "error":
                report.setup_error = arg
        return report


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:ERROR_CHARS] if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify(report: Report, timed_out: bool, limits: Limits, stderr: str) -> tuple[Status, str]:
    """Status and error message of a finished run."""
    if report.setup_error is not None:
        return Status.ERROR, f"sandbox setup failed: {report.setup_error}"[:ERROR_CHARS]
    if timed_out:
        return Status.TIMEOUT, f"wall-clock limit of {limits.wall_seconds:g} s exceeded"
    if not report.ready or report.exit_status is None:
        detail = _last_line(stderr) or "no report from the sandbox"
        return Status.ERROR, f"sandbox did not complete: {detail}"[:ERROR_CHARS]
    status = report.exit_status
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return Status.TIMEOUT, f"CPU time limit of {limits.cpu_seconds} s exceeded"
        return Status.KILLED, f"killed by {_signal_name(sig)}"
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    if report.passed and code == 0:
        return Status.PASSED, ""
    if code == MEMORY_EXIT:
        return Status.MEMORY, _last_line(stderr) or "MemoryError"
    return Status.FAILED, _last_line(stderr) or f"exited with status {code} before check() returned"
