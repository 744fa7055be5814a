"""Two runs paired item by item: for every task both ran, on the same items under the same protocol, the paired
statistics of its headline metric (paired.py) and the items that moved. Runs that differ are refused with one line
naming the task and what differs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .paired import AGGREGATIONS, BOOTSTRAP_RESAMPLES, PairedDifference, paired_difference
from .protocol import split_metric_key
from .runs import Run

SIGNIFICANCE = 0.05
TEXT_CHARS = 60  # predictions longer than this are cut in flip listings


@dataclass(frozen=True)
class Flip:
    """An item whose value differs between the runs: `better` when B's value beats A's."""

    doc_id: Any
    subset: str | None
    gold: str
    a: str
    b: str
    a_value: float
    b_value: float
    better: bool


@dataclass(frozen=True)
class TaskPair:
    """One task's paired comparison: the metric compared (with ' (macro)' for a mean of subset means)."""

    task: str
    metric: str
    num_fewshot: int | None
    higher_is_better: bool
    stats: PairedDifference
    flips: list[Flip]

    @property
    def verdict(self) -> str:
        """'B better' / 'B worse' when p < 0.05, else 'not significant'."""
        if self.stats.p_value >= SIGNIFICANCE or self.stats.difference == 0:
            return "not significant"
        return "B better" if (self.stats.difference > 0) == self.higher_is_better else "B worse"


@dataclass(frozen=True)
class RunPair:
    """Run A, run B, each shared task's comparison, and the tasks only one of them ran."""

    a: Run
    b: Run
    tasks: list[TaskPair]
    only_a: list[str]
    only_b: list[str]


def pair_runs(a: Run, b: Run, *, tasks: list[str] | None = None, metrics: dict[str, str] | None = None,
              resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> RunPair:
    """Compare runs A and B on each task both ran (or `tasks`); `metrics` overrides a headline (task -> key)."""
    shared = [t for t in a.tasks if t in b.tasks]
    for task in tasks or []:
        if task not in shared:
            raise ConfigError(f"{task}: not a task both runs have (shared: {', '.join(shared) or 'none'})")
    if not shared:
        raise ConfigError(f"the runs share no task (A: {', '.join(a.tasks) or 'none'}; B: {', '.join(b.tasks) or 'none'})")
    chosen = [t for t in shared if t in tasks] if tasks else shared
    pairs = [pair_task(a, b, t, (metrics or {}).get(t), resamples, seed) for t in chosen]
    return RunPair(a, b, pairs, [t for t in a.tasks if t not in b.tasks], [t for t in b.tasks if t not in a.tasks])


def pair_task(a: Run, b: Run, task: str, metric_key: str | None = None, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = 0) -> TaskPair:
    """The paired comparison of one task; ConfigError naming the task when the runs cannot be paired on it."""
    check_same_protocol(a, b, task)
    declared = a.declarations(task)
    metric, aggregate = split_metric_key(metric_key or declared.headline_metric or "acc")
    aggregate = aggregate or declared.subset_average
    records_a, records_b = _records(a, task, "A"), _records(b, task, "B")
    aggregation, item_key = _aggregation(a, task, metric, records_a[0])
    higher = declared.is_higher_better(metric)
    b_by_key = _match(task, records_a, records_b)
    ordered_b = [b_by_key[_key(r)] for r in records_a]
    values_a = [_value(task, r, item_key, "A") for r in records_a]
    values_b = [_value(task, r, item_key, "B") for r in ordered_b]
    groups = [str(r.get("subset")) for r in records_a] if aggregate == "macro" and aggregation == "mean" else None
    item_higher = higher if aggregation == "mean" else True  # perplexity's items are log-probs
    stats = paired_difference(values_a, values_b, aggregation=aggregation, groups=groups,
                              higher_is_better=item_higher, resamples=resamples, seed=seed)
    flips = [_flip(ra, rb, va, vb, metric, item_higher)
             for ra, rb, va, vb in zip(records_a, ordered_b, values_a, values_b) if va != vb]
    label = metric + (" (macro)" if groups is not None else "")
    return TaskPair(task, label, a.num_fewshot(task), higher, stats, flips)


def check_same_protocol(a: Run, b: Run, task: str) -> None:
    """Refuse a task run under different shots, few-shot draw, prompt format or data files."""
    shots_a, shots_b = a.num_fewshot(task), b.num_fewshot(task)
    if shots_a != shots_b:
        raise ConfigError(f"{task}: A ran {shots_a}-shot, B {shots_b}-shot; run both with the same --num-fewshot")
    fewshot_a, fewshot_b = a.task_info(task).get("fewshot") or {}, b.task_info(task).get("fewshot") or {}
    differing = [k for k in sorted(set(fewshot_a) | set(fewshot_b)) if fewshot_a.get(k) != fewshot_b.get(k)]
    if fewshot_a and fewshot_b and differing:
        what = ", ".join(f"{k} {fewshot_a.get(k)!r} vs {fewshot_b.get(k)!r}" for k in differing)
        raise ConfigError(f"{task}: the runs drew their shots differently ({what}); compare needs the same prompts")
    format_a, format_b = a.prompt_format(task), b.prompt_format(task)
    if format_a != format_b:
        raise ConfigError(f"{task}: A's prompts are {format_a or 'plain'}, B's {format_b or 'plain'}; "
                          "compare needs the same prompt format")
    data_a, data_b = a.data.get("data", {}).get(task), b.data.get("data", {}).get(task)
    if data_a and data_b and data_a != data_b:
        files = ", ".join(sorted(set(data_a) ^ set(data_b))) or "same names, different sha256"
        raise ConfigError(f"{task}: the runs read different data files ({files}); compare needs the same items")


def _aggregation(run: Run, task: str, metric: str, record: dict[str, Any]) -> tuple[str, str]:
    """(aggregation, the per-item key in samples files) of the task's metric; the output type, when results.json
    lacks it, from a samples record."""
    from ..metrics.registry import get_metric

    info = run.task_info(task)
    aggregation = ((info.get("metrics") or {}).get(metric) or {}).get("aggregation")
    output_type = info.get("output_type") or ("generation" if "completions" in record else
                                              "multiple_choice" if len(record.get("requests") or []) > 1 else
                                              "language_modeling")
    try:
        known = get_metric(metric, output_type)
    except KeyError:
        known = None
    aggregation = aggregation or (known.aggregation if known else "mean")
    if aggregation not in AGGREGATIONS:
        raise ConfigError(f"{task}: metric {metric!r} aggregates by {aggregation!r}; compare handles "
                          f"{' and '.join(AGGREGATIONS)}")
    return aggregation, known.key if known else metric


def _records(run: Run, task: str, which: str) -> list[dict[str, Any]]:
    records = run.samples(task, None)
    if not records:
        where = run.folder if run.folder is not None else "memory"
        raise ConfigError(f"{task}: {which} ({where}) has no samples_{task}.jsonl; compare pairs the per-item samples")
    return records


def _key(record: dict[str, Any]) -> tuple[str, str]:
    return str(record.get("subset")), str(record.get("doc_id"))


def _match(task: str, records_a: list[dict[str, Any]], records_b: list[dict[str, Any]]) -> dict[tuple[str, str], dict]:
    """B's records by (subset, doc_id), after checking that both runs scored the same items with the same gold."""
    if len(records_a) != len(records_b):
        raise ConfigError(f"{task}: A has {len(records_a)} items, B has {len(records_b)}; run both with the same --limit")
    by_key = {_key(r): r for r in records_b}
    missing = [k for k in (_key(r) for r in records_a) if k not in by_key]
    if missing or len(by_key) != len(records_b):
        first = missing[0] if missing else ("?", "?")
        raise ConfigError(f"{task}: {len(missing)} of A's items are not in B (first: doc_id {first[1]}"
                          f"{'' if first[0] == 'None' else f' of {first[0]}'}); run both on the same items")
    for r in records_a:
        other = by_key[_key(r)]
        if r.get("gold") != other.get("gold"):
            raise ConfigError(f"{task}: item {r.get('doc_id')} has gold {r.get('gold')!r} in A and {other.get('gold')!r} "
                              "in B; the runs read different data")
    return by_key


def _value(task: str, record: dict[str, Any], key: str, which: str) -> float:
    value = (record.get("metrics") or {}).get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        have = ", ".join(record.get("metrics") or {}) or "none"
        raise ConfigError(f"{task}: {which}'s item {record.get('doc_id')} has no per-item {key!r} value (it has: {have})")
    return float(value)


def _flip(ra: dict[str, Any], rb: dict[str, Any], va: float, vb: float, metric: str, item_higher: bool) -> Flip:
    return Flip(ra.get("doc_id"), ra.get("subset"), _gold(ra), _prediction(ra, metric), _prediction(rb, metric),
                va, vb, (vb > va) == item_higher)


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


def _choice(record: dict[str, Any], index: Any) -> str:
    """'index: text' of a choice, without the start every choice shares (long choices often differ late)."""
    requests = record.get("requests") or []
    if not (isinstance(index, int) and 0 <= index < len(requests) and "continuation" in requests[index]):
        return str(index)
    texts = [" ".join(str(r.get("continuation", "")).split()) for r in requests]
    shared = len(os.path.commonprefix(texts)) if len(texts) > 1 else 0
    text = texts[index]
    return f"{index}: {_cut('…' + text[shared:] if shared > 10 and shared < len(text) else text)}"


def _gold(record: dict[str, Any]) -> str:
    gold = record.get("gold")
    if isinstance(gold, int) and len(record.get("requests") or []) > 1:
        return _choice(record, gold)
    return _cut(" | ".join(map(str, gold)) if isinstance(gold, list) else str(gold))


def _prediction(record: dict[str, Any], metric: str) -> str:
    """What the run answered: the chosen choice, the generated text, or whether the continuation was greedy."""
    if "completions" in record:
        return _cut(str(record.get("prediction", "")))
    if len(record.get("requests") or []) > 1:
        return _choice(record, (record.get("predictions") or {}).get(metric, record.get("prediction")))
    greedy = (record.get("is_greedy") or [None])[0]
    logprob = (record.get("logprobs") or [None])[0]
    parts = ["greedy" if greedy else "not greedy", f"log-prob {logprob:.2f}" if isinstance(logprob, (int, float)) else ""]
    return ", ".join(p for p in parts if p)
