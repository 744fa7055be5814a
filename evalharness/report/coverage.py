"""A limited run's macro average that covers fewer subsets than the task has: files written before --limit took
Jeopardy's items per category hold the first N items of the file (one category), averaged as if the five."""

from __future__ import annotations

from functools import cache

from .runs import Run


@cache
def _limits_per_subset_now(task: str) -> bool:
    """Whether the shipped task of this name takes --limit per subset through its YAML (dataset.limit_per_subset)."""
    from ..errors import EvalHarnessError
    from ..tasks import TaskRegistry

    try:
        spec = TaskRegistry().specs.get(task)
    except EvalHarnessError:
        return False
    return spec is not None and spec.dataset.limit_per_subset


def partial_subsets(run: Run, task: str, aggregate: str | None) -> str:
    """Why the run's `aggregate` average of `task` covers fewer subsets than the full task ("" when it does not):
    a --limit run whose results.json does not record that its items were taken per subset, of a task that takes
    them so now."""
    info = run.task_info(task)
    limit = run.data.get("config", {}).get("limit")
    if not limit or aggregate != "macro" or info.get("limit_per_subset") or not _limits_per_subset_now(task):
        return ""
    n = run.data.get("results", {}).get(task, {}).get("num_subsets") or len(run.subsets(task))
    return (f"first {limit} items of the file: a macro average over {n} subset{'s' if n != 1 else ''}, not all of "
            f"them (written before --limit took {task}'s items per subset)")
