"""A finished run's files are never overwritten by a different run that fails or stops part-way.

A folder holding results.json holds a finished run (results.json is written only when a run is complete).
A later run in that folder that would write something different (a samples file with other lines, or a
results.json without some of its tasks) first moves the finished run's files into `earlier-<its time>/`,
so what is left in the folder always belongs to one run. The same command again (a resume, a rerun) writes
identical files and moves nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

from .write_failure import naming_file

RESULTS_FILE = "results.json"
RUN_FILES = ("results.json", "report.html", "samples_*.jsonl")

log = logging.getLogger("evalharness")


def finished_run_tasks(folder: Path) -> set[str] | None:
    """The tasks recorded by the folder's results.json; None without one (set() if it cannot be read)."""
    try:
        record = json.loads((folder / RESULTS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return set()
    results = record.get("results") if isinstance(record, dict) else None
    return set(results) if isinstance(results, dict) else set()


def archive_finished_run(folder: Path, why: str) -> Path | None:
    """Move the finished run's files (results.json, report.html, samples_*.jsonl) into `earlier-<time>/`;
    the new folder, or None when the folder holds no finished run."""
    results = folder / RESULTS_FILE
    if not results.exists():
        return None
    try:
        created = json.loads(results.read_text(encoding="utf-8")).get("created") or ""
    except (OSError, ValueError, AttributeError):
        created = ""
    stamp = str(created).replace(":", "").replace("+0000", "Z") or "unknown-time"
    target, n = folder / f"earlier-{stamp}", 1
    while target.exists():
        n += 1
        target = folder / f"earlier-{stamp}-{n}"
    target.mkdir()
    finished_at = results.stat().st_mtime_ns  # results.json is the finished run's last file
    recorded = finished_run_tasks(folder) or set()
    for pattern in RUN_FILES:
        for path in sorted(folder.glob(pattern)):
            if path.name.startswith("samples_") and path.stat().st_mtime_ns > finished_at:
                # written by this run (the same lines as the finished run's, or none were there): it stays;
                # the finished run keeps a copy of its own task's file
                if path.name[len("samples_"):-len(".jsonl")] in recorded:
                    copy_whole(path, target / path.name)
                continue
            os.replace(path, target / path.name)
    log.warning(f"{folder}: {why}; the finished run's files are kept in {target.name}/")
    return target


def copy_whole(source: Path, target: Path) -> None:
    """Copy through a temporary name, so that `target` is whole or absent (a full disk leaves no half copy); a
    failure is a WriteError naming `target`."""
    part = target.with_name(f".{target.name}.part")
    try:
        shutil.copy2(source, part)
        os.replace(part, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            part.unlink(missing_ok=True)
        raise naming_file(exc, target) from exc


def before_writing_samples(path: Path, text: str) -> None:
    """Called before a samples file is written: a finished run's different samples file is not overwritten."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError):
        pass
    archive_finished_run(path.parent, f"this run's {path.name} differs from the finished run's")


def before_writing_results(folder: Path, tasks: set[str]) -> None:
    """Called before results.json is written: one recording other tasks (or unreadable) is not overwritten."""
    recorded = finished_run_tasks(folder)
    if recorded is None or (recorded and recorded <= tasks):
        return
    missing = ", ".join(sorted(recorded - tasks)) or "an unreadable results.json"
    archive_finished_run(folder, f"this run lacks {missing} of the finished run")
