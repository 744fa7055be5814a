"""The metric registry: a metric's name -> its per-item function, its aggregation (with standard error) and
whether higher is better. Task specs name metrics from here; an unknown name is an error that names the file.

Register your own with `register_metric(Metric(...))` before tasks load (e.g. in the program that calls
`evaluate()`); `pass@<k>` names are made on demand for any k.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Sequence

from ..execution.passk import pass_at_k
from ..requests import GenerateResult, LoglikelihoodResult
from .functions import AnswerRule, MetricValue, exact_match, lm_acc, mc_predictions, mean_with_stderr, perplexity


@dataclass(frozen=True)
class Outcome:
    """What one item's metrics are computed from.

    results: the backend's answers to the item's requests (one per choice for multiple choice).
    gold: the gold choice index (multiple choice, schema), the gold text, or every accepted answer (generation
    with answers).
    choice_lengths: multiple choice: characters of each choice, without the target delimiter.
    executions: code tasks: each sample's execution result (with a `passed` attribute).
    answer_rule: generation with answers: how the output is cut and normalised (the task's LLM Foundry settings).
    """

    results: tuple[LoglikelihoodResult | GenerateResult, ...]
    gold: int | str | tuple[str, ...]
    choice_lengths: tuple[int, ...] = ()
    executions: tuple[Any, ...] | None = None
    answer_rule: AnswerRule | None = None

    @cached_property
    def choice_predictions(self) -> dict[str, int]:
        """Multiple choice: the choice each of acc, acc_norm and acc_token picks (computed once per item)."""
        return mc_predictions(self.results, self.choice_lengths)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Aggregation:
    """Per-item values -> a MetricValue with its standard error. `by_subset`: micro and macro averages over
    subsets make sense for it (a mean does; a perplexity does not)."""

    name: str
    fn: Callable[[Sequence[float]], MetricValue]
    by_subset: bool = True


@dataclass(frozen=True)
class Metric:
    """A metric as task specs name it.

    value: the item's value from its Outcome. predict: the choice a multiple-choice metric picks (for logs).
    item_key: the per-item value's name in samples files (default: the metric's name).
    needs_execution: scored by running generated code (the task's programs run in the sandbox).
    """

    name: str
    output_types: frozenset[str]
    value: Callable[[Outcome], float]
    aggregation: str = "mean"
    higher_is_better: bool = True
    predict: Callable[[Outcome], int] | None = None
    item_key: str | None = None
    needs_execution: bool = False
    description: str = ""

    @property
    def key(self) -> str:
        return self.item_key or self.name


AGGREGATIONS: dict[str, Aggregation] = {
    "mean": Aggregation("mean", mean_with_stderr),
    "perplexity": Aggregation("perplexity", perplexity, by_subset=False),
}

_METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> None:
    """Make `metric` available to task specs by its name."""
    if metric.aggregation not in AGGREGATIONS:
        raise ValueError(f"metric {metric.name!r}: unknown aggregation {metric.aggregation!r}")
    _METRICS[metric.name] = metric


def _choice(kind: str) -> Callable[[Outcome], int]:
    def predict(o: Outcome) -> int:
        return o.choice_predictions[kind]

    return predict


def _choice_metric(kind: str, description: str) -> Metric:
    predict = _choice(kind)
    types = {"multiple_choice", "schema"} if kind in ("acc", "acc_token") else {"multiple_choice"}
    return Metric(kind, frozenset(types), lambda o: 1.0 if predict(o) == o.gold else 0.0,
                  predict=predict, description=description)


def _pass_at(k: int) -> Metric:
    def value(o: Outcome) -> float:
        runs = o.executions or ()
        if k > len(runs):
            raise ValueError(f"pass@{k} needs at least {k} samples, got {len(runs)}")
        return pass_at_k(len(runs), sum(bool(e.passed) for e in runs), k)

    return Metric(f"pass@{k}", frozenset({"generation"}), value, needs_execution=True,
                  description=f"unbiased pass@{k} over the samples (HumanEval's estimator)")


for _m in (
    _choice_metric("acc", "multiple choice: the choice with the highest summed log-prob (lm-eval acc)"),
    _choice_metric("acc_norm", "multiple choice: log-prob per character of the choice (lm-eval acc_norm)"),
    _choice_metric("acc_token", "multiple choice: log-prob per token (LLM Foundry's accuracy)"),
    Metric("perplexity", frozenset({"language_modeling"}), lambda o: o.results[0].logprob,  # type: ignore[union-attr]
           aggregation="perplexity", higher_is_better=False, item_key="logprob",
           description="exp(-mean summed log-prob of the continuation)"),
    Metric("exact_match", frozenset({"generation"}), lambda o: exact_match(o.results[0].texts[0], str(o.gold)),  # type: ignore[union-attr]
           description="normalised first completion equals the gold answer"),
):
    register_metric(_m)
# language modelling's acc shares the name of multiple choice's: one registry name per (name, output type)
LM_ACC = Metric("acc", frozenset({"language_modeling"}), lambda o: lm_acc(o.results[0]),  # type: ignore[arg-type]
                description="language modelling: every continuation token is the greedy one")


def _answers_match(o: Outcome) -> float:
    rule = o.answer_rule or AnswerRule()
    answers = o.gold if isinstance(o.gold, tuple) else (str(o.gold),)
    return rule.correct(o.results[0].texts[0], answers)  # type: ignore[union-attr]


# generation with answers' exact_match is LLM Foundry's (stop, CoT, its normalisation, any alias, prefix match)
QA_EXACT_MATCH = Metric("exact_match", frozenset({"generation_task_with_answers"}), _answers_match,
                        description="LLM Foundry's generation accuracy: the answer (after the stop sequences and the "
                                    "chain-of-thought delimiter), normalised, starts with a normalised accepted answer")
_BY_TYPE: dict[tuple[str, str], Metric] = {
    ("acc", "language_modeling"): LM_ACC,
    ("exact_match", "generation_task_with_answers"): QA_EXACT_MATCH,
}

_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], Metric]]] = [
    (re.compile(r"pass@([1-9][0-9]*)"), lambda m: _pass_at(int(m.group(1)))),
]


def get_metric(name: str, output_type: str) -> Metric:
    """The metric `name` for tasks of `output_type`; KeyError with a hint when there is none."""
    if (name, output_type) in _BY_TYPE:
        return _BY_TYPE[(name, output_type)]
    metric = _METRICS.get(name)
    if metric is None:
        for pattern, make in _PATTERNS:
            match = pattern.fullmatch(name)
            if match:
                metric = make(match)
                break
    if metric is None:
        close = difflib.get_close_matches(name, metric_names(), n=2)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise KeyError(f"unknown metric {name!r}{hint}; known: {', '.join(metric_names())}")
    if output_type not in metric.output_types:
        raise KeyError(f"metric {name!r} is not defined for {output_type} tasks (only {', '.join(sorted(metric.output_types))})")
    return metric


def metric_names() -> list[str]:
    return [*_METRICS, "pass@<k>"]
