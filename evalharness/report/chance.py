"""What each task row declares beyond its protocol: its chance level (the random-guess value of the task's
headline metric, `baseline`) and its category, and whether a value is not clearly above chance."""

from __future__ import annotations

from dataclasses import replace

from .declarations import TaskDeclarations, shipped_declarations
from .layouts import TableLayout
from .protocol import Protocol
from .runs import Run
from .tables import Comparison, row_source


def row_declarations(runs: list[Run], protocols: dict[str, Protocol],
                     layout: TableLayout | None = None) -> dict[str, TaskDeclarations | None]:
    """Each row's declarations: those of the first run that has the task, else the shipped task of its name."""
    out: dict[str, TaskDeclarations | None] = {}
    for row in protocols:
        declared = None
        for run in runs:
            task = row_source(run, row, layout)
            if task is not None:
                declared = run.declarations(task)
                break
        out[row] = declared or shipped_declarations(row)
    return out


def row_baselines(runs: list[Run], protocols: dict[str, Protocol],
                  layout: TableLayout | None = None) -> dict[str, float | None]:
    """Each row's chance level: the declared baseline, when the row shows the declared headline metric."""
    declared = row_declarations(runs, protocols, layout)
    return {row: float(d.baseline) if d is not None and d.baseline is not None
            and d.headline_metric == protocols[row].metric else None for row, d in declared.items()}


def with_baselines(comp: Comparison, runs: list[Run], layout: TableLayout | None = None) -> Comparison:
    """The comparison with each row's chance level and category filled in."""
    declared = row_declarations(runs, comp.protocols, layout)
    return replace(comp, baselines=row_baselines(runs, comp.protocols, layout),
                   categories={row: d.category if d is not None else None for row, d in declared.items()})


def near_chance(value: float, stderr: float | None, baseline: float | None, higher_is_better: bool = True) -> bool:
    """True when `value` is not above chance by more than its standard error (a published value, without one,
    when it is not above chance at all)."""
    if baseline is None:
        return False
    lead = value - baseline if higher_is_better else baseline - value
    se = stderr if stderr is not None and stderr == stderr else 0.0
    return lead <= se
