"""Report layouts (`evalharness report --layout NAME`): fixed table shapes from reports/layouts.yaml, plus the
built-in `gauntlet` layout (models x gauntlet categories, report/gauntlet.py).

A table layout fixes the rows (published task labels, in order), the shots of a row that no run has, the
published models compared, and which of a run's tasks may stand on a row of another name (with what differs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..resources import resource_dir

LAYOUTS_FILE = "layouts.yaml"
GAUNTLET = "gauntlet"


@dataclass(frozen=True)
class TableLayout:
    """rows: task labels in order; run_tasks: row -> {a run's task shown there: what differs}."""

    name: str
    title: str
    rows: tuple[str, ...]
    num_fewshot: int | None = None
    compare: tuple[str, ...] = ()
    run_tasks: dict[str, dict[str, str]] = field(default_factory=dict)

    def sources(self, row: str) -> list[str]:
        """The task names a run may have for this row: the row's own name first."""
        return [row, *self.run_tasks.get(row, {})]


def _parse(name: str, raw: Any, where: str) -> TableLayout:
    where = f"{where}: layout {name!r}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(raw) - {"title", "num_fewshot", "compare", "tasks", "run_tasks"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    rows = raw.get("tasks")
    if not isinstance(rows, list) or not rows or not all(isinstance(t, str) for t in rows):
        raise ConfigError(f"{where}: tasks: expected a list of task names")
    shots = raw.get("num_fewshot")
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 0):
        raise ConfigError(f"{where}: num_fewshot: expected a whole number, got {shots!r}")
    run_tasks = raw.get("run_tasks") or {}
    if not isinstance(run_tasks, dict) or any(r not in rows or not isinstance(m, dict) for r, m in run_tasks.items()):
        raise ConfigError(f"{where}: run_tasks: expected row -> {{task: what differs}} for rows of this layout")
    return TableLayout(name, str(raw.get("title") or name), tuple(rows), shots,
                       tuple(str(m).lower() for m in raw.get("compare") or ()),
                       {r: {str(t): str(why) for t, why in m.items()} for r, m in run_tasks.items()})


def load_layouts(path: Path | str | None = None) -> dict[str, TableLayout]:
    path = Path(path) if path is not None else resource_dir("reports") / LAYOUTS_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of layout name -> layout")
    if GAUNTLET in raw:
        raise ConfigError(f"{path}: {GAUNTLET!r} is a built-in layout")
    return {name: _parse(name, body, str(path)) for name, body in raw.items()}


@cache
def shipped_layouts() -> dict[str, TableLayout]:
    return load_layouts()


def layout_names() -> list[str]:
    return [*shipped_layouts(), GAUNTLET]


def get_layout(name: str) -> TableLayout | None:
    """The table layout `name`; None for the gauntlet layout; an error naming the known ones otherwise."""
    if name == GAUNTLET:
        return None
    layouts = shipped_layouts()
    if name not in layouts:
        raise ConfigError(f"unknown report layout {name!r} (choose from {', '.join(layout_names())})")
    return layouts[name]
