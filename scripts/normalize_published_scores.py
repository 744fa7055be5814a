#!/usr/bin/env python3
"""Transcribe ../shared/reference/published_scores.csv into reports/published_scores.csv, normalised.

Usage: python scripts/normalize_published_scores.py [SOURCE_CSV] [OUTPUT_CSV]

Every input row becomes one output row, in the same order, with:
  model, display_name  one slug per model (LLaMA-30B = LLaMA-33B -> llama-30b), the name shown in tables
  task                 our task name: LLM Foundry's label (lambada_openai, piqa, hellaswag, mmlu, jeopardy, copa,
                       boolq, arc_easy, winograd, triviaqa, bigbench_<x>, ...; see TASKS), humaneval, or
                       gauntlet:<category> / gauntlet:average for LLM Foundry's gauntlet composites
  metric               our metric name:
                         acc_token    LLM Foundry's InContextLearningMultipleChoiceAccuracy (multiple_choice and
                                      schema tasks: argmax of the mean log-prob per token of the continuation;
                                      for schema tasks the options are contexts sharing one continuation);
                                      GPT-3 paper accuracy on tasks it length-normalises per token
                         acc          LLM Foundry's InContextLearningLMAccuracy (language_modeling: greedy exact
                                      match of the continuation); lm-eval / HELM / original MMLU accuracy;
                                      GPT-3 paper accuracy on LAMBADA and, with a note, on ARC and OpenBookQA
                                      (scored by the unconditional-probability ratio, which is none of ours)
                         exact_match  generation scored against the answers (LLM Foundry's QA accuracy on
                                      TriviaQA, GPT-3's closed-book TriviaQA)
                         pass@1       HumanEval
                         composite    LLM Foundry's gauntlet composites (baseline-subtracted accuracy, averaged)
  aggregate            for tasks with subsets: macro (mean over subjects/categories), micro, or empty (not stated);
                       macro for the gauntlet composites (equal-weighted means over benchmarks / categories)
  num_fewshot          as published; empty only for the gauntlet composites (their benchmarks mix shot counts)
  value                a fraction (percentages divided by 100), every published digit kept; composites may be
                       below 0 (worse than chance)
  harness              who ran the evaluation: llm-foundry, lm-eval, lm-eval@e47e01b, helm, original, paper
  note                 what else differs or is uncertain (normalisation, split, prompt framing)
  reported_as          the source row's model, metric and value exactly as printed
  source               the citation, unchanged
A row that no rule below recognises is an error: nothing is guessed silently.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "reference" / "published_scores.csv"
DEFAULT_OUTPUT = REPO / "reports" / "published_scores.csv"
COLUMNS = ["model", "display_name", "task", "metric", "aggregate", "num_fewshot", "value", "harness", "note",
           "reported_as", "source"]

TASKS = {"LAMBADA (OpenAI)": "lambada_openai", "PIQA": "piqa", "HellaSwag": "hellaswag", "MMLU": "mmlu",
         "Jeopardy": "jeopardy", "HumanEval": "humaneval",
         # LLM Foundry's labels (file winograd_wsc.jsonl is label winograd; triviaqa_sm(_sub).jsonl is triviaqa)
         "COPA": "copa", "BoolQ": "boolq", "ARC-Easy": "arc_easy", "ARC-Challenge": "arc_challenge",
         "Winograd (WSC273)": "winograd", "Winogrande": "winogrande", "TriviaQA": "triviaqa",
         "OpenBookQA": "openbook_qa", "CoQA": "coqa", "SQuAD": "squad", "LogiQA": "logi_qa", "MathQA": "math_qa",
         "PubMedQA (labeled)": "pubmed_qa_labeled", "Simple arithmetic (no spaces)": "simple_arithmetic_nospaces",
         "Simple arithmetic (with spaces)": "simple_arithmetic_withspaces"}
# "BIG-bench <x>" -> bigbench_<x>, for these x only
BIGBENCH = {"conceptual_combinations", "conlang_translation", "cs_algorithms", "dyck_languages", "elementary_math_qa",
            "language_identification", "logical_deduction", "misconceptions", "movie_recommendation", "novel_concepts",
            "operators", "qa_wikidata", "repeat_copy_logic", "strange_stories", "strategy_qa", "understanding_fables"}
# "gauntlet:<x>" is kept as it is, for these x only
GAUNTLET = {"average", "world_knowledge", "commonsense_reasoning", "language_understanding",
            "symbolic_problem_solving", "reading_comprehension"}

# published name (without the "[hub id]" suffix) -> (slug, display name)
MODELS = {
    "MPT-7B": ("mpt-7b", "MPT-7B"),
    "MPT-7B-Instruct": ("mpt-7b-instruct", "MPT-7B-Instruct"),
    "MPT-7B-Chat": ("mpt-7b-chat", "MPT-7B-Chat"),
    "MPT-30B": ("mpt-30b", "MPT-30B"),
    "LLaMA-7B": ("llama-7b", "LLaMA-7B"),
    "LLaMA-13B": ("llama-13b", "LLaMA-13B"),
    "LLaMA-30B": ("llama-30b", "LLaMA-30B"),  # the paper's LLaMA-33B; released as "30B"
    "LLaMA-33B (a.k.a. 30B)": ("llama-30b", "LLaMA-30B"),
    "LLaMA-65B": ("llama-65b", "LLaMA-65B"),
    "Falcon-7B": ("falcon-7b", "Falcon-7B"),
    "Falcon-7B-Instruct": ("falcon-7b-instruct", "Falcon-7B-Instruct"),
    "Falcon-40B": ("falcon-40b", "Falcon-40B"),
    "Pythia-6.9B": ("pythia-6.9b", "Pythia-6.9B"),
    "Pythia-12B": ("pythia-12b", "Pythia-12B"),
    "RedPajama-INCITE-7B-Base": ("redpajama-incite-7b-base", "RedPajama-INCITE-7B-Base"),
    "RedPajama-INCITE-7B-Instruct": ("redpajama-incite-7b-instruct", "RedPajama-INCITE-7B-Instruct"),
    "GPT-J-6B": ("gpt-j-6b", "GPT-J-6B"),
    "OPT-6.7B": ("opt-6.7b", "OPT-6.7B"),
    "StableLM-Tuned-Alpha-7B": ("stablelm-tuned-alpha-7b", "StableLM-Tuned-Alpha-7B"),
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
GPT3_UNCONDITIONAL = ("GPT-3 paper: choices scored by P(completion | context) / P(completion | 'Answer: ' or 'A: ') "
                      "(unconditional normalisation), not lm-eval's acc")
GPT3_PER_TOKEN = {"piqa", "hellaswag", "copa", "boolq", "winograd", "winogrande"}
GPT3_UNCONDITIONAL_TASKS = {"arc_easy", "arc_challenge", "openbook_qa"}
FOUNDRY_MMLU = "LLM Foundry's own MMLU file (mmlu.jsonl) and prompt, not the original CSVs"
FOUNDRY_SCHEMA = "LLM Foundry schema task: the options are contexts, scored on the shared continuation"
FOUNDRY_TRIVIAQA = ("LLM Foundry question_answering task on triviaqa_sm.jsonl, 0-shot (not the gauntlet v0.3 file "
                    "triviaqa_sm_sub.jsonl): normalised exact match against the answer and its aliases")
GAUNTLET_NOTE = ("LLM Foundry Model Gauntlet v0: each benchmark's (accuracy - random baseline) / (1 - baseline), "
                 "equal-weighted over the category's benchmarks at mixed shot counts")
GAUNTLET_AVERAGE_NOTE = "LLM Foundry Model Gauntlet v0: unweighted mean of the 5 category composites"


def _metric_rule(task: str, metric: str, source: str, model: str) -> tuple[str, str, str, str]:
    """(metric, aggregate, harness, note) for one source row; raises ValueError when no rule applies."""
    detail = (re.search(r"\((.*)\)", metric) or [None, ""])[1]
    if metric.startswith("composite_frac (LLM Foundry Model Gauntlet v0") and task.startswith("gauntlet:"):
        note = GAUNTLET_AVERAGE_NOTE if task == "gauntlet:average" else GAUNTLET_NOTE
        return "composite", "macro", "llm-foundry", note
    if "llm-foundry" in metric:
        if "schema task, InContextLearningMultipleChoiceAccuracy" in metric:
            return "acc_token", "", "llm-foundry", FOUNDRY_SCHEMA
        if "InContextLearningMultipleChoiceAccuracy" in metric:
            return "acc_token", "", "llm-foundry", ""
        if "InContextLearningLMAccuracy" in metric:
            return "acc", "", "llm-foundry", ""
        if "LM exact-match accuracy, mean over 5 categories" in metric:
            return "acc", "macro", "llm-foundry", ""
        if "MC accuracy on llm-foundry mmlu.jsonl, mean over 57 subjects" in metric:
            return "acc_token", "macro", "llm-foundry", FOUNDRY_MMLU
        if "InContextLearningQAAccuracy" in metric and task == "triviaqa":
            return "exact_match", "", "llm-foundry", FOUNDRY_TRIVIAQA
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
            if task == "triviaqa":
                return "exact_match", "", "paper", detail
            if task in GPT3_UNCONDITIONAL_TASKS:
                return "acc", "", "paper", "; ".join(x for x in (GPT3_UNCONDITIONAL, detail) if x)
            if task in GPT3_PER_TOKEN:
                return "acc_token", "", "paper", "; ".join(x for x in (GPT3_NORMALISATION, detail) if x)
        if source.startswith("facebookresearch/llama@") and task in ("piqa", "hellaswag"):
            return "acc", "", "paper", "LLaMA paper's own evaluation; length normalisation not stated in the cited card"
        if task == "mmlu" and model.startswith(("LLaMA", "MPT", "Falcon")):
            return "acc", "", "paper", "Meta's own evaluation (Llama 2 paper / model card)"
    raise ValueError(f"no normalisation rule for model {model!r} task {task!r} metric {metric!r}")


def _value(raw: str, metric: str) -> float:
    """The published value as a fraction; raises ValueError when the metric says no unit or it is out of range."""
    value = float(raw)
    if "_pct" in metric.split(" ")[0]:
        value /= 100
    elif "_frac" not in metric.split(" ")[0]:
        raise ValueError(f"metric {metric!r} says neither _pct nor _frac")
    low = -math.inf if metric.startswith("composite_") else 0.0  # a composite below 0: worse than chance
    if not low <= value <= 1.0:
        raise ValueError(f"value {raw} ({metric}) is not a fraction after normalisation")
    return round(value, 10)  # drops the float noise of /100 (82.3 / 100 = 0.8230000000000001), keeps every digit


def _task(published: str) -> str:
    """Our task name for the source's task column; raises ValueError when no rule applies."""
    if published in TASKS:
        return TASKS[published]
    if published.startswith("BIG-bench ") and published[len("BIG-bench "):] in BIGBENCH:
        return "bigbench_" + published[len("BIG-bench "):]
    if published.startswith("gauntlet:") and published[len("gauntlet:"):] in GAUNTLET:
        return published
    raise ValueError(f"unknown task {published!r}")


def _shots(raw: str, metric: str) -> str:
    """The shot count as text; empty only for gauntlet composites (mixed shots)."""
    if raw == "" and metric == "composite":
        return ""
    if not raw.isdigit():
        raise ValueError(f"num_fewshot {raw!r} is not a whole number (empty only for gauntlet composites)")
    return str(int(raw))


def normalize_row(row: dict[str, str]) -> dict[str, str]:
    """One source row -> one normalised row (see the module docstring)."""
    published = re.sub(r"\s*\[[^\]]*\]$", "", row["model"].strip())
    if published not in MODELS:
        raise ValueError(f"unknown model {row['model']!r}")
    slug, display = MODELS[published]
    task = _task(row["task"])
    metric, aggregate, harness, note = _metric_rule(task, row["metric"], row["source"], published)
    return {
        "model": slug, "display_name": display, "task": task, "metric": metric, "aggregate": aggregate,
        "num_fewshot": _shots(row["num_fewshot"].strip(), metric), "value": repr(_value(row["value"], row["metric"])),
        "harness": harness, "note": note,
        "reported_as": f"{row['model']}; {row['metric']}; {row['value']}", "source": row["source"],
    }


def normalize(source: Path, output: Path) -> int:
    """Write the normalised rows of `source` to `output`; the number of rows."""
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
