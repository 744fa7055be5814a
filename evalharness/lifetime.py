"""Processes that end with their parent: the workers of a multi-process run must not outlive the run.

torchrun starts its workers in their own process sessions, so `kill -9 -- -PGID` of the command the user
started (or of torchrun) used to leave them running; they finished the run and wrote results after the user
had stopped it. On Linux a process can ask to be sent a signal when its parent dies (PR_SET_PDEATHSIG);
elsewhere these calls do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies; True if that is set up.

    If the parent is already gone (this process was re-parented before the call), `sig` is sent at once."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except OSError:
        return False
    if parent == 1 or os.getppid() != parent:
        os.kill(os.getpid(), sig)
    return True
