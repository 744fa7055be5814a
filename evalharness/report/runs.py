"""Our runs as reports see them: results.json (+ samples_<task>.jsonl beside it), labelled and summarised."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .declarations import TaskDeclarations, from_results


@dataclass(frozen=True)
class Run:
    """One results.json. `folder` is where its samples files are (None for an in-memory run)."""

    label: str
    data: dict[str, Any]
    folder: Path | None = None

    @property
    def tasks(self) -> list[str]:
        return list(self.data.get("results", {}))

    def task_info(self, task: str) -> dict[str, Any]:
        return self.data.get("tasks", {}).get(task, {})

    def num_fewshot(self, task: str) -> int | None:
        shots = self.task_info(task).get("fewshot", {}).get("num_fewshot")
        if shots is None:
            shots = self.data.get("config", {}).get("num_fewshot")
        return shots if isinstance(shots, int) else 0 if shots is None else None

    def prompt_format(self, task: str) -> str:
        """The task's prompt format label: "" for plain prompts, else its chat template / system instruction."""
        from ..chat import label_of

        return label_of(self.task_info(task).get("prompt_format"))

    def declarations(self, task: str) -> TaskDeclarations:
        """What the task's numbers mean (headline metric, directions, harnesses, baseline, category)."""
        return from_results(task, self.task_info(task), list(self.data["results"].get(task, {})))

    def headline_aggregate(self, task: str) -> str | None:
        """'micro'/'macro' for tasks with subsets (what the unsuffixed metric averages), else None."""
        return self.declarations(task).subset_average

    def metric(self, task: str, key: str, subset: str = "") -> tuple[float | None, float | None, int | None]:
        """(value, stderr, n) of a metric key for the task, or one subset of it; Nones when absent."""
        source = self.data.get("groups", {}).get(task, {}).get(subset, {}) if subset else self.data["results"].get(task, {})
        value = source.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None, None, None
        stderr = source.get(f"{key}_stderr")
        return float(value), float(stderr) if isinstance(stderr, (int, float)) else None, source.get("n")

    def subsets(self, task: str) -> list[str]:
        return list(self.data.get("groups", {}).get(task, {}))

    def samples(self, task: str, limit: int | None) -> list[dict[str, Any]]:
        """The first `limit` lines of samples_<task>.jsonl, or all of them for None (fewer if the file is shorter
        or absent)."""
        path = self.folder / f"samples_{task}.jsonl" if self.folder else None
        if path is None or not path.is_file() or (limit is not None and limit <= 0):
            return []
        out = []
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    out.append(json.loads(line))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def data_fingerprint(self) -> str:
        """sha256 over every data file's (path, sha256) pair: equal for runs on identical data files."""
        files = sorted({(p, h) for per_task in self.data.get("data", {}).values() for p, h in per_task.items()})
        return hashlib.sha256("\n".join(f"{p} {h}" for p, h in files).encode()).hexdigest()[:16] if files else ""

    def model_name(self) -> str:
        model = self.data.get("model", {})
        name = model.get("name") or self.data.get("config", {}).get("model") or "model"
        return Path(str(name)).name or str(name)


def read_results(path: Path | str) -> dict[str, Any]:
    """results.json content; `path` may be the file or the folder holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"results file {path} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable results.json ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ConfigError(f"{path}: not an evalharness results.json (no 'results' object)")
    return data


def expand_paths(paths: list[Path | str]) -> list[Path]:
    """The paths, with a folder that holds no results.json but run folders (the Composer callback's `output_dir`)
    replaced by those run folders, in name order."""
    out = []
    for p in map(Path, paths):
        inner = sorted(f.parent for f in p.glob("*/results.json")) if p.is_dir() and not (p / "results.json").exists() else []
        out += inner or [p]
    return out


def load_runs(paths: list[Path | str]) -> list[Run]:
    """Runs labelled by model name; equal names get their shots, dtype or a number added. A folder of run
    folders stands for all of them."""
    return label_runs([(read_results(p), p if p.is_dir() else p.parent) for p in expand_paths(paths)])


def label_runs(items: list[tuple[dict[str, Any], Path | None]]) -> list[Run]:
    """Label = model name; runs sharing one get the training batch, then the shots, the prompt format and the dtype
    that tell them apart, else #2, #3."""
    runs = [Run(Run("", d).model_name(), d, folder) for d, folder in items]
    for extra in (_step_label, _shots_label, _format_label, _dtype_label):
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(runs):
            groups.setdefault(r.label, []).append(i)
        for members in groups.values():
            if len(members) > 1 and len({extra(runs[i]) for i in members}) > 1:
                for i in members:
                    runs[i] = Run(f"{runs[i].label} ({extra(runs[i])})", runs[i].data, runs[i].folder)
    seen: dict[str, int] = {}
    out = []
    for r in runs:
        seen[r.label] = seen.get(r.label, 0) + 1
        out.append(r if seen[r.label] == 1 else Run(f"{r.label} #{seen[r.label]}", r.data, r.folder))
    return out


def _step_label(run: Run) -> str:
    """`ba<batch>` for a run of weights from a training step (results.json's model.composer), else ""."""
    batch = run.data.get("model", {}).get("composer", {}).get("batch")
    return f"ba{batch}" if isinstance(batch, int) and not isinstance(batch, bool) else ""


def _shots_label(run: Run) -> str:
    shots = sorted({run.num_fewshot(t) for t in run.tasks}, key=lambda s: -1 if s is None else s)
    return "/".join(f"{s}-shot" for s in shots if s is not None)


def _format_label(run: Run) -> str:
    formats = sorted({run.prompt_format(t) for t in run.tasks})
    return "; ".join(f or "plain" for f in formats)


def _dtype_label(run: Run) -> str:
    return str(run.data.get("config", {}).get("dtype") or "")
