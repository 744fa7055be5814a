"""The gauntlet table: models x gauntlet categories and average, for our runs and published models.

A run's row is the composite its results.json records (results.json 'composites', computed from the results
for files written before it existed): LLM Foundry's gauntlet v0.3 by default. A published model's row is its
`gauntlet:<category>` / `gauntlet:average` rows, which follow the composite definition that
tasks/composites.yaml names `published` (LLM Foundry's Model Gauntlet v0 of June 2023). The table's protocol
is the runs' composite when a run has one, else the published one; a cell under another definition, a
category left out because benchmarks are absent, or an average over fewer categories is marked with a
footnote and never ranked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..composite import Composites, run_composite, shipped_composites
from .references import Reference
from .runs import Run

PREFIX = "gauntlet:"
AVERAGE = "average"
CELL_COLUMNS = ["row", "kind", "model", "column", "composite", "value", "comparable", "best", "footnote", "reason",
                "benchmarks", "absent", "source"]


@dataclass(frozen=True)
class GauntletTable:
    """Long-form cells (CELL_COLUMNS; column is a category or 'average') and what lays them out."""

    cells: pd.DataFrame
    rows: list[tuple[str, str, str]]  # (label, kind, what the row is: composite and coverage)
    columns: list[str]
    protocol: str  # the composite the table ranks
    footnotes: list[str]
    rule: str
    notes: list[str]  # what the runs' composite records note (e.g. a benchmark scored under another protocol)

    def cell(self, row: str, column: str) -> pd.Series:
        c = self.cells
        return c[(c.row == row) & (c.column == column)].iloc[0]


def run_record(run: Run, composites: Composites) -> dict[str, Any] | None:
    """The run's default composite as results.json records it (recomputed for older files)."""
    recorded = run.data.get("composites", {}).get(composites.default)
    if recorded is not None:
        return recorded
    out = run_composite(run.data.get("tasks", {}), run.data.get("results", {}), composites.get(composites.default))
    return out.to_dict() if out is not None else None


def gauntlet_models(references: list[Reference]) -> list[str]:
    """The published models that have gauntlet rows, in file order."""
    return list(dict.fromkeys(r.model for r in references if r.task.startswith(PREFIX)))


def build_gauntlet(runs: list[Run], references: list[Reference] = (), compare: list[str] | None = None,
                   composites: Composites | None = None) -> GauntletTable:
    """The runs' composites and the published ones of the `compare` models (None: every model that has them)."""
    composites = composites or shipped_composites()
    default = composites.get(composites.default)
    published = composites.get(composites.published)
    records = [(run, run_record(run, composites)) for run in runs]
    records = [(run, rec) for run, rec in records if rec is not None]
    ranked = default if records else published
    columns = list(dict.fromkeys([*default.categories, *published.categories])) + [AVERAGE]
    cells: list[dict[str, Any]] = []
    rows: list[tuple[str, str, str]] = []
    notes = [f"{run.label}: {note}" for run, rec in records for note in rec.get("notes", [])]
    for run, rec in records:
        total = sum(len(c["benchmarks"]) + len(c["absent"]) for c in rec["categories"].values())
        rows.append((run.label, "run", f"{default.name}, {len(rec['benchmarks'])} of {total} benchmarks"))
        cells += _run_cells(run.label, rec, default.name, columns)
    refs = [r for r in references if r.task.startswith(PREFIX)]
    taken = {label for label, _, _ in rows}
    for model in gauntlet_models(refs) if compare is None else compare:
        mine = {r.task.removeprefix(PREFIX): r for r in refs if r.model == model}
        if not mine:
            continue
        label = next(iter(mine.values())).display_name
        label = label if label not in taken else f"{label} (published)"
        rows.append((label, "reference", f"{published.name}, published"))
        for column in columns:
            ref = mine.get(column)
            reason = ""
            if published.name != ranked.name:
                reason = f"{published.title}: other benchmarks and shots than {ranked.title}"
            cells.append({"row": label, "kind": "reference", "model": model, "column": column,
                          "composite": published.name, "value": ref.value if ref else None, "reason": reason,
                          "benchmarks": "", "absent": "", "source": ref.source if ref else ""})
    frame = pd.DataFrame(cells, columns=[c for c in CELL_COLUMNS if c not in ("comparable", "best", "footnote")])
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    frame["comparable"] = (frame.reason == "") & frame.value.notna()
    frame["best"] = _best(frame)
    frame["footnote"], footnotes = _footnotes(frame)
    return GauntletTable(frame[CELL_COLUMNS], rows, columns, ranked.title, footnotes, ranked.describe_rule(), notes)


def _run_cells(label: str, rec: dict[str, Any], name: str, columns: list[str]) -> list[dict[str, Any]]:
    out = []
    base = {"row": label, "kind": "run", "model": label, "composite": name, "source": ""}
    for column in columns:
        if column == AVERAGE:
            avg_name, avg = next(iter(rec["averages"].items()))
            left_out = [c for c in avg["categories"] if c not in avg["categories_used"]]
            reason = (f"{avg_name} over {len(avg['categories_used'])} of {len(avg['categories'])} categories "
                      f"(left out: {', '.join(left_out)})") if left_out and avg["value"] is not None else ""
            out.append({**base, "column": column, "value": avg["value"], "reason": reason,
                        "benchmarks": ", ".join(avg["categories_used"]), "absent": ", ".join(left_out)})
            continue
        cat = rec["categories"].get(column)
        if cat is None:
            out.append({**base, "column": column, "value": None, "reason": "", "benchmarks": "", "absent": ""})
            continue
        reason = ""
        if cat["value"] is None and cat["present_mean"] is not None:
            reason = (f"{column} left out: {len(cat['absent'])} of {len(cat['absent']) + len(cat['benchmarks'])} "
                      f"benchmarks absent; the mean of the {len(cat['benchmarks'])} present is "
                      f"{cat['present_mean']:.3f}")
        out.append({**base, "column": column, "value": cat["value"], "reason": reason,
                    "benchmarks": ", ".join(cat["benchmarks"]), "absent": ", ".join(cat["absent"])})
    return out


def _best(frame: pd.DataFrame) -> pd.Series:
    best = pd.Series(False, index=frame.index)
    for _, group in frame[frame.comparable].groupby("column", sort=False):
        if len(group) >= 2:
            best[group.index[group.value == group.value.max()]] = True
    return best


def _footnotes(frame: pd.DataFrame) -> tuple[pd.Series, list[str]]:
    texts: list[str] = []
    numbers = []
    for reason in frame.reason:
        if reason and reason not in texts:
            texts.append(reason)
        numbers.append(texts.index(reason) + 1 if reason else 0)
    return pd.Series(numbers, index=frame.index, dtype=int), texts


def _md_value(cell: pd.Series) -> str:
    if cell.value is None or (isinstance(cell.value, float) and math.isnan(cell.value)):
        text = "—"
    else:
        text = f"{cell.value:.3f}"
        if cell.best:
            text = f"**{text}**"
    return text + (f" [{cell.footnote}]" if cell.footnote else "")


def to_markdown(table: GauntletTable) -> str:
    header = ["model", "composite", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + ["--:"] * len(table.columns)) + "|"]
    for label, _, what in table.rows:
        lines.append("| " + " | ".join([label, what] + [_md_value(table.cell(label, c)) for c in table.columns]) + " |")
    out = [f"**Gauntlet composites, ranked under {table.protocol}**", "", *lines, "",
           f"Each benchmark's score minus its random baseline, over (1 - baseline); categories are equal-weighted "
           f"means, the average the mean of the categories. Absent benchmarks: {table.rule}. Bold: best comparable "
           f"value of the column."]
    if table.footnotes:
        out += ["", "Not comparable with the table's composite (not ranked):"]
        out += [f"[{i}] {text}" for i, text in enumerate(table.footnotes, 1)]
    if table.notes:
        out += ["", "Notes on our runs' composites:"] + [f"- {n}" for n in table.notes]
    refs = table.cells[(table.cells.kind == "reference") & table.cells.value.notna()]
    if not refs.empty:
        out += ["", "Published composites, from:"]
        for source, group in refs.groupby("source", sort=False):
            out.append(f"- {', '.join(dict.fromkeys(group.row))}: {source}")
    return "\n".join(out) + "\n"


def to_csv(table: GauntletTable) -> str:
    return table.cells.to_csv(index=False, lineterminator="\n")
