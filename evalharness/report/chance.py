"""Chance level per task row: the random-guess value the task declares (`baseline`, of its headline metric),
and whether a value is not clearly above it."""

from __future__ import annotations

from dataclasses import replace

from .declarations import shipped_declarations
from .layouts import TableLayout
from .protocol import Protocol
from .runs import Run
from .tables import Comparison, row_source


def row_baselines(runs: list[Run], protocols: dict[str, Protocol],
                  layout: TableLayout | None = None) -> dict[str, float | None]:
    """Each row's chance level: the baseline declared by the first run that has the task (else by the shipped
    task of the row's name), when the row shows the declared headline metric; None otherwise."""
    out: dict[str, float | None] = {}
    for row, proto in protocols.items():
        declared = None
        for run in runs:
            task = row_source(run, row, layout)
            if task is not None:
                declared = run.declarations(task)
                break
        declared = declared or shipped_declarations(row)
        usable = declared is not None and declared.baseline is not None and declared.headline_metric == proto.metric
        out[row] = float(declared.baseline) if usable else None
    return out


def with_baselines(comp: Comparison, runs: list[Run], layout: TableLayout | None = None) -> Comparison:
    """The comparison with each row's chance level filled in."""
    return replace(comp, baselines=row_baselines(runs, comp.protocols, layout))


def near_chance(value: float, stderr: float | None, baseline: float | None, higher_is_better: bool = True) -> bool:
    """True when `value` is not above chance by more than its standard error (a published value, without one,
    when it is not above chance at all)."""
    if baseline is None:
        return False
    lead = value - baseline if higher_is_better else baseline - value
    se = stderr if stderr is not None and stderr == stderr else 0.0
    return lead <= se
