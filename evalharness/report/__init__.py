"""Reports: comparison tables against published scores (pandas) and the HTML leaderboard (Jinja2).

`report(paths, compare=..., fmt="md"|"csv"|"html")` renders results.json files (with training curves of runs
that record a training step: curves.py); `write_run_report` writes
report.html after a run and `run_markdown` gives its markdown table. What a task's numbers mean comes from the
declarations results.json records (declarations.py); protocol rules: `evalharness.report.protocol`.
"""

from __future__ import annotations

from .make import FORMATS, RUN_REPORT_FILE, render, report, report_files, run_markdown, write_run_report

__all__ = ["FORMATS", "RUN_REPORT_FILE", "render", "report", "report_files", "run_markdown", "write_run_report"]
