"""Entry points: a report from results.json files in one format, and the report written after a run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError
from ..results import atomic_write_text
from .averages import summary_rows
from .chance import with_baselines
from .curve_charts import html_view as curves_html_view
from .curves import build_curves, curves_csv, curves_markdown, has_curves
from .gauntlet import GauntletTable, build_gauntlet, gauntlet_models
from .gauntlet import to_csv as gauntlet_csv
from .gauntlet import to_markdown as gauntlet_markdown
from .html import render_leaderboard
from .layouts import GAUNTLET, get_layout
from .paired_tables import html_view
from .paired_tables import to_markdown as paired_markdown
from .pairing import RunPair, pair_runs
from .references import check_models, load_references
from .runs import Run, label_runs, load_runs
from .tables import build_comparison, to_csv, to_markdown

FORMATS = ("md", "csv", "html")
RUN_REPORT_FILE = "report.html"


def parse_list(text: str | Sequence[str] | None) -> list[str]:
    """'a,b' or ['a', 'b,c'] -> ['a', 'b', 'c'] (blanks dropped)."""
    items = [text] if isinstance(text, str) else list(text or [])
    return [x.strip() for item in items for x in item.split(",") if x.strip()]


def parse_metrics(text: str | Sequence[str] | None) -> dict[str, str]:
    """'piqa=acc,mmlu=acc_macro' -> {'piqa': 'acc', 'mmlu': 'acc_macro'}."""
    out = {}
    for item in parse_list(text):
        task, sep, metric = item.partition("=")
        if not sep or not task.strip() or not metric.strip():
            raise ConfigError(f"--metric expects TASK=METRIC (e.g. piqa=acc), got {item!r}")
        out[task.strip()] = metric.strip()
    return out


def check_compare(compare: str | Sequence[str] | None) -> list[str]:
    """The --compare model names, validated against the shipped references (before a run starts)."""
    return check_models(parse_list(compare), load_references())


def infer_format(fmt: str | None, output: str | Path | None) -> str:
    """--format if given, else from the output file's suffix (.html, .csv), else md."""
    if fmt:
        return fmt
    suffix = Path(output).suffix.lower().lstrip(".") if output else ""
    return {"htm": "html", "html": "html", "csv": "csv"}.get(suffix, "md")


def render(runs: list[Run], *, compare: str | Sequence[str] | None = None, references: Sequence[str | Path] = (),
           metrics: str | Sequence[str] | dict[str, str] | None = None, fmt: str = "md", subsets: bool = False,
           samples: int = 3, layout: str | None = None, paired: bool | None = None, title: str | None = None,
           curves: bool | None = None) -> str:
    """The comparison of `runs` with the `compare` models' published scores, as md, csv or html.

    paired (html): the item-by-item comparison of two runs (`evalharness compare`'s table): True requires it (an
    error when the runs cannot be paired), None shows it for two runs of one model family, False never.

    layout: a table shape from reports/layouts.yaml (its rows and published models; `compare` adds models), or
    "gauntlet": models x gauntlet categories (the `compare` models, else every model with published composites).

    title: the page's title (md: a bold first line) instead of the layout's or the default.

    curves: each task's metric against the training batch of runs that record one (curves.py): True requires
    them (csv: the curves' CSV instead of the table), None shows them (html, md) when some training run was
    evaluated at two or more batches, False never.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")
    table_layout = get_layout(layout) if layout else None
    if not runs and not layout:
        raise ConfigError("a report needs at least one results.json (or a --layout, for published models alone)")
    refs = load_references(list(references))
    models = check_models([*(table_layout.compare if table_layout else ()), *parse_list(compare)], refs)
    models = list(dict.fromkeys(models))
    overrides = metrics if isinstance(metrics, dict) else parse_metrics(metrics)
    for task, key in overrides.items():
        if not any(task in r.tasks for r in runs):
            raise ConfigError(f"--metric {task}={key}: no run has task {task!r}")
        if not any(key in r.data["results"].get(task, {}) for r in runs):
            have = [k for r in runs for k in r.data["results"].get(task, {}) if not k.endswith("_stderr") and k != "n"]
            raise ConfigError(f"--metric {task}={key}: no run has metric {key!r} for {task} "
                              f"(available: {', '.join(dict.fromkeys(have))})")
    if layout == GAUNTLET:
        table = build_gauntlet(runs, refs, models or None)
        if fmt == "md":
            return (f"**{title}**\n\n" if title else "") + gauntlet_markdown(table)
        if fmt == "csv":
            return gauntlet_csv(table)
        comp = with_baselines(build_comparison(runs, refs, [], overrides), runs)
        return render_leaderboard(comp, runs, samples_per_task=samples, gauntlet_table=table,
                                  title=title or "evalharness gauntlet composites")
    comp = with_baselines(build_comparison(runs, refs, models, overrides, table_layout), runs, table_layout)
    if title:
        comp = replace(comp, title=title)
    show_curves = wants_curves(runs, curves)
    if fmt == "md":
        text = to_markdown(comp, runs, subsets=subsets, summary=summary_rows(comp)) + "\n"
        if show_curves:
            text += "\n" + curves_markdown(build_curves(runs, overrides))
        return text + "\n" + paired_markdown(_pair(runs, overrides)) if paired else text
    if fmt == "csv":
        if paired:
            raise ConfigError("--paired adds a section to md and html reports; for CSV use evalharness compare --csv")
        return curves_csv(build_curves(runs, overrides)) if curves else to_csv(comp)
    return render_leaderboard(comp, runs, samples_per_task=samples, title=comp.title or "evalharness leaderboard",
                              gauntlet_table=_gauntlet_section(runs, refs, models),
                              paired=_paired_section(runs, paired, overrides),
                              curves=curves_html_view(build_curves(runs, overrides)) if show_curves else None)


def wants_curves(runs: list[Run], curves: bool | None) -> bool:
    """--curves: always (an error without runs that record a step); --no-curves: never; else when a training run
    was evaluated at two or more batches."""
    return has_curves(runs) if curves is None else curves


def _paired_section(runs: list[Run], paired: bool | None, metrics: dict[str, str]) -> dict[str, Any] | None:
    """The page's A vs B section: asked for, or two runs of one model family; a note when they cannot be paired."""
    if paired is False:
        return None
    families = {r.data.get("model", {}).get("model_type") for r in runs}
    if not paired and (len(runs) != 2 or len(families) != 1 or None in families):
        return None
    try:
        pair = _pair(runs, metrics)
    except ConfigError as exc:
        if paired:
            raise
        return html_view(None, f"Not compared item by item: {exc}")
    return html_view(pair)


def _pair(runs: list[Run], metrics: dict[str, str]) -> RunPair:
    """The paired comparison of exactly two runs (`metrics`: the report's --metric overrides of run A's tasks)."""
    if len(runs) != 2:
        raise ConfigError(f"--paired compares exactly two runs, got {len(runs)}")
    return pair_runs(runs[0], runs[1], metrics={t: k for t, k in metrics.items() if t in runs[0].tasks})


def _gauntlet_section(runs: list[Run], refs: list, models: list[str]) -> GauntletTable | None:
    """The gauntlet table for an HTML page: when a run has a complete gauntlet category."""
    table = build_gauntlet(runs, refs, [m for m in models if m in gauntlet_models(refs)])
    if table.cells.empty:
        return None
    runs_cells = table.cells[table.cells.kind == "run"]
    return table if runs_cells.value.notna().any() else None


def report(paths: Sequence[str | Path], *, output: str | Path | None = None, **options: Any) -> str:
    """Render the results.json files (or folders holding them); write to `output` when given (an HTML page with
    training curves also writes their CSV beside it, `<name>.curves.csv`)."""
    return report_files(paths, output=output, **options)[0]


def report_files(paths: Sequence[str | Path], *, output: str | Path | None = None,
                 **options: Any) -> tuple[str, list[Path]]:
    """As `report`, also returning the files written."""
    options["fmt"] = infer_format(options.get("fmt"), output)
    runs = load_runs(list(paths))
    text = render(runs, **options)
    if output is None:
        return text, []
    atomic_write_text(Path(output), text)
    written = [Path(output)]
    if options["fmt"] == "html" and wants_curves(runs, options.get("curves")):
        metrics = options.get("metrics")
        curves = build_curves(runs, metrics if isinstance(metrics, dict) else parse_metrics(metrics))
        written.append(curves_csv_path(output))
        atomic_write_text(written[-1], curves_csv(curves))
    return text, written


def curves_csv_path(output: str | Path) -> Path:
    """Where an HTML page's curves are written as CSV: beside it, `<name>.curves.csv`."""
    return Path(output).with_suffix(".curves.csv")


def write_run_report(results: dict[str, Any], output_dir: str | Path, *, compare: Sequence[str] = ()) -> Path:
    """After a run: report.html beside its results.json (compared with the `compare` models); returns its path."""
    folder = Path(output_dir)
    path = folder / RUN_REPORT_FILE
    atomic_write_text(path, render(label_runs([(results, folder)]), compare=list(compare), fmt="html"))
    return path


def run_markdown(results: dict[str, Any], output_dir: str | Path | None, *, compare: Sequence[str] = ()) -> str:
    """The markdown comparison table of one run (what the command line prints after a run)."""
    return render(label_runs([(results, Path(output_dir) if output_dir else None)]), compare=list(compare), fmt="md")
