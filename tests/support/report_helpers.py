"""Hand-made results.json structures (and folders) for the report tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GROUPED = {"mmlu": "micro", "jeopardy": "macro"}


def make_results(model: str, values: dict[str, dict[str, float]], *, shots: int | dict[str, int] = 0,
                 groups: dict[str, dict[str, dict[str, float]]] | None = None, limit: int | None = None,
                 dtype: str = "bfloat16") -> dict[str, Any]:
    """A results.json dict: values[task][metric] = value (stderr 0.01, n 100 unless given as '<m>_stderr', 'n')."""
    results = {}
    for task, metrics in values.items():
        entry: dict[str, Any] = {}
        for key, value in metrics.items():
            entry[key] = value
            if not key.endswith("_stderr") and key != "n":
                entry.setdefault(f"{key}_stderr", metrics.get(f"{key}_stderr", 0.01))
        entry.setdefault("n", 100)
        results[task] = entry
    tasks = {
        task: {"headline": GROUPED.get(task),
               "fewshot": {"num_fewshot": shots.get(task, 0) if isinstance(shots, dict) else shots,
                           "target_delimiter": " "}}
        for task in values
    }
    return {
        "schema_version": 1, "created": "2026-01-02T03:04:05+00:00",
        "config": {"model": model, "limit": limit, "num_fewshot": None, "dtype": dtype, "device": "cpu"},
        "model": {"name": model, "kind": "folder", "model_type": "mpt", "num_parameters": 1234567,
                  "fingerprint": "0123456789abcdef"},
        "results": results, "groups": groups or {}, "tasks": tasks,
        "data": {task: {f"{task}.jsonl": "ab" * 32} for task in values},
        "versions": {"evalharness": "0.1.0", "torch": "2.13.0", "transformers": "5.23.0"},
        "scoring_version": "2", "eval_seconds": 1.5,
    }


def write_run(folder: Path, results: dict[str, Any], samples: dict[str, list[dict[str, Any]]] | None = None) -> Path:
    """results.json (and samples_<task>.jsonl files) in `folder`; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    for task, records in (samples or {}).items():
        (folder / f"samples_{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


def mc_sample(doc_id: int, context: str, choices: list[str], gold: int, predicted: int) -> dict[str, Any]:
    return {
        "doc_id": doc_id, "subset": None,
        "requests": [{"context": context, "continuation": " " + c} for c in choices],
        "logprobs": [-1.0 - i for i in range(len(choices))], "is_greedy": [False] * len(choices),
        "num_tokens": [1] * len(choices), "truncated": False, "prediction": predicted,
        "predictions": {"acc": predicted, "acc_norm": predicted, "acc_token": predicted}, "gold": gold,
        "metrics": {"acc": float(predicted == gold), "acc_norm": float(predicted == gold),
                    "acc_token": float(predicted == gold)},
    }


def lm_sample(doc_id: int, context: str, gold: str, greedy: bool) -> dict[str, Any]:
    return {
        "doc_id": doc_id, "subset": None, "requests": [{"context": context, "continuation": " " + gold}],
        "logprobs": [-2.5], "is_greedy": [greedy], "num_tokens": [2], "truncated": False, "prediction": None,
        "predictions": None, "gold": gold, "metrics": {"acc": float(greedy)},
    }
