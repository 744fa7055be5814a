"""Geometry of the training-curve charts: per task, each series' metric against the training batch, with a band
of ± one standard error and the chance level (the template draws them as inline SVG)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .curves import CURVES_CSV_NAME, CurvePoint, Curves, curves_csv
from .tables import format_value
from .wide import data_uri

WIDTH = 520
LEFT = 52  # room for the value axis' labels
RIGHT = 14
TOP = 10
PLOT_HEIGHT = 190
BOTTOM = 40  # the batch axis' labels and title


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    title: str


@dataclass(frozen=True)
class CurveLine:
    series: str
    index: int  # the series' colour
    path: str  # SVG path through the points
    band: str  # polygon points of value ± stderr ("" when no point has a standard error)
    dots: list[Dot]


@dataclass(frozen=True)
class CurveChart:
    task: str
    metric: str
    lines: list[CurveLine]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    chance_y: float | None
    last: list[str]  # per series: its last point, as text
    log: bool = False  # the value axis is log-scaled
    width: float = WIDTH
    height: float = TOP + PLOT_HEIGHT + BOTTOM
    plot_left: float = LEFT
    plot_right: float = WIDTH - RIGHT
    plot_top: float = TOP
    plot_bottom: float = TOP + PLOT_HEIGHT


def nice_step(span: float, parts: int = 4) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at least span / parts."""
    raw = span / parts
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))


def _decimals(step: float) -> int:
    """Decimals that show every multiple of `step` exactly (0.25 -> 2, 0.05 -> 2, 20 -> 0)."""
    for d in range(0, 10):
        if abs(round(step, d) - step) < step * 1e-6:
            return d
    return 10


def value_axis(values: list[float]) -> tuple[float, float, list[float]]:
    """(low, high, ticks): `values` (points, band ends, chance level) widened to multiples of a nice step; within
    [0, 1] when every value is (fractions stay fractions). Equal values get a span of 0.1 (or 10% of them)."""
    lo, hi = min(values), max(values)
    fraction = lo >= 0 and hi <= 1
    if hi - lo < 1e-12:
        pad = 0.05 if fraction else max(abs(hi) * 0.05, 0.5)
        lo, hi = lo - pad, hi + pad
    step = nice_step(hi - lo)
    low, high = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    if fraction:
        low, high = max(low, 0.0), min(high, 1.0)
    count = round((high - low) / step)
    return low, high, [round(low + i * step, 12) for i in range(count + 1)]


def log_axis(values: list[float]) -> tuple[float, float, list[float]]:
    """(low, high, ticks) in powers of ten around the positive `values`, for a log-scaled value axis."""
    low = math.floor(math.log10(min(values)) + 1e-9)
    high = max(math.ceil(math.log10(max(values)) - 1e-9), low + 1)
    return 10.0 ** low, 10.0 ** high, [10.0 ** k for k in range(low, high + 1)]


def uses_log_scale(values: list[float], higher_is_better: bool) -> bool:
    """A lower-is-better metric (perplexity) whose values span a factor of ten or more: drawn on a log scale."""
    return not higher_is_better and min(values) > 0 and max(values) >= 10 * min(values)


def _tick_label(value: float, decimals: int, log: bool) -> str:
    """An axis value: from 1000 up short (1k, 2.5k, 1.5M, 1G), below it with `decimals` (a log axis: as needed)."""
    for suffix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}" if log else f"{value:.{decimals}f}"


def value_text(value: float, stderr: float | None) -> str:
    """A point's value ± stderr: three decimals, or whole numbers with thousands separators from 1000 up."""
    if abs(value) < 1000:
        return format_value(value, stderr)
    return f"{value:,.0f}" + (f" ± {stderr:,.0f}" if stderr else "")


def step_axis(steps: list[int]) -> tuple[float, float, list[float]]:
    """(0, last step, ticks at multiples of a nice step up to it): training starts at batch 0."""
    high = float(max(steps)) if steps and max(steps) > 0 else 1.0
    step = nice_step(high)
    return 0.0, high, [i * step for i in range(int(high / step + 1e-9) + 1)]


def _band_ends(p: CurvePoint) -> tuple[float, float]:
    se = p.stderr or 0.0
    return p.value - se, p.value + se


def curve_chart(curves: Curves, task: str) -> CurveChart:
    """The chart of one task: every series' line, band and points on shared axes."""
    lines_points = [(i, s, curves.line(s, task)) for i, s in enumerate(curves.series)]
    lines_points = [(i, s, pts) for i, s, pts in lines_points if pts]
    every = [p for _, _, pts in lines_points for p in pts]
    baseline = curves.baselines.get(task)
    log = uses_log_scale([p.value for p in every], curves.higher_is_better.get(task, True))
    if log:  # the band's upper ends only: a lower end at or below 0 is cut at the axis
        y0, y1, y_ticks = log_axis([p.value for p in every] + [_band_ends(p)[1] for p in every])
    else:
        values = [v for p in every for v in (p.value, *_band_ends(p))] + ([baseline] if baseline is not None else [])
        y0, y1, y_ticks = value_axis(values)
    x0, x1, x_ticks = step_axis([p.step for p in every])
    plot_w = WIDTH - RIGHT - LEFT
    scale = (lambda v: math.log10(v) if v > 0 else -math.inf) if log else (lambda v: v)
    top, bottom = scale(y1), scale(y0)

    def x(step: float) -> float:
        return round(LEFT + (step - x0) / (x1 - x0) * plot_w, 2)

    def y(value: float) -> float:
        return round(TOP + (top - min(max(scale(value), bottom), top)) / (top - bottom) * PLOT_HEIGHT, 2)

    decimals = _decimals(y_ticks[1] - y_ticks[0]) if len(y_ticks) > 1 and not log else 2
    lines, last = [], []
    for index, series, pts in lines_points:
        path = " ".join(f"{'M' if k == 0 else 'L'}{x(p.step)},{y(p.value)}" for k, p in enumerate(pts))
        band = ""
        if any(p.stderr for p in pts):
            upper = [f"{x(p.step)},{y(_band_ends(p)[1])}" for p in pts]
            lower = [f"{x(p.step)},{y(_band_ends(p)[0])}" for p in reversed(pts)]
            band = " ".join(upper + lower)
        dots = [Dot(x(p.step), y(p.value), f"{series}, batch {p.step}: {value_text(p.value, p.stderr)}"
                    + (f" (n={p.n})" if p.n is not None else "")) for p in pts]
        lines.append(CurveLine(series, index, path, band, dots))
        end = pts[-1]
        last.append(f"{series}: {value_text(end.value, end.stderr)} at batch {end.step}")
    return CurveChart(
        task=task, metric=curves.metrics[task], lines=lines,
        x_ticks=[(x(t), f"{t:g}") for t in x_ticks],
        y_ticks=[(y(t), _tick_label(t, decimals, log)) for t in y_ticks],
        chance_y=y(baseline) if baseline is not None and y0 <= baseline <= y1 else None, last=last, log=log,
    )


def curve_charts(curves: Curves) -> list[CurveChart]:
    return [curve_chart(curves, task) for task in curves.tasks]


def html_view(curves: Curves) -> dict[str, Any]:
    """What the page's curves section needs: the charts, the series (by colour) and the CSV download."""
    return {"charts": curve_charts(curves),
            "series": [{"name": s, "index": i} for i, s in enumerate(curves.series)],
            "csv": {"name": CURVES_CSV_NAME, "href": data_uri(curves_csv(curves))}}
