"""Geometry of the per-task horizontal bar charts (the template draws them as inline SVG)."""

from __future__ import annotations

import math
from dataclasses import dataclass

PLOT_WIDTH = 296
MIN_LABEL_WIDTH = 80
CHAR_WIDTH = 7.2  # an upper bound of a 12 px system-ui character's advance, for the label column's width
VALUE_WIDTH = 132
BAR_HEIGHT = 18
GAP = 8
TOP = 8
AXIS_HEIGHT = 22


@dataclass(frozen=True)
class Bar:
    label: str
    kind: str
    value: float | None
    stderr: float | None
    best: bool
    footnote: int
    y: float
    width: float
    err_from: float
    err_to: float
    text: str


@dataclass(frozen=True)
class Chart:
    task: str
    metric: str
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (x, label)
    height: float
    plot_left: float
    plot_width: float = PLOT_WIDTH
    width: float = PLOT_WIDTH
    bar_height: float = BAR_HEIGHT
    chance_x: float | None = None  # the task's chance level on the axis, when it declares one


def label_width(labels: list[str]) -> float:
    """Room for the longest label, whole (labels are never cut; the SVG scales to its box)."""
    return max(MIN_LABEL_WIDTH, math.ceil(max((len(x) for x in labels), default=0) * CHAR_WIDTH) + 16)


def _scale_max(values: list[float]) -> float:
    top = max(values, default=1.0)
    if top <= 1.0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top))
    return math.ceil(top / magnitude) * magnitude


def bar_chart(task: str, metric: str, entries: list[dict], baseline: float | None = None) -> Chart:
    """entries: dicts with label, kind, value, stderr, best, footnote, text (in display order); baseline: the
    task's chance level, drawn as a mark on the axis."""
    plot_width = PLOT_WIDTH
    left = label_width([e["label"] for e in entries])
    known = [e["value"] for e in entries if e["value"] is not None]
    top = _scale_max([v + (e or 0) for v, e in zip(known, [x["stderr"] for x in entries if x["value"] is not None])])

    def x(v: float) -> float:
        return round(max(0.0, min(v, top)) / top * plot_width, 2)

    bars = []
    for i, e in enumerate(entries):
        y = TOP + i * (BAR_HEIGHT + GAP)
        value, se = e["value"], e["stderr"]
        width = x(value) if value is not None else 0.0
        lo, hi = (x(value - se), x(value + se)) if value is not None and se else (width, width)
        bars.append(Bar(e["label"], e["kind"], value, se, e["best"], e["footnote"], y, width, lo, hi, e["text"]))
    height = TOP + len(entries) * (BAR_HEIGHT + GAP) + AXIS_HEIGHT
    ticks = [(x(top * f), f"{top * f:g}") for f in (0, 0.25, 0.5, 0.75, 1.0)]
    return Chart(task, metric, bars, ticks, height, plot_left=left, width=left + plot_width + VALUE_WIDTH,
                 chance_x=x(baseline) if baseline is not None else None)
