"""A RunPair as text: a markdown table (with the flipped items if asked), CSV lines, or a JSON document."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from typing import Any

from .pairing import SIGNIFICANCE, RunPair, TaskPair

COLUMNS = ["task", "metric", "shots", "n", "a", "b", "difference", "stderr", "p_value", "test", "better", "worse",
           "verdict"]


def format_p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def row(pair: TaskPair) -> dict[str, Any]:
    """One task's line: COLUMNS' values (numbers unrounded)."""
    s = pair.stats
    return {"task": pair.task, "metric": pair.metric, "shots": pair.num_fewshot, "n": s.n, "a": s.a, "b": s.b,
            "difference": s.difference, "stderr": s.stderr, "p_value": s.p_value, "test": s.test,
            "better": s.better, "worse": s.worse, "verdict": pair.verdict}


def run_description(pair: RunPair) -> tuple[str, str]:
    """'label (folder)' of A and of B."""
    return tuple(f"{r.label} ({r.folder})" if r.folder is not None else r.label for r in (pair.a, pair.b))  # type: ignore[return-value]


def legend(pair: RunPair) -> list[str]:
    """How to read the table, one sentence a line."""
    tests = {p.stats.test for p in pair.tasks}
    lines = ["B - A: the difference of the task's headline metric on the same items; se: its paired standard error "
             "(sd of the per-item differences / sqrt(n), by the delta method for perplexity)."]
    if "mcnemar" in tests:
        lines.append("p (mcnemar): McNemar's exact test, a two-sided binomial test on the items only one run got right.")
    boot = next((p.stats for p in pair.tasks if p.stats.test == "bootstrap"), None)
    if boot is not None:
        lines.append(f"p (bootstrap): paired bootstrap, {boot.resamples:,} resamples of the items, seed {boot.seed}.")
    lines.append(f"B better / B worse: items where B's value beats / trails A's; verdict at p < {SIGNIFICANCE} for each "
                 "task alone (with many tasks, expect some by chance).")
    return lines


def to_markdown(pair: RunPair, flips: int = 0) -> str:
    """The table, the runs, notes on unshared tasks, the legend, then up to `flips` flipped items per task."""
    a, b = run_description(pair)
    out = [f"A: {a}", f"B: {b}", "",
           "| task | metric | shots | n | A | B | B - A | se | p | B better | B worse | verdict |",
           "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for p in pair.tasks:
        s = p.stats
        se = f"{s.stderr:.3f}" if s.stderr is not None else "—"
        out.append(f"| {p.task} | {p.metric} | {p.num_fewshot} | {s.n} | {s.a:.3f} | {s.b:.3f} | {s.difference:+.3f} "
                   f"| {se} | {format_p(s.p_value)} ({s.test}) | {s.better} | {s.worse} | {p.verdict} |")
    out.append("")
    if pair.only_a or pair.only_b:
        out += [f"Not compared (only in {which}): {', '.join(ts)}" for which, ts in (("A", pair.only_a), ("B", pair.only_b))
                if ts] + [""]
    out += legend(pair)
    for p in pair.tasks if flips > 0 else []:
        shown = p.flips[:flips]
        if not shown:
            continue
        out += ["", f"{p.task}: first {len(shown)} of {len(p.flips)} items that differ", "",
                "| doc_id | subset | gold | A | B | A value | B value | B vs A |", "|---|---|---|---|---|--:|--:|---|"]
        for f in shown:
            cells = [str(f.doc_id), f.subset or "", f.gold, f.a, f.b, f"{f.a_value:.3f}", f"{f.b_value:.3f}",
                     "better" if f.better else "worse"]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"


def to_csv(pair: RunPair) -> str:
    """One line per task (COLUMNS)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for p in pair.tasks:
        writer.writerow(row(p))
    return buffer.getvalue()


def to_json(pair: RunPair, flips: int = 0) -> str:
    """{a, b, tasks: [row + flips], only_a, only_b, legend}."""
    a, b = run_description(pair)
    tasks = [{**row(p), "resamples": p.stats.resamples, "seed": p.stats.seed,
              "flips": [asdict(f) for f in p.flips[:flips]]} for p in pair.tasks]
    doc = {"a": a, "b": b, "tasks": tasks, "only_a": pair.only_a, "only_b": pair.only_b, "legend": legend(pair)}
    return json.dumps(doc, indent=2) + "\n"


def _cell_number(x: float, sign: str = "") -> str:
    """A table number: three decimals, or from 1000 up whole with thousands separators (a perplexity)."""
    return f"{x:{sign},.0f}" if abs(x) >= 1000 else f"{x:{sign}.3f}"


def html_view(pair: RunPair | None, note: str = "", flips: int = 5) -> dict[str, Any] | None:
    """What the page's "A vs B" section needs: rows of formatted cells, flipped items, legend; or only a note saying
    why the two runs could not be paired. None: no section."""
    if pair is None:
        return {"note": note, "rows": [], "legend": [], "a": "", "b": "", "flips": []} if note else None
    rows = []
    for p in pair.tasks:
        s = p.stats
        rows.append({"task": p.task, "metric": p.metric, "shots": p.num_fewshot, "n": s.n, "a": _cell_number(s.a),
                     "b": _cell_number(s.b), "difference": _cell_number(s.difference, "+"),
                     "stderr": _cell_number(s.stderr) if s.stderr is not None else "—",
                     "p": format_p(s.p_value), "test": s.test, "better": s.better, "worse": s.worse,
                     "verdict": p.verdict})
    listed = [{"task": p.task, "count": len(p.flips), "entries": [asdict(f) for f in p.flips[:flips]]}
              for p in pair.tasks if p.flips]
    return {"note": note, "a": pair.a.label, "b": pair.b.label, "rows": rows, "legend": legend(pair), "flips": listed}
