"""Dedicated uids for sandboxed programs, leased exclusively so concurrent sandboxes never share one.

The process limit counts every process of a uid system-wide, and without a PID namespace leftovers
are killed by uid: both are only right if no one else uses the uid. A lease is an exclusive `flock`
on a lock file named after the uid, in a root-only folder; it ends when the sandbox closes (or its
process dies). Uids of named users or groups are skipped.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import stat
import tempfile
from pathlib import Path

from evalharness.errors import SandboxUnavailable

LOCK_DIR = Path(tempfile.gettempdir()) / "evalharness-sandbox-uids"
SEARCH_SPAN = 4096  # how many uids from the base to try


def _lock_dir() -> Path:
    LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(LOCK_DIR)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise SandboxUnavailable(f"{LOCK_DIR} must be a directory owned by this user with mode 0700")
    return LOCK_DIR


def _named(uid: int) -> bool:
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


class UidLease:
    """`count` uids from `base` upward that no named account and no other sandbox uses."""

    def __init__(self, base: int, count: int) -> None:
        self.uids: list[int] = []
        self._fds: list[int] = []
        folder = _lock_dir()
        for uid in range(base, base + SEARCH_SPAN):
            if len(self.uids) == count:
                break
            if _named(uid):
                continue
            fd = os.open(folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._fds.append(fd)
            self.uids.append(uid)
        if len(self.uids) < count:
            self.release()
            raise SandboxUnavailable(f"no {count} free sandbox uids in {base}..{base + SEARCH_SPAN - 1}")

    def release(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
