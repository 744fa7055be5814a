"""Typed results: results.json's shape and the printed table (each distinct number once)."""

from __future__ import annotations

import json

import pytest

from evalharness.results import SCHEMA_VERSION, EvalResults, TaskResult, format_table


def _results() -> EvalResults:
    mmlu = {"acc": 0.25, "acc_stderr": 0.01, "acc_norm": 0.25, "acc_norm_stderr": 0.01, "acc_macro": 0.26,
            "acc_macro_stderr": 0.02, "n": 100, "num_subsets": 2}
    piqa = {"acc": 0.5, "acc_stderr": 0.05, "acc_token": 0.75, "acc_token_stderr": 0.04, "n": 10}
    return EvalResults(
        tasks={"mmlu": TaskResult("mmlu", mmlu, {"a": {"acc": 0.2, "n": 50}}, {"headline_metric": "acc"}, {"f": "h"}),
               "piqa": TaskResult("piqa", piqa, {}, {"headline_metric": "acc_token"}, {"p": "h"})},
        config={"model": "m"}, backend={"name": "hf"}, created="2026-12-05T00:00:00+00:00", eval_seconds=1.0)


def test_the_printed_table_shows_each_distinct_number_once():
    lines = format_table(_results()).splitlines()
    assert lines[2:] == [
        "| mmlu | acc = acc_norm | 0.2500 | 0.0100 | 100 |",
        "| mmlu | acc_macro | 0.2600 | 0.0200 | 100 |",
        "| piqa | acc | 0.5000 | 0.0500 | 10 |",
        "| piqa | acc_token | 0.7500 | 0.0400 | 10 |",
        "",
        # neither ran at the gauntlet's shots as recorded: a single line says so
        "LLM Foundry Eval Gauntlet v0.3: 0 of 31 benchmarks; no category complete, so no composite "
        "(results.json 'composites' lists what is absent)",
    ]


def _lu_task(name: str, value: float, shots: int, baseline: float) -> TaskResult:
    info = {"headline_metric": "acc", "subset_average": None, "category": "language_understanding",
            "baseline": baseline, "fewshot": {"num_fewshot": shots}}
    return TaskResult(name, {"acc": value, "acc_stderr": 0.01, "n": 10}, {}, info)


def test_results_json_and_the_table_carry_the_gauntlet_composite():
    # language_understanding complete at v0.3's shots: lambada 0.6 -> 0.6, hellaswag (0.55 - 0.25) / 0.75 = 0.4,
    # winograd (0.8 - 0.5) / 0.5 = 0.6, winogrande (0.6 - 0.5) / 0.5 = 0.2; mean 0.45 = core_average (alone)
    tasks = [_lu_task("lambada_openai", 0.6, 0, 0.0), _lu_task("hellaswag", 0.55, 0, 0.25),
             _lu_task("winograd", 0.8, 3, 0.5), _lu_task("winogrande", 0.6, 5, 0.5)]
    out = EvalResults(tasks={t.name: t for t in tasks}, config={"model": "m"})
    record = out.to_dict()["composites"]["gauntlet-v0.3"]
    lu = record["categories"]["language_understanding"]
    assert lu["value"] == pytest.approx(0.45, abs=1e-12) and lu["absent"] == []
    assert record["categories"]["world_knowledge"]["value"] is None
    assert record["averages"]["core_average"] == {"value": pytest.approx(0.45, abs=1e-12),
                                                  "categories": list(record["categories"]),
                                                  "categories_used": ["language_understanding"]}
    assert len(record["absent"]) == 27 and record["rule"]["missing"] == "drop_category"
    table = format_table(out)
    assert "| language_understanding | 0.4500 | lambada_openai, hellaswag, winograd, winogrande | - |" in table
    assert "| core_average | 0.4500 | 1 of 5 categories |" in table
    assert "Absent benchmarks: a category with an absent benchmark is left out (LLM Foundry's rule)" in table


def test_results_json_shape_and_headline(tmp_path):
    res = _results()
    assert res.tasks["piqa"].headline == ("acc_token", 0.75)
    path = res.write(tmp_path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["results"]["piqa"]["acc_token"] == 0.75 and data["groups"] == {"mmlu": {"a": {"acc": 0.2, "n": 50}}}
    assert data["tasks"]["mmlu"] == {"headline_metric": "acc"} and data["data"]["piqa"] == {"p": "h"}
    assert "distributed" not in data and "cache" not in data
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # written atomically: no temporary file left
