"""The HTML leaderboard: one self-contained page (inline CSS, JS and SVG) rendered from a Jinja2 template."""

from __future__ import annotations

import datetime as _dt
from typing import Any

import jinja2
import pandas as pd

from ..resources import resource_dir
from .averages import BoardAverages, board_averages
from .chance import near_chance
from .charts import bar_chart
from .gauntlet import GauntletTable
from .runs import Run
from .sample_scores import choice_scores
from .tables import Comparison, format_value, has_stderr
from .wide import WIDE_CSV_NAME, data_uri, wide_csv

TEMPLATE = "leaderboard.html.jinja"
PROMPT_CHARS = 3000  # longer prompts (many shots) keep their end, where the question is


def environment() -> jinja2.Environment:
    """Templates from reports/templates; autoescape on for every template (model outputs may hold HTML)."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(resource_dir("reports") / "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


def _cell_view(cell: Any, baseline: float | None = None, higher_is_better: bool = True) -> dict[str, Any]:
    """What the template needs for one table cell (`cell` is a row of Comparison.cells, or None); `baseline`: the
    row's chance level, marking a value not clearly above it."""
    if cell is None or cell.value != cell.value:  # absent, or NaN
        return {"missing": True, "text": "—", "stderr": "", "sort": "", "best": False, "footnote": 0, "title": "no value",
                "chance": False}
    has_se = cell.kind == "run" and has_stderr(cell.stderr)
    title = cell.reason
    if cell.kind == "reference":
        shots = "?" if cell.num_fewshot is pd.NA else cell.num_fewshot
        title = "; ".join(x for x in (title, f"{cell.metric}, {shots}-shot, {cell.harness}", cell.source) if x)
    title = _zero_se_title(cell, title)
    chance = near_chance(float(cell.value), cell.stderr if cell.kind == "run" else None, baseline, higher_is_better)
    if chance:
        title = "; ".join(x for x in (title, f"not above chance ({baseline:.3f}) by more than its standard error") if x)
    return {"missing": False, "text": f"{cell.value:.3f}", "stderr": f"± {cell.stderr:.3f}" if has_se else "",
            "sort": repr(float(cell.value)), "best": bool(cell.best), "footnote": int(cell.footnote), "title": title,
            "chance": chance}


def _zero_se_title(cell: Any, title: str) -> str:
    """A run's value with a standard error of 0 (every item scored the same) says so instead of '± 0.000'."""
    if cell.kind == "run" and cell.stderr == 0:
        return "; ".join(x for x in (title, "every item scored the same: standard error 0") if x)
    return title


def _lookup(comp: Comparison, task: str, column: str, subset: str = "") -> Any:
    try:
        return comp.cell(task, column, subset)
    except KeyError:
        return None


def _run_detail(run: Run) -> str:
    cfg = run.data.get("config", {})
    limit = cfg.get("limit")
    parts = [run.data.get("model", {}).get("kind", ""), cfg.get("dtype", ""), f"first {limit} items" if limit else ""]
    return " · ".join(str(p) for p in parts if p)


def _reference_detail(comp: Comparison, column: str) -> str:
    c = comp.cells
    harnesses = c[(c.column == column) & (c.subset == "") & c.value.notna()].harness
    return "source: " + ", ".join(dict.fromkeys(harnesses)) if len(harnesses) else "no published value here"


def _summary_cell(value: float | None, missing_title: str) -> dict[str, Any]:
    if value is None:
        return {"text": "—", "sort": "", "missing": True, "title": missing_title}
    return {"text": f"{value:.3f}", "sort": repr(value), "missing": False, "title": ""}


def _board(comp: Comparison, runs: list[Run], summary: BoardAverages) -> list[dict[str, Any]]:
    """Models x tasks rows, ranked by the composite (else the fair average); rows without one keep their order,
    at the end."""
    run_by_label = {r.label: r for r in runs}
    rows = []
    for col in comp.columns:
        run = run_by_label.get(col.label)
        rows.append({
            "label": col.label, "kind": col.kind,
            "detail": _run_detail(run) if run else _reference_detail(comp, col.label),
            "cells": [_cell_view(_lookup(comp, t, col.label), comp.baselines.get(t), comp.protocols[t].higher_is_better)
                      for t in comp.tasks],
            "average": _summary_cell(summary.averages[col.label], "no task has a comparable value in every row"),
            "composite": _summary_cell(summary.composites[col.label], "no such task has a comparable value in every row"),
            "key": summary.ranking_key(col.label),
        })
    ranked = sorted((r for r in rows if r["key"] is not None), key=lambda r: -r["key"])
    return ranked + [r for r in rows if r["key"] is None]


def _charts(comp: Comparison) -> list[Any]:
    charts = []
    for task in comp.tasks:
        entries = []
        for col in comp.columns:
            cell = _lookup(comp, task, col.label)
            value = None if cell is None or cell.value != cell.value else float(cell.value)
            stderr = float(cell.stderr) if cell is not None and col.kind == "run" and has_stderr(cell.stderr) else None
            entries.append({"label": col.label, "kind": col.kind, "value": value, "stderr": stderr,
                            "best": bool(cell.best) if cell is not None else False,
                            "footnote": int(cell.footnote) if cell is not None else 0,
                            "text": format_value(value, stderr)})
        p = comp.protocols[task]
        charts.append(bar_chart(task, p.describe(), entries, comp.baselines.get(task)))
    return charts


def _drilldowns(comp: Comparison) -> list[dict[str, Any]]:
    out = []
    for task in comp.tasks:
        subsets = comp.subsets(task)
        if not subsets:
            continue
        c = comp.cells
        labels = [col.label for col in comp.columns
                  if not c[(c.task == task) & (c.subset != "") & (c.column == col.label)].empty]
        rows = [{"subset": s, "cells": [_cell_view(_lookup(comp, task, lab, s)) for lab in labels]} for s in subsets]
        out.append({"task": task, "metric": comp.protocols[task].metric, "columns": labels, "rows": rows})
    return out


def _sample_view(record: dict[str, Any], metric: str, delimiter: str) -> dict[str, Any]:
    requests = record.get("requests") or [{}]
    prompt = str(requests[0].get("context", requests[0].get("prompt", "")))
    omitted = max(0, len(prompt) - PROMPT_CHARS)
    view: dict[str, Any] = {"doc_id": record.get("doc_id"), "subset": record.get("subset"),
                            "prompt": prompt[omitted:], "omitted": omitted,
                            "correct": (record.get("metrics") or {}).get(metric)}

    def strip(text: str) -> str:
        return text[len(delimiter):] if delimiter and text.startswith(delimiter) else text

    predictions = record.get("predictions")
    view["score_label"] = ""
    if "completions" in record:  # generation: the model's text against the gold answer
        view["generated"] = str(record.get("prediction", ""))
        view["gold"] = str(record.get("gold", ""))
    elif predictions is not None or len(requests) > 1:
        predicted = (predictions or {}).get(metric, record.get("prediction"))
        texts = [strip(str(r.get("continuation", ""))) for r in requests]
        scores, view["score_label"] = choice_scores(record, metric, texts)
        view["choices"] = [{"text": text, "gold": i == record.get("gold"), "predicted": i == predicted,
                            "score": f"{scores[i]:.3f}" if scores[i] is not None else ""}
                           for i, text in enumerate(texts)]
    else:
        greedy = record.get("is_greedy") or [None]
        view["gold"] = str(record.get("gold", strip(str(requests[0].get("continuation", "")))))
        view["greedy"] = greedy[0]
        view["logprob"] = f"{record['logprobs'][0]:.2f}" if record.get("logprobs") else ""
    return view


def _samples(comp: Comparison, runs: list[Run], per_task: int) -> list[dict[str, Any]]:
    out = []
    for task in comp.tasks:
        metric = comp.protocols[task].metric
        per_run = []
        for run in runs:
            delimiter = run.task_info(task).get("fewshot", {}).get("target_delimiter", " ")
            items = [_sample_view(r, metric, delimiter) for r in run.samples(task, per_task)]
            if items:
                per_run.append({"label": run.label, "entries": items})
        if per_run:
            out.append({"task": task, "metric": metric, "runs": per_run})
    return out


def _params(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _run_meta(run: Run) -> dict[str, Any]:
    d = run.data
    cfg, model, versions = d.get("config", {}), d.get("model", {}), d.get("versions", {})
    shots = {t: run.num_fewshot(t) for t in run.tasks}
    shot_values = set(shots.values())
    limit = cfg.get("limit")
    return {
        "label": run.label, "model": model.get("name", run.label), "kind": model.get("kind", ""),
        "model_type": model.get("model_type", ""), "params": _params(model.get("num_parameters")),
        "fingerprint": model.get("fingerprint", ""), "dtype": cfg.get("dtype", ""), "device": cfg.get("device", ""),
        "shots": (f"{shot_values.pop()}" if len(shot_values) == 1 else ", ".join(f"{t} {s}" for t, s in shots.items())),
        "limit": f"first {limit}" if limit else "all", "harness": f"evalharness {versions.get('evalharness', '?')}",
        "scoring": d.get("scoring_version", "?"), "created": d.get("created", ""),
        "data": run.data_fingerprint(), "data_files": sum(len(v) for v in d.get("data", {}).values()),
        "torch": versions.get("torch", ""), "transformers": versions.get("transformers", ""),
        "seconds": d.get("eval_seconds"),
    }


def _sources(comp: Comparison) -> list[dict[str, str]]:
    refs = comp.cells[(comp.cells.kind == "reference") & comp.cells.value.notna()]
    out = []
    for source, group in refs.groupby("source", sort=False):
        covers = ", ".join(f"{col} ({', '.join(dict.fromkeys(g.task))})" for col, g in group.groupby("column", sort=False))
        out.append({"source": source, "covers": covers})
    return out


def _gauntlet_view(table: GauntletTable | None) -> dict[str, Any] | None:
    """The gauntlet section: models x categories and average, cells marked as in the leaderboard."""
    if table is None:
        return None
    rows = []
    for label, kind, what in table.rows:
        cells = []
        for column in table.columns:
            c = table.cell(label, column)
            missing = c.value != c.value
            title = "; ".join(x for x in (c.reason, f"benchmarks: {c.benchmarks}" if c.benchmarks else "",
                                          f"absent: {c.absent}" if c.absent else "", c.source) if x)
            cells.append({"missing": missing, "text": "—" if missing else f"{c.value:.3f}", "stderr": "",
                          "sort": "" if missing else repr(float(c.value)), "best": bool(c.best),
                          "footnote": int(c.footnote), "title": title or ("no value" if missing else ""),
                          "chance": False})
        rows.append({"label": label, "kind": kind, "detail": what, "cells": cells})
    refs = table.cells[(table.cells.kind == "reference") & table.cells.value.notna()]
    sources = [{"source": source, "covers": ", ".join(dict.fromkeys(group.row))}
               for source, group in refs.groupby("source", sort=False)]
    return {"columns": table.columns, "rows": rows, "protocol": table.protocol, "rule": table.rule,
            "footnotes": table.footnotes, "sources": sources, "notes": table.notes}


def render_leaderboard(comp: Comparison, runs: list[Run], *, samples_per_task: int = 3,
                       title: str = "evalharness leaderboard", gauntlet_table: GauntletTable | None = None,
                       paired: dict[str, Any] | None = None, curves: dict[str, Any] | None = None) -> str:
    """The whole page as one string (no external resources); with the gauntlet table, the paired comparison
    of two runs (paired_tables.html_view) and the training curves (curve_charts.html_view) when given."""
    summary = board_averages(comp)
    return environment().get_template(TEMPLATE).render(
        curves=curves,
        gauntlet=_gauntlet_view(gauntlet_table),
        paired=paired,
        title=title,
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        tasks=[{"name": t, "protocol": comp.protocols[t].describe(), "short": comp.protocols[t].short(),
                "chance": "" if comp.baselines.get(t) is None else f"{comp.baselines[t]:.3f}"} for t in comp.tasks],
        wide_csv={"name": WIDE_CSV_NAME, "href": data_uri(wide_csv(comp))} if comp.tasks else None,
        board=_board(comp, runs, summary),
        summary={"coverage": summary.coverage, "tasks": ", ".join(summary.tasks),
                 "composite": summary.composite_coverage if summary.composite_tasks else "",
                 "composite_tasks": ", ".join(summary.composite_tasks), "ranked_by_composite": bool(summary.composite_tasks)},
        charts=_charts(comp),
        footnotes=comp.footnotes,
        sources=_sources(comp),
        runs=[_run_meta(r) for r in runs],
        drilldowns=_drilldowns(comp),
        samples=_samples(comp, runs, samples_per_task),
        has_references=any(c.kind == "reference" for c in comp.columns),
    )
