"""Files a real run cannot write: its output folder made read-only, the disk full, its request cache file
read-only, at the start and part-way. Each ends in one line naming the file and the cause (exit 2), leaves every
complete file whole, and `--resume` after the fix gives the results of an uninterrupted run, item by item."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import sqlite3
import subprocess
from pathlib import Path
from typing import Callable

from support.cli import cli, error_line
from support.fault_runs import results_of, run_args, samples_files, start_run, wait_for
from support.fs_faults import ReadOnly, fill, immutable, tmpfs


def _faulted_mid_run(args: list[str], out: Path, cwd: Path, data_dir: Path,
                     fault: Callable[[], object]) -> subprocess.CompletedProcess:
    """Run; once the model is loaded and the request cache open (batches are being answered), stop the run, do
    `fault`, let it go on to its end."""
    proc = start_run(args, cwd, data_dir)
    try:
        wait_for(out / "requests.sqlite-wal", proc)
        proc.send_signal(signal.SIGSTOP)
        try:
            fault()
        finally:
            proc.send_signal(signal.SIGCONT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _stopped(line: str, files: str, cause: str, advice: str) -> bool:
    """The one line: `cannot write <one of files>: <cause> (the run stopped; <advice> and rerun with --resume)`."""
    return re.fullmatch(rf"evalharness: error: cannot write ({files}): ({cause}) \(the run stopped; {advice} and "
                        r"rerun with --resume\)", line) is not None


def _nothing_half_written(out: Path, reference: Path) -> None:
    """No results.json, no temporary file left, every samples file there is the uninterrupted run's."""
    assert not (out / "results.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith((".samples_", ".results.json", ".report.html"))]
    expected = samples_files(reference)
    for name, text in samples_files(out).items():
        assert text == expected[name], name


def _sound(cache: Path) -> None:
    with contextlib.closing(sqlite3.connect(cache)) as db:
        assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]


def _resumed_as_uninterrupted(out: Path, reference: Path, model: Path, cwd: Path, data_dir: Path) -> str:
    """--resume completes the folder with the uninterrupted run's files; its stdout."""
    proc = cli(*run_args(model, out, "--resume"), cwd=cwd, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "damaged" not in proc.stderr
    assert results_of(out) == results_of(reference)
    assert samples_files(out) == samples_files(reference)
    return proc.stdout


def _folder(out: Path) -> str:
    return re.escape(str(out))


def test_output_folder_made_read_only(reference, tiny_mpt_dir, data_dir, tmp_path):
    """A read-only bind mount over the folder: files the run has open stay writable (the request cache), new
    ones fail, as after `chmod a-w` for a user."""
    out = tmp_path / "out"
    out.mkdir()
    read_only = ReadOnly(out).check()
    try:
        read_only.on()  # at the start: refused before the model loads
        line = error_line(cli(*run_args(tiny_mpt_dir, out), cwd=tmp_path, data_dir=data_dir))
        assert line == f"evalharness: error: output directory {out} cannot be written ({out} is not a writable folder)"
        read_only.off()

        proc = _faulted_mid_run(run_args(tiny_mpt_dir, out), out, tmp_path, data_dir, read_only.on)
        line = error_line(proc)
        assert _stopped(line, rf"{_folder(out)}/samples_(lambada_openai|piqa)\.jsonl", "Read-only file system",
                        "make it writable"), line
        _nothing_half_written(out, reference)
    finally:
        read_only.off()
    _sound(out / "requests.sqlite")
    stdout = _resumed_as_uninterrupted(out, reference, tiny_mpt_dir, tmp_path, data_dir)
    assert re.search(r"request cache: (8|24) reused", stdout), stdout  # the answers computed before are kept


def test_disk_full(reference, tiny_mpt_dir, data_dir, tmp_path):
    """A small tmpfs filled to its last byte: before the run, then part-way (while the run answers batches)."""
    with tmpfs(tmp_path / "disk", "8m") as disk:
        out = disk / "out"
        filler = fill(disk)
        line = error_line(cli(*run_args(tiny_mpt_dir, out), cwd=tmp_path, data_dir=data_dir))
        assert line == (f"evalharness: error: cannot write {out}/.evalharness.lock: No space left on device (the run "
                        "stopped; free space and rerun with --resume)")
        filler.unlink()

        proc = _faulted_mid_run(run_args(tiny_mpt_dir, out, "--resume"), out, tmp_path, data_dir, lambda: fill(disk))
        line = error_line(proc)
        assert _stopped(line, rf"{_folder(out)}/(requests\.sqlite|samples_(lambada_openai|piqa)\.jsonl)",
                        "database or disk is full|No space left on device", "free space"), line
        _nothing_half_written(out, reference)
        filler.unlink()
        _sound(out / "requests.sqlite")
        _resumed_as_uninterrupted(out, reference, tiny_mpt_dir, tmp_path, data_dir)


def test_request_cache_made_read_only(reference, tiny_mpt_dir, data_dir, tmp_path):
    """`chattr +i` on requests.sqlite of an interrupted run (4 answers missing): the resume stops at its first
    stored batch. Then made read-only part-way, while the run has the file open: where the file system refuses
    writes to an immutable open file (ext4) the run stops the same way; where it does not (tmpfs) it completes."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(reference / "samples_lambada_openai.jsonl", out)
    cache = Path(shutil.copy(reference / "requests.sqlite", out))
    with contextlib.closing(sqlite3.connect(cache)) as db, db:
        db.execute("DELETE FROM results WHERE key IN (SELECT key FROM results ORDER BY key LIMIT 4)")
    expected = (f"evalharness: error: cannot write {cache}: attempt to write a readonly database (the run stopped; "
                "make it writable and rerun with --resume)")
    lambada = {"samples_lambada_openai.jsonl": samples_files(reference)["samples_lambada_openai.jsonl"]}
    with immutable(cache):
        assert error_line(cli(*run_args(tiny_mpt_dir, out, "--resume"), cwd=tmp_path, data_dir=data_dir)) == expected
        _nothing_half_written(out, reference)
        assert samples_files(out) == lambada

    with contextlib.ExitStack() as fixed:
        proc = _faulted_mid_run(run_args(tiny_mpt_dir, out, "--resume"), out, tmp_path, data_dir,
                                lambda: fixed.enter_context(immutable(cache)))
        if proc.returncode == 0:
            assert "request cache: 20 reused, 4 computed" in proc.stdout
        else:
            assert error_line(proc) == expected
            _nothing_half_written(out, reference)
    _sound(cache)
    _resumed_as_uninterrupted(out, reference, tiny_mpt_dir, tmp_path, data_dir)
