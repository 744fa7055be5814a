"""What a task's numbers mean, as reports read it: from results.json, which records each task's declarations.

Runs written before tasks declared their metrics (results.json schema 1) lack them: for those the shipped task
spec of the same name supplies them, and for tasks unknown here, defaults (the first metric is the headline,
higher is better unless the metric registry says otherwise, harness "evalharness", no baseline or category).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

DEFAULT_HARNESSES = ("evalharness",)


@dataclass(frozen=True)
class TaskDeclarations:
    """A task's headline metric, subset average, per-metric direction and harnesses, baseline and category."""

    headline_metric: str | None
    subset_average: str | None
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    harnesses: dict[str, tuple[str, ...]] = field(default_factory=dict)
    baseline: float | None = None
    category: str | None = None
    protocol: str = ""

    def is_higher_better(self, metric: str) -> bool:
        if metric in self.higher_is_better:
            return self.higher_is_better[metric]
        return _registry_direction(metric)

    def harnesses_of(self, metric: str) -> frozenset[str]:
        return frozenset(self.harnesses.get(metric, DEFAULT_HARNESSES))


def from_results(task: str, info: dict[str, Any], metric_keys: list[str]) -> TaskDeclarations:
    """The declarations of `task` from its results.json entry (`info`), else the shipped spec, else defaults."""
    if "headline_metric" in info:
        metrics = info.get("metrics") or {}
        return TaskDeclarations(
            headline_metric=info.get("headline_metric"),
            subset_average=info.get("subset_average"),
            higher_is_better={m: bool(d.get("higher_is_better", True)) for m, d in metrics.items()},
            harnesses={m: tuple(d.get("harnesses") or DEFAULT_HARNESSES) for m, d in metrics.items()},
            baseline=info.get("baseline"),
            category=info.get("category"),
            protocol=info.get("protocol") or "",
        )
    shipped = _shipped(task)
    if shipped is not None:
        return TaskDeclarations(**{**shipped.__dict__, "subset_average": info.get("headline")})
    plain = [k for k in metric_keys if not k.endswith("_stderr") and k not in ("n", "num_subsets")]
    return TaskDeclarations(headline_metric=plain[0] if plain else None, subset_average=info.get("headline"),
                            protocol=info.get("protocol") or "")


def shipped_declarations(task: str) -> TaskDeclarations | None:
    """The declarations of the shipped task `task` (None if there is none)."""
    return _shipped(task)


@cache
def _shipped(task: str) -> TaskDeclarations | None:
    from ..errors import EvalHarnessError
    from ..tasks import TaskRegistry

    try:
        spec = TaskRegistry().specs.get(task)
    except EvalHarnessError:  # a broken task folder on the search path must not stop a report
        return None
    if spec is None:
        return None
    d = spec.declarations()
    return TaskDeclarations(d["headline_metric"], d["subset_average"],
                            {m: v["higher_is_better"] for m, v in d["metrics"].items()},
                            {m: tuple(v["harnesses"]) for m, v in d["metrics"].items()},
                            d["baseline"], d["category"], d["protocol"])


def _registry_direction(metric: str) -> bool:
    from ..metrics.registry import _METRICS

    known = _METRICS.get(metric)
    return known.higher_is_better if known is not None else True
