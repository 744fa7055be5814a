"""The board's fair summaries of each row (model): the mean over the tasks that every row shown has a comparable
value for ("7/12 tasks"), and a gauntlet-style composite over those of them that declare a chance level and a
category (each score minus chance, over 1 - chance; a category is the mean of its tasks; the composite the mean
of the categories: evalharness.composite's rule, here over the board's own tasks)."""

from __future__ import annotations

from dataclasses import dataclass

from ..composite import CompositeDefinition, Declaration, compute
from .tables import Comparison, format_value


@dataclass(frozen=True)
class BoardAverages:
    """Per column label, the fair average and the composite (None where not defined)."""

    tasks: list[str]  # comparable for every row, higher is better: what the average covers
    total: int  # the board's tasks
    averages: dict[str, float | None]
    composite_tasks: list[str]  # those of `tasks` with a chance level and a category
    categories: list[str]
    composites: dict[str, float | None]

    @property
    def coverage(self) -> str:
        """'7/12 tasks'."""
        return f"{len(self.tasks)}/{self.total} tasks"

    @property
    def composite_coverage(self) -> str:
        """'5 tasks, 3 categories'."""
        n, c = len(self.composite_tasks), len(self.categories)
        return f"{n} task{'s' if n != 1 else ''}, {c} categor{'ies' if c != 1 else 'y'}"

    def ranking_key(self, label: str) -> float | None:
        """What the board ranks by: the composite when there is one, else the fair average."""
        return self.composites.get(label) if self.composite_tasks else self.averages.get(label)


def fair_tasks(comp: Comparison) -> list[str]:
    """The tasks (higher is better) for which every column has a comparable value, in board order."""
    c = comp.cells
    rows = c[c.subset == ""]
    out = []
    for task in comp.tasks:
        if not comp.protocols[task].higher_is_better:
            continue
        mine = rows[rows.task == task]
        ok = {col for col, good in zip(mine.column, mine.comparable & mine.value.notna()) if good}
        if comp.columns and all(col.label in ok for col in comp.columns):
            out.append(task)
    return out


def _values(comp: Comparison, label: str, tasks: list[str]) -> dict[str, float]:
    c = comp.cells
    rows = c[(c.subset == "") & (c.column == label) & c.task.isin(tasks)]
    return {t: float(v) for t, v in zip(rows.task, rows.value)}


def board_averages(comp: Comparison) -> BoardAverages:
    """The fair average and the composite of every column of the comparison (its `baselines` and `categories`
    filled in: chance.with_baselines)."""
    tasks = fair_tasks(comp)
    labels = [col.label for col in comp.columns]
    averages = {}
    for label in labels:
        values = _values(comp, label, tasks)
        averages[label] = sum(values.values()) / len(values) if values else None
    declared = {t: Declaration(comp.categories[t], comp.baselines[t]) for t in tasks
                if comp.baselines.get(t) is not None and comp.categories.get(t) and comp.baselines[t] < 1}
    categories = list(dict.fromkeys(d.category for d in declared.values()))
    composites: dict[str, float | None] = {label: None for label in labels}
    if declared:
        definition = CompositeDefinition("board", "the board's tasks", {t: None for t in declared},
                                         tuple(categories), {"average": tuple(categories)})
        for label in labels:
            composites[label] = compute(definition, _values(comp, label, list(declared)), declared).averages["average"]
    return BoardAverages(tasks, len(comp.tasks), averages, list(declared), categories, composites)


def summary_rows(comp: Comparison) -> list[list[str]]:
    """The markdown table's last lines: the average and (when defined) the composite of each column."""
    summary = board_averages(comp)
    labels = [col.label for col in comp.columns]
    rows = [["average", summary.coverage, "", "", ", ".join(summary.tasks) or "no task comparable for every column"]
            + [format_value(summary.averages[label]) for label in labels]]
    if summary.composite_tasks:
        rows.append(["composite", summary.composite_coverage, "", "", "chance subtracted, rescaled, by category"]
                    + [format_value(summary.composites[label]) for label in labels])
    return rows
