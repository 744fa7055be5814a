"""A write that fails part-way: the path kept, the one line, nothing half-written (write_failure.py, results.py)."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from evalharness.backends.cache import RequestCache
from evalharness.output_lock import LOCK_FILE, OutputLock
from evalharness.results import atomic_write_text
from evalharness.write_failure import WriteError, naming_file, stopped_run


def test_a_full_disk_names_the_file_and_what_to_do():
    exc = naming_file(OSError(errno.ENOSPC, "No space left on device"), "out/samples_piqa.jsonl")
    assert str(stopped_run(exc)) == ("cannot write out/samples_piqa.jsonl: No space left on device (the run stopped; "
                                     "free space and rerun with --resume)")


def test_a_read_only_folder_from_anywhere_is_a_write():
    exc = OSError(errno.EROFS, "Read-only file system", "out/earlier-x")  # not passed through naming_file
    assert str(stopped_run(exc)).startswith("cannot write out/earlier-x: Read-only file system (the run stopped; "
                                            "make it writable")


def test_sqlite_errors_keep_their_code_and_gain_the_path():
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"
    exc = naming_file(full, "out/requests.sqlite")
    assert (exc.errno, exc.code, exc.filename) == (errno.ENOSPC, "SQLITE_FULL", "out/requests.sqlite")
    assert "free space" in str(stopped_run(exc))
    ro = sqlite3.OperationalError("attempt to write a readonly database")
    ro.sqlite_errorname = "SQLITE_READONLY"
    assert str(stopped_run(naming_file(ro, "c.sqlite"))) == (
        "cannot write c.sqlite: attempt to write a readonly database (the run stopped; make it writable and rerun "
        "with --resume)")


def test_other_errors_are_not_called_writes():
    line = str(stopped_run(FileNotFoundError(errno.ENOENT, "No such file or directory", "model/config.json")))
    assert line.startswith("model/config.json: No such file or directory (the run stopped;")


def test_a_failed_atomic_write_names_the_target_and_leaves_it_whole(tmp_path, monkeypatch):
    path = tmp_path / "samples_piqa.jsonl"
    path.write_text("complete\n")

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(WriteError) as info:
        atomic_write_text(path, "new text\n")
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(path))
    assert path.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_releasing_the_lock_in_a_folder_gone_read_only_does_not_raise(tmp_path, monkeypatch):
    lock = OutputLock(tmp_path).acquire()

    def read_only(self: Path, missing_ok: bool = False) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    lock.release()  # the error that ends the run stays the one reported
    assert not lock.held and (tmp_path / LOCK_FILE).exists()
    monkeypatch.undo()
    OutputLock(tmp_path).acquire().release()  # the file left behind blocks nothing


def test_a_cache_that_cannot_store_raises_a_write_error_naming_it(tmp_path):
    from evalharness.requests import LoglikelihoodRequest, LoglikelihoodResult

    cache = RequestCache(tmp_path / "requests.sqlite", "m")
    cache._db.close()
    cache._db = sqlite3.connect(f"file:{cache.path}?mode=ro", uri=True)  # as a file opened read-only
    with pytest.raises(WriteError) as info:
        cache.put_many([(LoglikelihoodRequest("a", " b"), LoglikelihoodResult(-1.0, True, 1))])
    assert (info.value.filename, info.value.code) == (str(cache.path), "SQLITE_READONLY")
    assert not list(tmp_path.glob("*.damaged-*"))  # a read-only file is not damage
