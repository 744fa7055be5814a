"""The task registry: the shipped tasks plus any folders on the task search path.

A task folder holds task YAMLs (`*.yaml`), optionally a `suites.yaml` (name -> list of tasks, or a mapping with
`tasks`, `num_fewshot` (the suite's shots for every task), `absent` (benchmarks of the suite's source that have no
data here) and `description`), the shipped one a `composites.yaml` (composite scores: evalharness/composite.py),
and the template
files its specs name (in the folder itself or in its `prompts/` subfolder). Folders come from
`--include-path DIR` (repeatable), `evaluate(..., task_paths=[...])` and `EVALHARNESS_TASKS_PATH` (folders
separated by the OS path separator, ':' on Linux). A task or suite name defined twice is an error naming both files.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

from ..errors import ConfigError
from ..resources import resource_dir
from .spec import TaskSpec, parse_task_spec

TASKS_PATH_ENV = "EVALHARNESS_TASKS_PATH"
SUITES_FILE = "suites.yaml"
COMPOSITES_FILE = "composites.yaml"  # composite definitions (evalharness/composite.py), not a task
SUITE_FIELDS = frozenset({"tasks", "num_fewshot", "absent", "description"})


@dataclass(frozen=True)
class SuiteSpec:
    """A named group of tasks. num_fewshot: shots for every task when the suite is run, or a mapping task -> shots
    (tasks not named keep their own); None: each task's own; --num-fewshot overrides it. absent: benchmarks the
    suite stands for whose data is not available, so runs and reports can say what is missing."""

    name: str
    tasks: tuple[str, ...]
    num_fewshot: int | dict[str, int] | None = None
    absent: tuple[str, ...] = ()
    description: str = ""


def _parse_suite(name: str, raw: Any, where: Path) -> SuiteSpec:
    if isinstance(raw, list):
        raw = {"tasks": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: suite {name!r}: expected a list of task names or a mapping with 'tasks'")
    unknown = sorted(set(raw) - SUITE_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: suite {name!r}: unknown field(s) {unknown}; known: {sorted(SUITE_FIELDS)}")
    tasks, absent = raw.get("tasks"), raw.get("absent") or []
    for field_name, value in (("tasks", tasks), ("absent", absent)):
        if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
            raise ConfigError(f"{where}: suite {name!r}: field {field_name!r}: expected a list of task names")
    shots = raw.get("num_fewshot")
    values = list(shots.values()) if isinstance(shots, dict) else [shots]
    if shots is not None and any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in values):
        raise ConfigError(f"{where}: suite {name!r}: field 'num_fewshot': expected an integer >= 0 or a mapping "
                          f"task -> integer >= 0, got {shots!r}")
    if isinstance(shots, dict) and set(shots) - set(tasks):
        raise ConfigError(f"{where}: suite {name!r}: field 'num_fewshot' names task(s) not in the suite: "
                          f"{sorted(set(shots) - set(tasks))}")
    return SuiteSpec(name, tuple(tasks), shots, tuple(absent), str(raw.get("description", "")))


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def search_path(include_paths: Iterable[str | Path] = ()) -> list[Path]:
    """The task folders to load besides the shipped one: `include_paths`, then $EVALHARNESS_TASKS_PATH."""
    env = [p for p in os.environ.get(TASKS_PATH_ENV, "").split(os.pathsep) if p.strip()]
    out: list[Path] = []
    for raw in [*include_paths, *env]:
        path = Path(raw).expanduser()
        if not path.is_dir():
            source = f"${TASKS_PATH_ENV}" if str(raw) in env else "--include-path"
            raise ConfigError(f"{source}: task folder {path} not found (or not a folder)")
        if path.resolve() not in [p.resolve() for p in out]:
            out.append(path)
    return out


class TaskRegistry:
    """Task specs and suites by name: the shipped tasks/ folder (or `tasks_dir`) plus the search path."""

    def __init__(self, tasks_dir: Path | None = None, *, include_paths: Sequence[str | Path] = ()) -> None:
        self.tasks_dir = tasks_dir or resource_dir("tasks")
        self.specs: dict[str, TaskSpec] = {}
        self.suites: dict[str, tuple[str, ...]] = {}
        self.suite_specs: dict[str, SuiteSpec] = {}
        self._suite_files: dict[str, Path] = {}
        if tasks_dir is None:
            self._load_folder(self.tasks_dir, "shipped", ())
        for folder in ([] if tasks_dir is None else [self.tasks_dir]) + search_path(include_paths):
            templates = tuple(str(p) for p in (folder, folder / "prompts") if p.is_dir())
            self._load_folder(folder, str(folder), templates)
        for suite, names in self.suites.items():
            for name in names:
                if name not in self.specs:
                    raise ConfigError(f"{self._suite_files[suite]}: suite {suite!r} names unknown task {name!r}")

    def _load_folder(self, folder: Path, origin: str, templates: tuple[str, ...]) -> None:
        for path in sorted(folder.glob("*.yaml")):
            if path.name in (SUITES_FILE, COMPOSITES_FILE):
                continue
            spec = parse_task_spec(_load_yaml(path), str(path), origin)
            spec = dataclasses.replace(spec, template_dirs=templates)
            if spec.name in self.specs:
                raise ConfigError(f"{path}: task name {spec.name!r} is already defined in {self.specs[spec.name].source_file}")
            self.specs[spec.name] = spec
        suites_file = folder / SUITES_FILE
        raw = _load_yaml(suites_file) if suites_file.exists() else {}
        if not isinstance(raw or {}, dict):
            raise ConfigError(f"{suites_file}: expected a mapping of suite name -> list of task names")
        for suite, entry in (raw or {}).items():
            if suite in self.suites:
                raise ConfigError(f"{suites_file}: suite {suite!r} is already defined in {self._suite_files[suite]}")
            spec = _parse_suite(suite, entry, suites_file)
            self.suites[suite] = spec.tasks
            self.suite_specs[suite] = spec
            self._suite_files[suite] = suites_file

    def get(self, name: str) -> TaskSpec:
        if name not in self.specs:
            raise ConfigError(f"unknown task {name!r}{_did_you_mean(name, self.specs)}; `evalharness list` shows all tasks")
        return self.specs[name]

    def suite(self, name: str) -> tuple[str, ...]:
        if name not in self.suites:
            raise ConfigError(f"unknown suite {name!r}{_did_you_mean(name, self.suites)}; known suites: {', '.join(self.suites)}")
        return self.suites[name]

    def suite_spec(self, name: str) -> SuiteSpec:
        self.suite(name)
        return self.suite_specs[name]

    def resolve(self, tasks: Sequence[str] | str | None, suite: str | None = None) -> tuple[str, ...]:
        """Task names from a comma list (which may name suites) and/or a suite, validated, duplicates removed."""
        names: list[str] = []
        if suite:
            names += self.suite(suite)
        if isinstance(tasks, str):
            tasks = [t for t in tasks.split(",") if t.strip()]
        for t in tasks or []:
            t = t.strip()
            names += self.suite(t) if t in self.suites and t not in self.specs else [t]
        for n in names:
            self.get(n)
        return tuple(dict.fromkeys(names))


def _did_you_mean(name: str, options: Any) -> str:
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.5)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
