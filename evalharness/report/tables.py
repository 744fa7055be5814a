"""The comparison table: tasks x (our runs + published references), as one long pandas DataFrame.

Each task row has a protocol (headline metric, average, shots, harness) taken from the first run that
has the task. A value obtained under another protocol is never ranked with the others: it is marked
with a footnote that says what differs. The best comparable value of a row (when there are two or more)
is highlighted when its lead over the second exceeds their combined standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from .declarations import shipped_declarations
from .layouts import TableLayout
from .protocol import Protocol, differences, results_key, split_metric_key
from .references import Reference, select
from .runs import Run

CELL_COLUMNS = ["task", "subset", "column", "kind", "model", "metric", "aggregate", "num_fewshot", "harness",
                "value", "stderr", "n", "comparable", "best", "footnote", "reason", "note", "source"]


@dataclass(frozen=True)
class Column:
    """A column of the table: one of our runs or one published model."""

    label: str
    kind: str  # "run" or "reference"
    model: str  # the run's label, or the reference model's slug


@dataclass(frozen=True)
class Comparison:
    """Long-form cells (CELL_COLUMNS; subset '' is the task row) plus what is needed to lay them out."""

    cells: pd.DataFrame
    tasks: list[str]
    columns: list[Column]
    protocols: dict[str, Protocol]
    footnotes: list[str]
    title: str = ""

    def cell(self, task: str, column: str, subset: str = "") -> pd.Series:
        c = self.cells
        hit = c[(c.task == task) & (c.column == column) & (c.subset == subset)]
        if hit.empty:
            raise KeyError((task, column, subset))
        return hit.iloc[0]

    def subsets(self, task: str) -> list[str]:
        c = self.cells
        return list(dict.fromkeys(c[(c.task == task) & (c.subset != "")].subset))

    def average(self, column: str) -> float | None:
        """Mean over all tasks of the column's values; None unless every task has a comparable value."""
        c = self.cells
        rows = c[(c.column == column) & (c.subset == "")]
        if len(rows) != len(self.tasks) or not rows.comparable.all() or rows.value.isna().any():
            return None
        return float(rows.value.mean())


def row_source(run: Run, row: str, layout: TableLayout | None = None) -> str | None:
    """The run's task shown on `row`: the task of that name, else (with a layout) one it allows there."""
    for task in layout.sources(row) if layout is not None else [row]:
        if task in run.tasks:
            return task
    return None


def row_protocols(runs: list[Run], metrics: dict[str, str] | None = None, layout: TableLayout | None = None,
                  references: list[Reference] = (), compare: list[str] = ()) -> dict[str, Protocol]:
    """Each row's protocol, from the first run that has it (`metrics` overrides the headline: task -> key).

    With a layout the rows are the layout's; a row no run has takes the shipped task's declarations at the
    layout's shots, else the protocol of the first compared model's published value at those shots."""
    rows = list(layout.rows) if layout is not None else list(dict.fromkeys(t for run in runs for t in run.tasks))
    out: dict[str, Protocol] = {}
    for row in rows:
        for run in runs:
            task = row_source(run, row, layout)
            if task is None:
                continue
            declared = run.declarations(task)
            key = (metrics or {}).get(row) or (metrics or {}).get(task) or declared.headline_metric or "acc"
            metric, aggregate = split_metric_key(key)
            aggregate = aggregate or declared.subset_average
            out[row] = Protocol(metric, aggregate, run.num_fewshot(task), declared.harnesses_of(metric),
                                declared.is_higher_better(metric), run.prompt_format(task))
            break
        else:
            out[row] = _layout_protocol(row, layout, references, compare)
    return out


def _layout_protocol(row: str, layout: TableLayout | None, references: list[Reference],
                     compare: list[str]) -> Protocol:
    shots = layout.num_fewshot if layout is not None else None
    declared = shipped_declarations(row)
    if declared is not None and declared.headline_metric is not None:  # a shipped task of that name
        return Protocol(declared.headline_metric, declared.subset_average, shots,
                        declared.harnesses_of(declared.headline_metric),
                        declared.is_higher_better(declared.headline_metric))
    for model in compare:
        ref = select(list(references), model, row, "", Protocol("", None, shots, frozenset()))
        if ref is not None:
            return Protocol(ref.metric, ref.aggregate, shots, frozenset({ref.harness}))
    return Protocol("acc", None, shots, frozenset({"evalharness"}))


def _run_cells(run: Run, task: str, row: Protocol, layout: TableLayout | None = None) -> list[dict]:
    source = row_source(run, task, layout)
    proto = Protocol(row.metric, row.aggregate, run.num_fewshot(source or task), row.harnesses,
                     prompt_format=run.prompt_format(source) if source is not None else "")
    reasons = differences(row, proto)
    if source is not None and source != task:
        reasons.insert(0, f"our task {source}: {layout.run_tasks[task][source]}" if layout else source)
    base = {"task": task, "column": run.label, "kind": "run", "model": run.label, "metric": row.metric,
            "aggregate": row.aggregate, "num_fewshot": proto.num_fewshot, "harness": "/".join(sorted(row.harnesses)),
            "reason": "; ".join(reasons), "note": "", "source": ""}
    if source is None:
        return [{**base, "subset": "", "value": None, "stderr": None, "n": None, "reason": ""}]
    key = results_key(row.metric, row.aggregate, run.headline_aggregate(source))
    value, stderr, n = run.metric(source, key)
    cells = [{**base, "subset": "", "value": value, "stderr": stderr, "n": n}]
    for subset in run.subsets(source):
        value, stderr, n = run.metric(source, row.metric, subset)
        cells.append({**base, "subset": subset, "aggregate": None, "value": value, "stderr": stderr, "n": n})
    return cells


def _reference_cell(refs: list[Reference], model: str, label: str, task: str, subset: str, row: Protocol) -> dict:
    ref = select(refs, model, task, subset, row)
    base = {"task": task, "subset": subset, "column": label, "kind": "reference", "model": model, "stderr": None,
            "n": None}
    if ref is None:
        return {**base, "metric": row.metric, "aggregate": None, "num_fewshot": None, "harness": "", "value": None,
                "reason": "", "note": "", "source": ""}
    return {**base, "metric": ref.metric, "aggregate": ref.aggregate, "num_fewshot": ref.num_fewshot,
            "harness": ref.harness, "value": ref.value, "reason": "; ".join(differences(row, ref.protocol)),
            "note": ref.note, "source": ref.source}


def build_comparison(runs: list[Run], references: list[Reference] = (), compare: list[str] = (),
                     metrics: dict[str, str] | None = None, layout: TableLayout | None = None) -> Comparison:
    """The comparison of `runs` with the published scores of the `compare` models (slugs, lower case); with a
    layout, its rows in its order (the runs' other tasks are left out)."""
    refs = list(references)
    protocols = row_protocols(runs, metrics, layout, refs, list(compare))
    tasks = list(protocols)
    names = {r.model: r.display_name for r in reversed(refs)}
    columns = [Column(r.label, "run", r.label) for r in runs]
    taken = {r.label for r in runs}
    for m in dict.fromkeys(compare):
        label = names.get(m, m)
        columns.append(Column(label if label not in taken else f"{label} (published)", "reference", m))
    rows: list[dict] = []
    for task in tasks:
        row = protocols[task]
        task_rows: list[dict] = []
        for run in runs:
            task_rows += _run_cells(run, task, row, layout)
        subsets = list(dict.fromkeys(c["subset"] for c in task_rows if c["subset"]))
        for col in columns[len(runs):]:
            task_rows.append(_reference_cell(refs, col.model, col.label, task, "", row))
            for subset in subsets:
                cell = _reference_cell(refs, col.model, col.label, task, subset, row)
                if cell["value"] is not None:
                    task_rows.append(cell)
        task_rows.sort(key=lambda c: c["subset"] != "")  # the task row's cells first, then the subsets
        rows += task_rows
    cells = pd.DataFrame(rows, columns=[c for c in CELL_COLUMNS if c not in ("comparable", "best", "footnote")])
    cells["subset"] = cells["subset"].astype(str)
    cells["value"] = pd.to_numeric(cells["value"], errors="coerce").astype(float)
    cells["stderr"] = pd.to_numeric(cells["stderr"], errors="coerce").astype(float)
    cells["n"] = pd.array(cells["n"], dtype="Int64")
    cells["num_fewshot"] = pd.array(cells["num_fewshot"], dtype="Int64")
    cells["comparable"] = cells["reason"] == ""
    cells["best"] = _best(cells, protocols)
    cells["footnote"], footnotes = _footnotes(cells)
    return Comparison(cells[CELL_COLUMNS], tasks, columns, protocols, footnotes, layout.title if layout else "")


def _best(cells: pd.DataFrame, protocols: dict[str, Protocol]) -> pd.Series:
    """True for the best comparable value of each (task, subset) row that has two or more of them, when it leads."""
    best = pd.Series(False, index=cells.index)
    ok = cells[cells.comparable & cells.value.notna()]
    for (task, _), group in ok.groupby(["task", "subset"], sort=False):
        if len(group) < 2:
            continue
        ordered = group.sort_values("value", ascending=not protocols[task].higher_is_better, kind="stable")
        first, second = ordered.iloc[0], ordered.iloc[1]
        if clear_lead(first.value, first.stderr, second.value, second.stderr):
            best[ordered.index[0]] = True
    return best


def clear_lead(first: float, first_se: float | None, second: float, second_se: float | None) -> bool:
    """The honest-highlight rule: the lead |first - second| exceeds the combined standard error
    sqrt(se1^2 + se2^2). A value without a standard error (a published one) counts as exact; a tie never leads."""
    ses = [se for se in (first_se, second_se) if se is not None and se == se]
    return abs(first - second) > math.sqrt(sum(se * se for se in ses))


def _footnotes(cells: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    """A footnote number for every marked cell (identical explanations share one), and the texts."""
    texts: list[str] = []
    numbers = []
    for reason, note in zip(cells.reason, cells.note):
        if not reason:
            numbers.append(0)
            continue
        text = f"{reason} — {note}" if note else reason
        if text not in texts:
            texts.append(text)
        numbers.append(texts.index(text) + 1)
    return pd.Series(numbers, index=cells.index, dtype=int), texts


# ---- text formats ------------------------------------------------------------------------------

def format_value(value: float | None, stderr: float | None = None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    text = f"{value:.{digits}f}"
    if stderr is not None and not (isinstance(stderr, float) and math.isnan(stderr)):
        text += f" ± {stderr:.{digits}f}"
    return text


def _md_cell(cell: pd.Series) -> str:
    text = format_value(cell.value, cell.stderr if cell.kind == "run" else None)
    if text == "—":
        return text
    if cell.best:
        text = f"**{text}**"
    if cell.footnote:
        text += f" [{cell.footnote}]"
    return text


def _md_table(header: list[str], lines: list[list[str]], numeric: int) -> list[str]:
    aligns = ["---"] * (len(header) - numeric) + ["--:"] * numeric
    return ["| " + " | ".join(header) + " |", "|" + "|".join(aligns) + "|"] + ["| " + " | ".join(x) + " |" for x in lines]


def _md_cell_at(comp: Comparison, task: str, label: str, subset: str = "") -> str:
    try:
        return _md_cell(comp.cell(task, label, subset))
    except KeyError:
        return "—"


def to_markdown(comp: Comparison, runs: list[Run] = (), *, subsets: bool = False) -> str:
    """The table (rows = tasks), then the subset drill-downs if asked, footnotes and sources."""
    labels = [c.label for c in comp.columns]
    lines = []
    for task in comp.tasks:
        p = comp.protocols[task]
        metric = p.metric + (f" ({p.aggregate})" if p.aggregate else "")
        protocol = "/".join(sorted(p.harnesses)) + (f", {p.prompt_format}" if p.prompt_format else "")
        lines.append([task, metric, str(p.num_fewshot), protocol]
                     + [_md_cell_at(comp, task, label) for label in labels])
    out = [f"**{comp.title}**", ""] if comp.title else []
    out += _md_table(["task", "metric", "shots", "protocol", *labels], lines, len(labels))
    for task in comp.tasks if subsets else []:
        names = comp.subsets(task)
        c = comp.cells
        sub_labels = [lab for lab in labels if not c[(c.task == task) & (c.subset != "") & (c.column == lab)].empty]
        if names:
            out += ["", f"{task} by subset ({comp.protocols[task].metric}):", ""]
            out += _md_table(["subset", *sub_labels],
                             [[s] + [_md_cell_at(comp, task, lab, s) for lab in sub_labels] for s in names],
                             len(sub_labels))
    out += _legend(comp, runs)
    return "\n".join(out)


def _legend(comp: Comparison, runs: list[Run]) -> list[str]:
    out = []
    if any(c.kind == "run" for c in comp.columns):
        out += ["", "Our runs: value ± standard error; bold: best comparable value of the row, when its lead over the "
                "second exceeds their combined standard error sqrt(se1² + se2²) (published values count as exact)."]
        for run in runs:
            limit = run.data.get("config", {}).get("limit")
            dtype = run.data.get("config", {}).get("dtype") or "?"
            scope = f"first {limit} items per task (per MMLU subject)" if limit else "all items"
            out.append(f"- {run.label}: {run.data.get('model', {}).get('name', run.label)}, {dtype}, {scope}")
    if comp.footnotes:
        out += ["", "Not comparable with the row's protocol (not ranked):"]
        out += [f"[{i}] {text}" for i, text in enumerate(comp.footnotes, 1)]
    refs = comp.cells[(comp.cells.kind == "reference") & comp.cells.value.notna()]
    if not refs.empty:
        out += ["", "Published values, from:"]
        for (column, source), group in refs.groupby(["column", "source"], sort=False):
            out.append(f"- {column} ({', '.join(dict.fromkeys(group.task))}): {source}")
    return out


def to_csv(comp: Comparison) -> str:
    """Every cell as one CSV line (task rows have an empty subset)."""
    return comp.cells.to_csv(index=False, lineterminator="\n")
