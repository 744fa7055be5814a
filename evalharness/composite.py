"""Composite scores over several benchmarks: LLM Foundry's Eval Gauntlet arithmetic on plain inputs.

A composite (tasks/composites.yaml) names its benchmarks, the shots each must have run at, its categories and
its averages. Each benchmark's score has its random baseline subtracted and is rescaled, (score - baseline) /
(1 - baseline), so chance is 0 and a perfect score 1; a category is the equal-weighted mean of its benchmarks;
an average is the mean of its categories. What happens when a benchmark has no result is the definition's
`missing` rule, as LLM Foundry had it:

- `drop_category` (eval_gauntlet_callback.py since August 2023, the one that computes v0.3): the category is
  left out and each average is the mean of its categories that remain (LLM Foundry logs 0 for an average
  with none left; here it is None);
- `skip_benchmark` (the June 2023 callback behind the published v0 composites): the category is the mean of
  the benchmarks present. With none present that callback divided by zero; here the category is None and
  the averages use the categories that remain.

Either way the result records every benchmark used (score, shots, baseline, rescaled value), every absent one
and why, and, for a dropped category, the mean of the benchmarks it does have (`present_mean`, never used in
an average). A score measured at other shots than the definition's is absent, as in LLM Foundry, whose
benchmark keys are `<name>/<shots>-shot`.

Each benchmark's category and baseline come from the task declarations (a task YAML's `category` and
`baseline`, as results.json records them); benchmarks with no task YAML have them in composites.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Mapping

import yaml

from .errors import ConfigError
from .resources import resource_dir

COMPOSITES_FILE = "composites.yaml"  # read by the task registry too (tasks/registry.py skips it)
MISSING_RULES = ("drop_category", "skip_benchmark")


@dataclass(frozen=True)
class Declaration:
    """A benchmark's category and random baseline (the chance value of its headline metric)."""

    category: str
    baseline: float


@dataclass(frozen=True)
class CompositeDefinition:
    """Which benchmarks (at which shots) form which composite, and how it is averaged."""

    name: str
    title: str
    benchmarks: dict[str, int | None]  # name -> shots the score must have been measured at (None: any)
    categories: tuple[str, ...]
    averages: dict[str, tuple[str, ...]]
    missing: str = "drop_category"
    subtract_random_baseline: bool = True
    rescale_accuracy: bool = True
    source: str = ""

    def describe_rule(self) -> str:
        """One sentence: how the composite treats absent benchmarks."""
        if self.missing == "drop_category":
            return ("a category with an absent benchmark is left out (LLM Foundry's rule); "
                    "averages are over the categories that remain")
        return ("a category is the mean of its benchmarks present (LLM Foundry's June 2023 rule); "
                "a category with none is left out of the averages")


@dataclass(frozen=True)
class BenchmarkScore:
    name: str
    category: str
    score: float
    baseline: float
    rescaled: float
    num_fewshot: int | None
    metric: str = ""


@dataclass(frozen=True)
class CategoryScore:
    """value: the category's composite under the definition's rule (None when left out). present_mean: the mean
    over the benchmarks present (equal to value when none is absent; for information only)."""

    name: str
    value: float | None
    present_mean: float | None
    used: tuple[str, ...]
    absent: tuple[str, ...]


@dataclass(frozen=True)
class CompositeResult:
    definition: CompositeDefinition
    benchmarks: dict[str, BenchmarkScore]
    categories: dict[str, CategoryScore]
    averages: dict[str, float | None]
    absent: dict[str, str]  # benchmark -> why it is absent
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def complete(self) -> bool:
        return not self.absent

    def to_dict(self) -> dict[str, Any]:
        """The record results.json keeps under composites.<name>."""
        d = self.definition
        return {
            "title": d.title,
            "source": d.source,
            "rule": {"subtract_random_baseline": d.subtract_random_baseline, "rescale_accuracy": d.rescale_accuracy,
                     "weighting": "equal", "missing": d.missing, "missing_means": d.describe_rule()},
            "categories": {c.name: {"value": c.value, "present_mean": c.present_mean, "benchmarks": list(c.used),
                                    "absent": list(c.absent)} for c in self.categories.values()},
            "averages": {name: {"value": value, "categories": list(d.averages[name]),
                                "categories_used": [c for c in d.averages[name]
                                                    if self.categories[c].value is not None]}
                         for name, value in self.averages.items()},
            "benchmarks": {b.name: {"category": b.category, "score": b.score, "metric": b.metric,
                                    "num_fewshot": b.num_fewshot, "baseline": b.baseline, "rescaled": b.rescaled}
                           for b in self.benchmarks.values()},
            "absent": dict(self.absent),
            "notes": list(self.notes),
        }


def rescale(score: float, baseline: float, *, subtract: bool = True, rescale_accuracy: bool = True) -> float:
    """(score - baseline) / (1 - baseline): chance 0, perfect 1 (negative below chance)."""
    if subtract:
        score -= baseline
        if rescale_accuracy:
            score /= 1.0 - baseline
    return score


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def compute(definition: CompositeDefinition, scores: Mapping[str, float], declarations: Mapping[str, Declaration],
            *, shots: Mapping[str, int | None] | None = None, metrics: Mapping[str, str] | None = None,
            notes: tuple[str, ...] = ()) -> CompositeResult:
    """The composite of `scores` (benchmark -> headline score, a fraction) under `definition`.

    declarations: benchmark -> (category, baseline), for every benchmark of the definition. shots: the shots
    each score was measured at; a score at other shots than the definition's counts as absent. metrics: the
    metric behind each score, recorded only.
    """
    used: dict[str, BenchmarkScore] = {}
    absent: dict[str, str] = {}
    for name, need in definition.benchmarks.items():
        if name not in declarations:
            raise ConfigError(f"composite {definition.name!r}: benchmark {name!r} has no declared category and baseline")
        decl = declarations[name]
        if decl.category not in definition.categories:
            raise ConfigError(f"composite {definition.name!r}: benchmark {name!r} is declared in category "
                              f"{decl.category!r}, which is not one of {', '.join(definition.categories)}")
        if name not in scores or scores[name] is None:
            absent[name] = "no result"
            continue
        have = (shots or {}).get(name, need)
        if need is not None and have != need:
            ran = "shots not recorded" if have is None else f"ran at {have} shots"
            absent[name] = f"{ran}; the composite needs {need}"
            continue
        value = float(scores[name])
        used[name] = BenchmarkScore(name, decl.category, value, decl.baseline,
                                    rescale(value, decl.baseline, subtract=definition.subtract_random_baseline,
                                            rescale_accuracy=definition.rescale_accuracy),
                                    have, (metrics or {}).get(name, ""))
    categories: dict[str, CategoryScore] = {}
    for cat in definition.categories:
        members = [n for n in definition.benchmarks if declarations[n].category == cat]
        present = [n for n in members if n in used]
        missing = tuple(n for n in members if n not in used)
        present_mean = _mean([used[n].rescaled for n in present])  # equal weighting
        value = present_mean if definition.missing == "skip_benchmark" or not missing else None
        categories[cat] = CategoryScore(cat, value, present_mean, tuple(present), missing)
    averages = {}
    for avg, cats in definition.averages.items():
        averages[avg] = _mean([v for v in (categories[c].value for c in cats) if v is not None])
    return CompositeResult(definition, used, categories, averages, absent, tuple(notes))


# ---- definitions (tasks/composites.yaml) ------------------------------------------------------------------

@dataclass(frozen=True)
class Composites:
    """The composite definitions, which one runs carry and which one the published rows follow, and the
    declarations of benchmarks that have no task YAML."""

    definitions: dict[str, CompositeDefinition]
    default: str
    published: str
    declarations: dict[str, Declaration]  # benchmarks without a task YAML only
    source_file: str = ""

    def get(self, name: str) -> CompositeDefinition:
        if name not in self.definitions:
            raise ConfigError(f"unknown composite {name!r} (known: {', '.join(self.definitions)})")
        return self.definitions[name]


def _fail(where: str, message: str) -> None:
    raise ConfigError(f"{where}: {message}")


def _parse_definition(name: str, raw: Any, where: str) -> CompositeDefinition:
    where = f"{where}: composite {name!r}"
    if not isinstance(raw, dict):
        _fail(where, "expected a mapping")
    unknown = set(raw) - {"title", "source", "weighting", "subtract_random_baseline", "rescale_accuracy", "missing",
                          "categories", "averages", "benchmarks"}
    if unknown:
        _fail(where, f"unknown field(s) {', '.join(sorted(unknown))}")
    if str(raw.get("weighting", "equal")).lower() != "equal":
        _fail(where, f"weighting {raw['weighting']!r}: only equal weighting is supported (LLM Foundry's EQUAL)")
    missing = raw.get("missing", "drop_category")
    if missing not in MISSING_RULES:
        _fail(where, f"missing {missing!r}: expected one of {', '.join(MISSING_RULES)}")
    subtract, rescale_acc = raw.get("subtract_random_baseline", True), raw.get("rescale_accuracy", True)
    if rescale_acc and not subtract:
        _fail(where, "rescale_accuracy needs subtract_random_baseline (as in LLM Foundry)")
    categories = raw.get("categories")
    if not isinstance(categories, list) or not categories or not all(isinstance(c, str) for c in categories):
        _fail(where, "categories: expected a list of category names")
    benchmarks = raw.get("benchmarks")
    if not isinstance(benchmarks, dict) or not benchmarks:
        _fail(where, "benchmarks: expected a mapping of benchmark name -> shots")
    for bench, shots in benchmarks.items():
        if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 0):
            _fail(where, f"benchmark {bench!r}: shots must be a whole number, got {shots!r}")
    averages = raw.get("averages") or {"default_average": list(categories)}  # LLM Foundry's default
    if not isinstance(averages, dict):
        _fail(where, "averages: expected a mapping of average name -> list of categories")
    for avg, cats in averages.items():
        if avg in categories:
            _fail(where, f"average {avg!r} has a category's name")
        if not isinstance(cats, list) or any(c not in categories for c in cats):
            _fail(where, f"average {avg!r}: expected a list of this composite's categories")
    return CompositeDefinition(name=name, title=str(raw.get("title") or name), benchmarks=dict(benchmarks),
                               categories=tuple(categories), averages={k: tuple(v) for k, v in averages.items()},
                               missing=missing, subtract_random_baseline=bool(subtract),
                               rescale_accuracy=bool(rescale_acc), source=str(raw.get("source") or ""))


def parse_composites(raw: Any, where: str) -> Composites:
    if not isinstance(raw, dict) or not isinstance(raw.get("composites"), dict):
        _fail(where, "expected a mapping with 'composites'")
    definitions = {name: _parse_definition(name, body, where) for name, body in raw["composites"].items()}
    declarations: dict[str, Declaration] = {}
    for bench, decl in (raw.get("benchmarks") or {}).items():
        if not isinstance(decl, dict) or not isinstance(decl.get("category"), str) \
                or isinstance(decl.get("baseline"), bool) or not isinstance(decl.get("baseline"), (int, float)):
            _fail(where, f"benchmarks: {bench!r}: expected {{category: NAME, baseline: NUMBER}}")
        declarations[bench] = Declaration(decl["category"], float(decl["baseline"]))
    for key in ("default", "published"):
        if raw.get(key) not in definitions:
            _fail(where, f"{key}: {raw.get(key)!r} is not one of the composites ({', '.join(definitions)})")
    return Composites(definitions, raw["default"], raw["published"], declarations, where)


def load_composites(path: Path | str | None = None) -> Composites:
    """The composite definitions (default: the shipped tasks/composites.yaml)."""
    path = Path(path) if path is not None else resource_dir("tasks") / COMPOSITES_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc
    return parse_composites(raw, str(path))


@cache
def shipped_composites() -> Composites:
    return load_composites()


def declarations_for(definition: CompositeDefinition, task_declarations: Mapping[str, Declaration],
                     composites: Composites | None = None) -> dict[str, Declaration]:
    """Every benchmark's declaration: `task_declarations` (from task YAMLs or results.json) first, then the
    declarations composites.yaml keeps for benchmarks without a task YAML. Unknown benchmarks are an error."""
    fallback = (composites or shipped_composites()).declarations
    out = {}
    for name in definition.benchmarks:
        decl = task_declarations.get(name) or fallback.get(name)
        if decl is None:
            raise ConfigError(f"composite {definition.name!r}: benchmark {name!r} has no task YAML declaring its "
                              f"category and baseline, and no entry under 'benchmarks:' in {COMPOSITES_FILE}")
        out[name] = decl
    return out


@cache
def shipped_task_declarations() -> dict[str, Declaration]:
    """Category and baseline of every shipped task that declares both."""
    from .tasks import TaskRegistry

    return {name: Declaration(spec.category, float(spec.baseline)) for name, spec in TaskRegistry().specs.items()
            if spec.category is not None and spec.baseline is not None}


# ---- a run's composite ------------------------------------------------------------------------------------

def run_composite(tasks: Mapping[str, Mapping[str, Any]], results: Mapping[str, Mapping[str, Any]],
                  definition: CompositeDefinition | None = None) -> CompositeResult | None:
    """The composite of one run (results.json's `tasks` and `results`), or None when none of the run's tasks is
    one of its benchmarks. A benchmark's score is the task's headline metric; for a task with subsets it is the
    mean over subsets (`<metric>_macro` when the headline averages over items), as LLM Foundry averages a
    benchmark's subcategories."""
    definition = definition or shipped_composites().get(shipped_composites().default)
    if not any(t in definition.benchmarks for t in results):
        return None
    scores: dict[str, float] = {}
    shots: dict[str, int | None] = {}
    metrics: dict[str, str] = {}
    declared: dict[str, Declaration] = {}
    notes: list[str] = []
    for task, metric_values in results.items():
        if task not in definition.benchmarks:
            continue
        info = tasks.get(task, {})
        if info.get("category") is not None and info.get("baseline") is not None:
            if info["category"] in definition.categories:
                declared[task] = Declaration(info["category"], float(info["baseline"]))
            else:
                notes.append(f"{task}: the run's declared category {info['category']!r} is not one of the "
                             f"composite's; the shipped declaration is used")
        headline = info.get("headline_metric") or next(iter(metric_values), "")
        key = headline
        if info.get("subset_average") == "micro" and f"{headline}_macro" in metric_values:
            key = f"{headline}_macro"
            notes.append(f"{task}: {key} (the mean over subsets, as LLM Foundry averages subcategories)")
        value = metric_values.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            scores[task] = float(value)
            metrics[task] = key
            harnesses = ((info.get("metrics") or {}).get(headline) or {}).get("harnesses")
            if harnesses is not None and "llm-foundry" not in harnesses:
                notes.append(f"{task}: {headline} reproduces {'/'.join(harnesses) or 'no published harness'}, "
                             f"not LLM Foundry's protocol for this benchmark")
        fewshot = (info.get("fewshot") or {}).get("num_fewshot")
        shots[task] = fewshot if isinstance(fewshot, int) else None
    decls = declarations_for(definition, {**shipped_task_declarations(), **declared})
    return compute(definition, scores, decls, shots=shots, metrics=metrics, notes=tuple(notes))
