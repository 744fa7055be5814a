"""results.json and samples_<task>.jsonl: schemas, atomic writes, the printed table."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
    lines = [json.dumps(_json_safe(r), ensure_ascii=False) for r in records]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


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


def format_table(results: dict[str, dict[str, Any]], groups: dict[str, dict[str, Any]] | None = None) -> str:
    """A markdown table: task, metric, value ± stderr, n (subsets of tasks with subsets are not expanded)."""
    rows = ["| task | metric | value | ± stderr | n |", "|---|---|---:|---:|---:|"]
    for task, metrics in results.items():
        for name, value in metrics.items():
            if name.endswith("_stderr") or name in ("n", "num_subsets") or not isinstance(value, (int, float)):
                continue
            se = metrics.get(f"{name}_stderr")
            se_txt = f"{se:.4f}" if isinstance(se, (int, float)) else "-"
            rows.append(f"| {task} | {name} | {value:.4f} | {se_txt} | {metrics.get('n', '')} |")
    return "\n".join(rows)
