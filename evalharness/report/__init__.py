"""Reports: comparison tables against published scores (pandas) and the HTML leaderboard (Jinja2).

`report(paths, compare=..., fmt="md"|"csv"|"html")` renders results.json files; `run_report` writes
report.html after a run and returns its markdown table. Protocol rules: `evalharness.report.protocol`.
"""

from __future__ import annotations

from .make import FORMATS, RUN_REPORT_FILE, render, report, run_report

__all__ = ["FORMATS", "RUN_REPORT_FILE", "render", "report", "run_report"]
