"""A write that failed part-way through a run (disk full, a read-only folder or file): the file, the cause, one line.

A run writes in a few places: results.py's atomic writes (samples, results.json, report.html), the output folder's
lock and the request cache. Where the system's error does not name the file (a write to an open file, an SQLite
error), those places attach it with `naming_file`; the run command turns whatever OSError ends the run into
`stopped_run`'s one line, keeping the cause (errno or SQLite's code) as the exception's `__cause__`.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from .errors import EvalHarnessError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_SQLITE_NOT_WRITABLE = {"SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM"}


class WriteError(OSError):
    """Writing `filename` failed. `errno`/`strerror` as the system gave them; for an SQLite error, `strerror` is
    SQLite's message, `code` its error name (SQLITE_FULL, SQLITE_READONLY, ...) and `errno` ENOSPC for a full disk."""

    code: str | None = None


class WriteFailed(EvalHarnessError):
    """A run stopped because a file could not be written; the message names the file, the cause and what to do."""


def naming_file(exc: OSError | sqlite3.Error, path: Path | str) -> WriteError:
    """`exc` as a WriteError naming `path` (the file being written, not a temporary name or an open descriptor)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        out = WriteError(errno.ENOSPC if code == "SQLITE_FULL" else None, str(exc), str(path))
        out.code = code
        return out
    return WriteError(exc.errno, exc.strerror or str(exc), str(path))


def stopped_run(exc: OSError) -> WriteFailed:
    """The run's one line for `exc`: `cannot write <file>: <cause> (the run stopped; <what to do> and rerun with
    --resume)`; an error that is not plainly a write names the file and the cause alone."""
    cause = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        advice = "free space"
    elif exc.errno in _NOT_WRITABLE or getattr(exc, "code", None) in _SQLITE_NOT_WRITABLE:
        advice = "make it writable"
    else:
        advice = "fix the cause"
    is_write = isinstance(exc, WriteError) or exc.errno in _NO_SPACE or exc.errno == errno.EROFS
    if exc.filename is None:
        what = f"a write failed: {cause}" if is_write else cause
    else:
        what = f"cannot write {exc.filename}: {cause}" if is_write else f"{exc.filename}: {cause}"
    return WriteFailed(f"{what} (the run stopped; {advice} and rerun with --resume)")
