"""Training curves: runs of one training run at several training batches (results.json's `model.composer`,
written by the Composer callback and by `composer:PATH.pt` runs), each task's metric against the batch, and
their CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .runs import Run
from .tables import format_value

CURVES_CSV_NAME = "curves.csv"
CSV_COLUMNS = ("series", "step", "epoch", "tokens", "task", "metric", "value", "stderr", "n")


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation of one task: `step` is the training batch."""

    series: str
    step: int
    epoch: int | None
    tokens: int | None
    task: str
    metric: str
    value: float
    stderr: float | None
    n: int | None
    run: str  # the run's label in the report


@dataclass(frozen=True)
class Curves:
    """Every point, by series and step; per task its metric, chance level and direction."""

    points: list[CurvePoint]
    series: list[str]
    tasks: list[str]
    metrics: dict[str, str]
    baselines: dict[str, float | None]
    higher_is_better: dict[str, bool]

    def line(self, series: str, task: str) -> list[CurvePoint]:
        """The points of one series for one task, by step."""
        return sorted((p for p in self.points if p.series == series and p.task == task), key=lambda p: p.step)


def training_position(run: Run) -> dict[str, Any] | None:
    """`model.composer` of the run's results.json when it records a whole-number batch, else None."""
    position = run.data.get("model", {}).get("composer")
    if not isinstance(position, dict):
        return None
    batch = position.get("batch")
    return position if isinstance(batch, int) and not isinstance(batch, bool) else None


def training_step(run: Run) -> int | None:
    """The training batch the run's weights are from, or None."""
    position = training_position(run)
    return position["batch"] if position is not None else None


def _settings(run: Run) -> str:
    """What else must match for two evaluations to lie on one curve: items, shots, dtype, prompt format."""
    cfg = run.data.get("config", {})
    shots = sorted({str(run.num_fewshot(t)) for t in run.tasks})
    formats = sorted({run.prompt_format(t) or "plain" for t in run.tasks})
    limit = cfg.get("limit")
    return ", ".join([f"first {limit}" if limit else "all items", f"{'/'.join(shots)}-shot",
                      str(cfg.get("dtype") or ""), *[f for f in formats if f != "plain"]])


def series_of(runs: list[Run]) -> dict[str, list[Run]]:
    """Runs with a training step, grouped into series: one per training run (`run_name`, else the model's name)
    and evaluation settings; a series is named by its training run, with its settings when one run has several."""
    keyed: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        position = training_position(run)
        if position is not None:
            keyed.setdefault((str(position.get("run_name") or run.model_name()), _settings(run)), []).append(run)
    names = [name for name, _ in keyed]
    return {(f"{name} ({settings})" if names.count(name) > 1 else name): members
            for (name, settings), members in keyed.items()}


def has_curves(runs: list[Run]) -> bool:
    """True when some series has runs at two or more different training steps."""
    return any(len({training_step(r) for r in members}) > 1 for members in series_of(runs).values())


def build_curves(runs: list[Run], metrics: dict[str, str] | None = None) -> Curves:
    """Each task's metric (the `metrics` override, else its headline metric) at every step of every series."""
    groups = series_of(runs)
    if not groups:
        raise ConfigError("no run records a training step (results.json's model.composer.batch): curves need runs of "
                          "the Composer callback (output_dir=) or of composer:PATH.pt checkpoints")
    metrics = metrics or {}
    chosen: dict[str, str] = {}
    baselines: dict[str, float | None] = {}
    directions: dict[str, bool] = {}
    points = []
    for name, members in groups.items():
        for run in members:
            position = training_position(run) or {}
            for task in run.tasks:
                declared = run.declarations(task)
                if task not in chosen:
                    metric = metrics.get(task) or declared.headline_metric
                    if metric is None:
                        continue
                    chosen[task] = metric
                    baselines[task] = (float(declared.baseline) if declared.baseline is not None
                                       and metric == declared.headline_metric else None)
                    directions[task] = declared.is_higher_better(metric)
                value, stderr, n = run.metric(task, chosen[task])
                if value is None:
                    continue
                points.append(CurvePoint(name, position["batch"], _whole(position.get("epoch")),
                                         _whole(position.get("token")), task, chosen[task], value, stderr,
                                         n if isinstance(n, int) else None, run.label))
    tasks = [t for t in chosen if any(p.task == t for p in points)]
    return Curves(sorted(points, key=lambda p: (p.series, p.task, p.step)), list(groups), tasks,
                  {t: chosen[t] for t in tasks}, {t: baselines[t] for t in tasks}, {t: directions[t] for t in tasks})


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def curves_csv(curves: Curves) -> str:
    """One line per series, step and task: series, step, epoch, tokens, task, metric, value, stderr, n."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for series in curves.series:
        for task in curves.tasks:
            for p in curves.line(series, task):
                writer.writerow([p.series, p.step, _blank(p.epoch), _blank(p.tokens), p.task, p.metric, repr(p.value),
                                 "" if p.stderr is None else repr(p.stderr), _blank(p.n)])
    return out.getvalue()


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)


def curves_markdown(curves: Curves) -> str:
    """Per series, a table of the metric of every task (columns) at every step (rows), value ± stderr."""
    parts = []
    for series in curves.series:
        steps = sorted({p.step for p in curves.points if p.series == series})
        by_key = {(p.task, p.step): p for p in curves.points if p.series == series}
        head = " | ".join(f"{t} {curves.metrics[t]}" for t in curves.tasks)
        lines = [f"**Training curve: {series}**", "", f"| batch | {head} |",
                 "|--:|" + "--:|" * len(curves.tasks)]
        for step in steps:
            cells = [format_value(by_key[(t, step)].value, by_key[(t, step)].stderr) if (t, step) in by_key else "—"
                     for t in curves.tasks]
            lines.append(f"| {step} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)
