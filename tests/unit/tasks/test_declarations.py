"""What a task declares about its numbers (metrics, headline, baseline, category) and the errors for bad ones."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from evalharness.errors import ConfigError
from evalharness.tasks import TaskRegistry, parse_task_spec

BASE = {
    "name": "t", "output_type": "multiple_choice", "dataset": {"format": "icl_multiple_choice", "path": "x.jsonl"},
    "prompt": {"context": "{{ doc.query }}", "choices": "doc.choices", "gold": "doc.gold"},
}


def spec(**fields):
    return parse_task_spec({**BASE, **fields}, "tasks/t.yaml")


def error(**fields) -> str:
    with pytest.raises(ConfigError) as exc:
        spec(**fields)
    return str(exc.value)


def test_metric_declarations_with_registry_defaults():
    s = spec(metrics=["acc", {"name": "acc_token", "harnesses": ["llm-foundry"], "higher_is_better": True}],
             headline="acc_token", baseline=0.25, category="world_knowledge")
    assert s.metric_names == ("acc", "acc_token") and s.headline_metric == "acc_token"
    assert s.metric("acc").harnesses == ("evalharness",) and s.metric("acc").aggregation == "mean"
    assert s.metric("acc_token").harnesses == ("llm-foundry",)
    d = s.declarations()
    assert (d["baseline"], d["category"], d["subset_average"]) == (0.25, "world_knowledge", None)
    assert d["metrics"]["acc_token"] == {"aggregation": "mean", "higher_is_better": True, "harnesses": ["llm-foundry"]}


def test_a_spec_in_the_older_format_keeps_loading():
    s = spec(metrics=["acc", "acc_norm"], group_by_subset=True, headline="macro")  # headline was the subset average
    assert (s.headline_metric, s.subset_average, s.baseline, s.category) == ("acc", "macro", None, None)
    assert spec(metrics=["acc"]).subset_average == "micro"


@pytest.mark.parametrize("fields, expected", [
    ({"metrics": ["acc", "accuracy"]}, "field 'metrics[1]': unknown metric 'accuracy'"),
    ({"metrics": [{"name": "acc", "aggregation": "median"}]}, "field 'metrics[0].aggregation': unknown aggregation 'median'"),
    ({"metrics": [{"name": "acc", "weight": 2}]}, "field 'metrics[0]': unknown key(s) ['weight']"),
    ({"metrics": ["acc", "acc"]}, "metric 'acc' is listed twice"),
    ({"metrics": [{"name": "acc", "higher_is_better": "yes"}]}, "'metrics[0].higher_is_better': must be true or false"),
    ({"metrics": ["acc"], "headline": "acc_norm"}, "field 'headline': 'acc_norm' is not one of the task's metrics"),
    ({"metrics": ["acc"], "baseline": "half"}, "field 'baseline': must be a number"),
    ({"metrics": ["acc"], "subset_average": "median"}, "field 'subset_average': must be 'micro' or 'macro'"),
    ({"metrics": ["acc"], "generation": {"stop": ["\n"]}}, "only generation tasks take decoding settings"),
    ({"metrics": []}, "field 'metrics': must be a non-empty list"),
])
def test_bad_declarations_name_the_file_and_field(fields, expected):
    msg = error(**fields)
    assert msg.startswith("tasks/t.yaml: ") and expected in msg


def test_pass_at_k_needs_enough_samples_and_a_program():
    gen = {**BASE, "output_type": "generation", "prompt": {"context": "{{ doc.prompt }}", "target": "x"}}
    with pytest.raises(ConfigError, match="pass@5 needs at least 5 samples"):
        parse_task_spec({**gen, "metrics": ["pass@5"], "generation": {"num_samples": 2}}, "g.yaml")
    ok = parse_task_spec({**gen, "metrics": ["pass@1"]}, "g.yaml")
    assert ok.generation.program == "humaneval"  # the default builder for code metrics
    with pytest.raises(ConfigError, match="unknown program builder 'rust'"):
        parse_task_spec({**gen, "metrics": ["pass@1"], "generation": {"program": "rust"}}, "g.yaml")


def test_every_shipped_task_declares_what_reports_need():
    for s in TaskRegistry().specs.values():
        assert s.headline_metric in s.metric_names and s.category and s.baseline is not None, s.name
        assert s.origin == "shipped"


def test_an_unknown_metric_in_a_file_names_that_file(tmp_path: Path):
    (tmp_path / "mine.yaml").write_text(textwrap.dedent("""\
        name: mine
        output_type: language_modeling
        dataset: {format: icl_language_modeling, path: x.jsonl}
        prompt: {context: "{{ doc.context }}", target: "{{ doc.continuation }}"}
        metrics: [acc, bleu]
        """), encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        TaskRegistry(include_paths=[tmp_path])
    assert str(exc.value).startswith(f"{tmp_path / 'mine.yaml'}: field 'metrics[1]': unknown metric 'bleu'")
