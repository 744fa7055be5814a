#!/usr/bin/env python3
"""Transcribe ../shared/reference/published_scores.csv into reports/published_scores.csv, normalised.

Usage: python scripts/normalize_published_scores.py [SOURCE_CSV] [OUTPUT_CSV]

Every input row becomes one output row, in the same order, with:
  model, display_name  one slug per model (LLaMA-30B = LLaMA-33B -> llama-30b), the name shown in tables
  task                 our task name (lambada_openai, piqa, hellaswag, mmlu, jeopardy, humaneval)
  metric               our metric name: acc, acc_norm, acc_token, pass@1
  aggregate            for tasks with subsets: macro (mean over subjects/categories), micro, or empty (not stated)
  num_fewshot          as published
  value                a fraction (percentages divided by 100)
  harness              who ran the evaluation: llm-foundry, lm-eval, lm-eval@e47e01b, helm, original, paper
  note                 what else differs or is uncertain (normalisation, split, prompt framing)
  reported_as          the source row's model, metric and value exactly as printed
  source               the citation, unchanged
A row that no rule below recognises is an error: nothing is guessed silently.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "reference" / "published_scores.csv"
DEFAULT_OUTPUT = REPO / "reports" / "published_scores.csv"
COLUMNS = ["model", "display_name", "task", "metric", "aggregate", "num_fewshot", "value", "harness", "note",
           "reported_as", "source"]

TASKS = {"LAMBADA (OpenAI)": "lambada_openai", "PIQA": "piqa", "HellaSwag": "hellaswag", "MMLU": "mmlu",
         "Jeopardy": "jeopardy", "HumanEval": "humaneval"}

# published name (without the "[hub id]" suffix) -> (slug, display name)
MODELS = {
    "MPT-7B": ("mpt-7b", "MPT-7B"),
    "MPT-30B": ("mpt-30b", "MPT-30B"),
    "LLaMA-7B": ("llama-7b", "LLaMA-7B"),
    "LLaMA-13B": ("llama-13b", "LLaMA-13B"),
    "LLaMA-30B": ("llama-30b", "LLaMA-30B"),  # the paper's LLaMA-33B; released as "30B"
    "LLaMA-33B (a.k.a. 30B)": ("llama-30b", "LLaMA-30B"),
    "LLaMA-65B": ("llama-65b", "LLaMA-65B"),
    "Falcon-7B": ("falcon-7b", "Falcon-7B"),
    "Falcon-40B": ("falcon-40b", "Falcon-40B"),
    "GPT-3 125M (Small)": ("gpt3-125m", "GPT-3 125M"),
    "GPT-3 350M (Medium)": ("gpt3-350m", "GPT-3 350M"),
    "GPT-3 760M (Large)": ("gpt3-760m", "GPT-3 760M"),
    "GPT-3 1.3B (XL)": ("gpt3-1.3b", "GPT-3 1.3B"),
    "GPT-3 2.7B": ("gpt3-2.7b", "GPT-3 2.7B"),
    "GPT-3 6.7B": ("gpt3-6.7b", "GPT-3 6.7B"),
    "GPT-3 13B": ("gpt3-13b", "GPT-3 13B"),
    "GPT-3 175B": ("gpt3-175b", "GPT-3 175B"),
}

GPT3_NORMALISATION = ("GPT-3 paper: per-token length normalisation for most multiple-choice tasks "
                      "(https://blog.eleuther.ai/multiple-choice-normalization/)")
FOUNDRY_MMLU = "LLM Foundry's own MMLU file (mmlu.jsonl) and prompt, not the original CSVs"


def _metric_rule(task: str, metric: str, source: str, model: str) -> tuple[str, str, str, str]:
    """(metric, aggregate, harness, note) for one source row; raises ValueError when no rule applies."""
    detail = (re.search(r"\((.*)\)", metric) or [None, ""])[1]
    if "llm-foundry" in metric:
        if "InContextLearningMultipleChoiceAccuracy" in metric:
            return "acc_token", "", "llm-foundry", ""
        if "InContextLearningLMAccuracy" in metric:
            return "acc", "", "llm-foundry", ""
        if "LM exact-match accuracy, mean over 5 categories" in metric:
            return "acc", "macro", "llm-foundry", ""
        if "MC accuracy on llm-foundry mmlu.jsonl, mean over 57 subjects" in metric:
            return "acc_token", "macro", "llm-foundry", FOUNDRY_MMLU
    if task == "mmlu" and "HELM implementation" in metric:
        return "acc", "", "helm", "HELM's MMLU implementation (5-shot), per the Hugging Face blog"
    if task == "mmlu" and "lm-eval-harness Jan-2023 implementation" in metric:
        return "acc", "", "lm-eval@e47e01b", "lm-evaluation-harness MMLU as of Jan 2023 (commit e47e01b)"
    if task == "mmlu" and "original hendrycks/test implementation" in metric:
        return "acc", "", "original", "the MMLU authors' evaluation code (hendrycks/test)"
    if metric.startswith("pass@1_pct"):
        return "pass@1", "", "paper", detail
    if metric.startswith("accuracy_pct"):
        if model.startswith("GPT-3"):
            if task == "mmlu":
                return "acc", "", "original", "evaluated by the MMLU authors (hendrycks/test)"
            if task == "lambada_openai":
                return "acc", "", "paper", detail
            note = "; ".join(x for x in (GPT3_NORMALISATION, detail) if x)
            return "acc_token", "", "paper", note
        if source.startswith("facebookresearch/llama@") and task in ("piqa", "hellaswag"):
            return "acc", "", "paper", "LLaMA paper's own evaluation; length normalisation not stated in the cited card"
        if task == "mmlu" and model.startswith(("LLaMA", "MPT", "Falcon")):
            return "acc", "", "paper", "Meta's own evaluation (Llama 2 paper / model card)"
    raise ValueError(f"no normalisation rule for model {model!r} task {task!r} metric {metric!r}")


def _value(raw: str, metric: str) -> float:
    value = float(raw)
    if "_pct" in metric.split(" ")[0]:
        value /= 100
    elif "_frac" not in metric.split(" ")[0]:
        raise ValueError(f"metric {metric!r} says neither _pct nor _frac")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"value {raw} ({metric}) is not a fraction after normalisation")
    return round(value, 6)


def normalize_row(row: dict[str, str]) -> dict[str, str]:
    """One source row -> one normalised row (see the module docstring)."""
    published = re.sub(r"\s*\[[^\]]*\]$", "", row["model"].strip())
    if published not in MODELS:
        raise ValueError(f"unknown model {row['model']!r}")
    if row["task"] not in TASKS:
        raise ValueError(f"unknown task {row['task']!r}")
    slug, display = MODELS[published]
    task = TASKS[row["task"]]
    metric, aggregate, harness, note = _metric_rule(task, row["metric"], row["source"], published)
    return {
        "model": slug, "display_name": display, "task": task, "metric": metric, "aggregate": aggregate,
        "num_fewshot": str(int(row["num_fewshot"])), "value": repr(_value(row["value"], row["metric"])),
        "harness": harness, "note": note,
        "reported_as": f"{row['model']}; {row['metric']}; {row['value']}", "source": row["source"],
    }


def normalize(source: Path, output: Path) -> int:
    with source.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    out = []
    for line, row in enumerate(rows, start=2):
        try:
            out.append(normalize_row(row))
        except ValueError as exc:
            raise SystemExit(f"{source}:{line}: {exc}") from None
    with output.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(out)
    return len(out)


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_OUTPUT
    print(f"wrote {normalize(src, dst)} rows to {dst}")
