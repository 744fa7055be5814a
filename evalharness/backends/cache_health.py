"""Is the request cache's SQLite file damaged, and setting a damaged one aside."""

from __future__ import annotations

import datetime as _dt
import sqlite3
from pathlib import Path

_DAMAGE_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)
_JOURNALS = ("-wal", "-shm", "-journal")


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether `exc` says the file is damaged (not a database, malformed), rather than busy, full or read-only."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in _DAMAGE_CODES
    if type(exc) is sqlite3.DatabaseError:  # quick_check's findings, and corruption on older Pythons
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def quick_check(db: sqlite3.Connection) -> str | None:
    """SQLite's quick_check of the whole file: None when it is sound, else its first finding."""
    rows = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    if rows == ["ok"]:
        return None
    first = " ".join(str(rows[0]).split()) if rows else "no answer"  # its findings may span lines: keep one
    return f"quick_check: {first}"


def set_aside(path: Path) -> Path:
    """Rename `path` (and its journal files) to `<name>.damaged-<UTC time>`; the new name of the main file."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    for suffix in ("", *_JOURNALS):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(target.with_name(target.name + suffix))
    return target
