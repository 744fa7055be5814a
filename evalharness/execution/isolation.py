"""Find out which isolation mechanisms work here, by running a probe program with each."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

from evalharness.errors import SandboxUnavailable

from .policy import Isolation, Limits
from .process import run_program
from .program import Program
from .result import Status

log = logging.getLogger(__name__)

#: Imports a few compiled stdlib modules, so a dedicated uid that cannot read the Python install fails.
PROBE = Program(
    solution="import math, hashlib, decimal, collections, re\n\ndef probe():\n    return math.isqrt(49)\n",
    test="def check(candidate):\n    assert candidate() == 7\n",
    entry_point="probe",
)

#: Setup steps named in child.py's error reports -> the Isolation field to give up when they fail.
_STEP_FIELDS = {
    "network namespace": "network_namespace",
    "mount namespace": "readonly_filesystem", "mount /proc": "readonly_filesystem",
    "expose": "readonly_filesystem", "read-only filesystem": "readonly_filesystem",
    "writable working directory": "readonly_filesystem",
    "pid namespace": "pid_namespace",
    "runner": "dedicated_uids",
}


def ensure_supported() -> None:
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"the code-execution sandbox needs Linux (this is {sys.platform})")


_detected: list[Isolation] = []


def detect_isolation(uid: int | None) -> Isolation:
    """The strongest isolation that runs the probe program (as `uid`, a leased dedicated uid, when
    running as root): everything when running as root on Linux with namespaces; mechanisms that fail
    here are given up one at a time, with a warning. Probed once per process."""
    ensure_supported()
    if _detected:
        return _detected[0]
    wanted = Isolation(uid is not None and os.geteuid() == 0, True, True, True)
    for _ in range(len(dataclasses.fields(Isolation)) + 1):
        result = run_program(PROBE, Limits(), wanted, uid if wanted.dedicated_uids else None)
        if result.passed:
            if not wanted.is_full:
                log.warning("code-execution sandbox runs with reduced isolation: %s", wanted.to_dict())
            _detected.append(wanted)
            return wanted
        field = _failed_field(result.error) if result.status is Status.ERROR else None
        if field is None and result.status is not Status.ERROR and wanted.dedicated_uids:
            field = "dedicated_uids"  # the probe failed under the dedicated uid, e.g. Python not readable
        if field is None or not getattr(wanted, field):
            break
        wanted = dataclasses.replace(wanted, **{field: False})
    raise SandboxUnavailable(f"the code-execution sandbox does not work here: {result.status.value}: {result.error}")


def _failed_field(error: str) -> str | None:
    step = error.removeprefix("sandbox setup failed: ")
    for prefix, field in _STEP_FIELDS.items():
        if step.startswith(prefix):
            return field
    return None
