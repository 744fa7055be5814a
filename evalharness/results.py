"""Results: the typed outcome of a run (EvalResults, TaskResult), results.json and samples files, atomic writes.

results.json is written once, when a run is complete; each task's samples file when that task is done.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from .write_failure import naming_file

# 2: tasks carry their declarations (headline_metric, subset_average, metrics, baseline, category); "backend"
SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"


@dataclass
class TaskResult:
    """One task's outcome.

    metrics: metric -> value, `<metric>_stderr`, `n` (and `num_subsets`), as in results.json's "results".
    subsets: subset -> the same, for tasks with subsets. info: how it ran (shots, items, seconds, declarations).
    data: data file -> sha256.
    """

    name: str
    metrics: dict[str, Any]
    subsets: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)

    @property
    def headline(self) -> tuple[str, float | None]:
        """(the task's headline metric, its value)."""
        metric = self.info.get("headline_metric") or next(iter(self.metrics))
        value = self.metrics.get(metric)
        return metric, value if isinstance(value, (int, float)) else None


@dataclass
class EvalResults:
    """A run's outcome: every task's results and what produced them. `to_dict()` is results.json."""

    tasks: dict[str, TaskResult]
    config: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    backend: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    eval_seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    scoring_version: str = ""
    distributed: dict[str, Any] | None = None
    cache: dict[str, Any] | None = None
    output_dir: Path | None = None

    @property
    def results(self) -> dict[str, dict[str, Any]]:
        """task -> metrics (results.json's "results")."""
        return {name: t.metrics for name, t in self.tasks.items()}

    @property
    def composites(self) -> dict[str, dict[str, Any]]:
        """results.json's "composites": the default composite (LLM Foundry's gauntlet v0.3,
        tasks/composites.yaml) when one of the run's tasks is among its benchmarks, else empty."""
        from .composite import run_composite

        out = run_composite({n: t.info for n, t in self.tasks.items()}, self.results)
        return {out.definition.name: out.to_dict()} if out is not None else {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "config": self.config,
            "model": self.model,
            "backend": self.backend,
            "results": self.results,
            "groups": {n: t.subsets for n, t in self.tasks.items() if t.subsets},
            "tasks": {n: t.info for n, t in self.tasks.items()},
            "data": {n: t.data for n, t in self.tasks.items()},
            "composites": self.composites,
            "versions": self.versions,
            "scoring_version": self.scoring_version,
            "eval_seconds": self.eval_seconds,
        }
        if self.distributed is not None:
            out["distributed"] = self.distributed
        if self.cache is not None:
            out["cache"] = self.cache
        return out

    def write(self, folder: Path) -> Path:
        """Write results.json into `folder` (atomically); returns its path. A finished run's results.json that
        records tasks this run lacks is moved into `earlier-<time>/` with its files first (earlier_run.py)."""
        from .earlier_run import before_writing_results

        path = Path(folder) / RESULTS_FILE
        before_writing_results(Path(folder), set(self.tasks))
        write_results(path, self.to_dict())
        return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so a reader never sees half a file: on any
    failure `path` is as it was (a WriteError names it, see write_failure.py) and no temporary file is left."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise naming_file(exc, path) from exc
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # the failure to report is the write's, not the clean-up's
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise naming_file(exc, path) from exc
        raise


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_samples(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """One JSON line per item (atomically). A finished run's different samples file in the folder is moved into
    `earlier-<time>/` with the rest of that run first (earlier_run.py)."""
    from .earlier_run import before_writing_samples

    lines = [json.dumps(_json_safe(r), ensure_ascii=False) for r in records]
    text = "\n".join(lines) + ("\n" if lines else "")
    before_writing_samples(path, text)
    atomic_write_text(path, text)


def write_results(path: Path, results: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(_json_safe(results), indent=2, ensure_ascii=False) + "\n")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("evalharness", "torch", "transformers", "tokenizers", "jinja2", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def format_table(results: EvalResults) -> str:
    """A markdown table: task, metric, value ± stderr, n. Each distinct number once: metrics of a task with the
    same value and standard error share a row (MMLU's acc, acc_norm and acc_token coincide: " A".." D")."""
    rows = ["| task | metric | value | ± stderr | n |", "|---|---|---:|---:|---:|"]
    for task, t in results.tasks.items():
        same: dict[tuple[float, float | None], list[str]] = {}
        for name, value in t.metrics.items():
            if name.endswith("_stderr") or name in ("n", "num_subsets") or not isinstance(value, (int, float)):
                continue
            se = t.metrics.get(f"{name}_stderr")
            same.setdefault((float(value), se if isinstance(se, (int, float)) else None), []).append(name)
        for (value, se), names in same.items():
            se_txt = f"{se:.4f}" if se is not None else "-"
            rows.append(f"| {task} | {' = '.join(names)} | {value:.4f} | {se_txt} | {t.metrics.get('n', '')} |")
    for record in results.composites.values():
        rows += ["", *format_composite(record)]
    return "\n".join(rows)


def format_composite(record: dict[str, Any]) -> list[str]:
    """A composite record (results.json's composites.<name>) as markdown lines: each category and average, the
    benchmarks it used and those absent, and what the absence means."""
    cats = record["categories"]
    total = sum(len(c["benchmarks"]) + len(c["absent"]) for c in cats.values())
    head = f"{record['title']}: {len(record['benchmarks'])} of {total} benchmarks"
    if all(c["value"] is None for c in cats.values()):  # nothing to show but absences: one line
        return [f"{head}; no category complete, so no composite (results.json 'composites' lists what is absent)"]
    out = [head + (f"; absent: {_absent_text(record)}" if record["absent"] else ""),
           "", "| composite | value | benchmarks used | absent |", "|---|---:|---|---|"]
    for name, c in cats.items():
        value = _composite_value(c["value"], c["present_mean"], len(c["benchmarks"]), len(c["absent"]))
        out.append(f"| {name} | {value} | {', '.join(c['benchmarks']) or '-'} | {', '.join(c['absent']) or '-'} |")
    for name, a in record["averages"].items():
        value = "—" if a["value"] is None else f"{a['value']:.4f}"
        left_out = [c for c in a["categories"] if c not in a["categories_used"]]
        out.append(f"| {name} | {value} | {len(a['categories_used'])} of {len(a['categories'])} categories | "
                   f"{', '.join(left_out) or '-'} |")
    if record["absent"]:
        out += ["", f"Absent benchmarks: {record['rule']['missing_means']}."]
    out += [f"Note: {n}" for n in record.get("notes", [])]
    return out


def _composite_value(value: float | None, present: float | None, used: int, absent: int) -> str:
    if value is not None:
        return f"{value:.4f}"
    if present is None:
        return "—"
    return f"— (mean of the {used} present: {present:.4f})"


def _absent_text(record: dict[str, Any]) -> str:
    reasons: dict[str, list[str]] = {}
    for name, why in record["absent"].items():
        reasons.setdefault(why, []).append(name)
    return "; ".join(f"{len(names)} without a result" if why == "no result" else f"{', '.join(names)} ({why})"
                     for why, names in reasons.items())
