"""What a number means: the protocol a value was obtained under (metric, average, shots, harness, prompt format).

A task's headline metric and the harnesses each metric reproduces are the task's own declarations (its YAML,
recorded in results.json; declarations.py). A value is ranked beside another only if their protocols agree.
"""

from __future__ import annotations

from dataclasses import dataclass

AGGREGATES = ("macro", "micro")


@dataclass(frozen=True)
class Protocol:
    """How a value was obtained. `aggregate` None: the task has no subsets, or the source does not say.
    `prompt_format`: "" for plain prompts (published scores), else the chat template / system instruction label
    (evalharness.chat.label_of): chat-formatted values are a different protocol."""

    metric: str
    aggregate: str | None
    num_fewshot: int | None
    harnesses: frozenset[str]
    higher_is_better: bool = True
    prompt_format: str = ""

    def describe(self) -> str:
        agg = f" ({self.aggregate})" if self.aggregate else ""
        shots = "?" if self.num_fewshot is None else str(self.num_fewshot)
        fmt = f", {self.prompt_format}" if self.prompt_format else ""
        return f"{self.metric}{agg}, {shots}-shot, {'/'.join(sorted(self.harnesses))}{fmt}"


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
    if other.prompt_format != row.prompt_format:
        out.append(f"prompt format {other.prompt_format or 'plain'} (row: {row.prompt_format or 'plain'})")
    return out
