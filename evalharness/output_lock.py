"""One run per output folder: an advisory lock on `<folder>/.evalharness.lock`, held for the run's life.

The lock is `flock` on the open file, so the kernel releases it when the process ends in any way (exit, crash,
`kill -9`): a stale lock file never blocks a later run. The file names its holder (process id, host, start
time, command), which a second run on the same folder shows in its one-line error.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType

from .errors import EvalHarnessError
from .write_failure import naming_file

LOCK_FILE = ".evalharness.lock"


class OutputDirInUse(EvalHarnessError):
    """Another run holds the output folder's lock."""


class OutputLock:
    """The lock on one output folder (which must exist). `acquire()` raises OutputDirInUse when it is held."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> OutputLock:
        """Take the lock (without waiting) and record this process as its holder."""
        while self._fd is None:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise naming_file(exc, self.path) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputDirInUse(f"output directory {self.folder} is in use by another run "
                                     f"({describe_holder(self.path)}); wait for it to end or stop it, or choose another "
                                     "--output-dir") from None
            if _same_file(fd, self.path):
                self._fd = fd
            else:  # the holder removed the file as we opened it: lock the file now at the path
                os.close(fd)
        try:
            os.ftruncate(self._fd, 0)
            os.write(self._fd, json.dumps(holder_record()).encode())
            os.fsync(self._fd)
        except OSError as exc:  # e.g. a full disk: the lock is ours, the record of who holds it could not be written
            self.release()
            raise naming_file(exc, self.path) from exc
        return self

    def release(self) -> None:
        """Remove the lock file and let the lock go (a run that ends leaves the folder as it found it). In a folder
        that has become read-only the file stays: it blocks nothing once the lock is let go."""
        if self._fd is None:
            return
        try:
            with contextlib.suppress(OSError):  # never hides the error that ends the run
                self.path.unlink(missing_ok=True)  # while still locked: whoever opens it next sees a fresh file
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def holder_record() -> dict[str, object]:
    """Who holds the lock: this process."""
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": sys.argv}


def describe_holder(path: Path) -> str:
    """'pid 123 on host h, started 2026-12-06T15:40:00+00:00', from the lock file (as far as it says)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or "pid" not in record:
        return "it has not yet recorded which process it is"
    return f"pid {record['pid']} on host {record.get('host', '?')}, started {record.get('started', '?')}"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
