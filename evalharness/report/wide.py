"""The wide table: one line per model, one column per task (value, standard error, comparable), as CSV, and
the data: URI under which the HTML page offers it as a download (no network)."""

from __future__ import annotations

import csv
import io
import math
from urllib.parse import quote

from .tables import Comparison

WIDE_CSV_NAME = "leaderboard.csv"


def _number(value: float | None) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))


def wide_csv(comp: Comparison) -> str:
    """Models x tasks: per task `<task> <metric> <shots>-shot` (the value), `... stderr` and `... comparable`
    (0 for a footnoted value measured under another protocol, empty without a value)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    heads = [f"{t} {comp.protocols[t].short().replace(' · ', ' ')}" for t in comp.tasks]
    writer.writerow(["model", "kind", *[f"{h}{part}" for h in heads for part in ("", " stderr", " comparable")]])
    c = comp.cells
    task_rows = c[c.subset == ""]
    for col in comp.columns:
        line = [col.label, "ours" if col.kind == "run" else "published"]
        for task in comp.tasks:
            hit = task_rows[(task_rows.task == task) & (task_rows.column == col.label)]
            if hit.empty or hit.iloc[0].value != hit.iloc[0].value:
                line += ["", "", ""]
                continue
            cell = hit.iloc[0]
            line += [_number(cell.value), _number(cell.stderr), "1" if cell.comparable else "0"]
        writer.writerow(line)
    return out.getvalue()


def data_uri(text: str, mime: str = "text/csv") -> str:
    """`text` as a data: URI (percent-encoded UTF-8), for a download link that fetches nothing."""
    return f"data:{mime};charset=utf-8,{quote(text, safe='')}"
