"""Typed results: results.json's shape and the printed table (each distinct number once)."""

from __future__ import annotations

import json

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
    ]


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
