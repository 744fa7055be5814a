"""The gauntlet composite: hand-computed toy composites, absent benchmarks, the published composites recomputed
from the published per-benchmark scores, and the project's definitions checked against LLM Foundry's files."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest
import yaml

from evalharness.composite import (
    CompositeDefinition,
    Declaration,
    compute,
    declarations_for,
    parse_composites,
    run_composite,
    shipped_composites,
    shipped_task_declarations,
)
from evalharness.errors import ConfigError
from support.paths import REPO, SHARED

TOY_DECL = {"a": Declaration("x", 0.25), "b": Declaration("x", 0.0), "c": Declaration("y", 0.5)}


def toy(missing: str = "drop_category") -> CompositeDefinition:
    return CompositeDefinition("toy", "Toy", {"a": 0, "b": 3, "c": 0}, ("x", "y"), {"avg": ("x", "y")}, missing)


def test_two_categories_by_hand():
    # a: (0.625 - 0.25) / 0.75 = 0.5; b: 0.3 (baseline 0); x = (0.5 + 0.3) / 2 = 0.4
    # c: (0.8 - 0.5) / 0.5 = 0.6 = y; avg = (0.4 + 0.6) / 2 = 0.5
    out = compute(toy(), {"a": 0.625, "b": 0.3, "c": 0.8}, TOY_DECL, shots={"a": 0, "b": 3, "c": 0})
    assert out.benchmarks["a"].rescaled == pytest.approx(0.5, abs=1e-12)
    assert out.benchmarks["b"].rescaled == pytest.approx(0.3, abs=1e-12)
    assert out.categories["x"].value == pytest.approx(0.4, abs=1e-12)
    assert out.categories["y"].value == pytest.approx(0.6, abs=1e-12)
    assert out.averages == {"avg": pytest.approx(0.5, abs=1e-12)}
    assert out.complete and out.absent == {}
    record = out.to_dict()
    assert record["categories"]["x"] == {"value": pytest.approx(0.4), "present_mean": pytest.approx(0.4),
                                         "benchmarks": ["a", "b"], "absent": []}
    assert record["averages"]["avg"]["categories_used"] == ["x", "y"]


def test_below_chance_is_negative():
    # (0.125 - 0.25) / 0.75 = -1/6
    out = compute(toy(), {"a": 0.125, "b": 0.0, "c": 0.5}, TOY_DECL)
    assert out.benchmarks["a"].rescaled == pytest.approx(-1 / 6, abs=1e-12)
    assert out.categories["x"].value == pytest.approx(-1 / 12, abs=1e-12)
    assert out.categories["y"].value == 0.0


def test_absent_benchmark_drops_its_category_as_llm_foundry_does():
    out = compute(toy(), {"a": 0.625, "c": 0.8}, TOY_DECL)
    assert out.absent == {"b": "no result"}
    assert out.categories["x"].value is None  # left out ...
    assert out.categories["x"].present_mean == pytest.approx(0.5, abs=1e-12)  # ... though 'a' is known
    assert out.categories["x"].absent == ("b",)
    assert out.averages["avg"] == pytest.approx(0.6, abs=1e-12)  # over y alone
    assert out.to_dict()["averages"]["avg"]["categories_used"] == ["y"]


def test_absent_benchmark_skipped_under_the_june_2023_rule():
    out = compute(toy("skip_benchmark"), {"a": 0.625, "c": 0.8}, TOY_DECL)
    assert out.categories["x"].value == pytest.approx(0.5, abs=1e-12)  # the mean of 'a' alone
    assert out.averages["avg"] == pytest.approx(0.55, abs=1e-12)
    # a whole category absent: LLM Foundry's June 2023 callback divided by zero; here it is left out
    out = compute(toy("skip_benchmark"), {"c": 0.8}, TOY_DECL)
    assert out.categories["x"].value is None and out.averages["avg"] == pytest.approx(0.6, abs=1e-12)


def test_a_score_at_other_shots_is_absent():
    out = compute(toy(), {"a": 0.625, "b": 0.3, "c": 0.8}, TOY_DECL, shots={"a": 0, "b": 0, "c": 0})
    assert out.absent == {"b": "ran at 0 shots; the composite needs 3"}
    assert out.categories["x"].value is None


def test_nothing_present_gives_none_not_zero():
    out = compute(toy(), {}, TOY_DECL)
    assert out.averages == {"avg": None}
    assert set(out.absent) == {"a", "b", "c"}


def test_undeclared_benchmark_or_foreign_category_is_an_error():
    with pytest.raises(ConfigError, match="'b' has no declared category"):
        compute(toy(), {"a": 0.5}, {"a": TOY_DECL["a"], "c": TOY_DECL["c"]})
    with pytest.raises(ConfigError, match="category 'z'"):
        compute(toy(), {"a": 0.5}, {**TOY_DECL, "b": Declaration("z", 0.0)})


def test_bad_definitions_name_the_field():
    good = {"categories": ["x"], "benchmarks": {"a": 0}}
    parse_composites({"composites": {"t": good}, "default": "t", "published": "t"}, "f.yaml")
    for bad, message in [({**good, "weighting": "SAMPLE_SZ"}, "only equal weighting"),
                         ({**good, "missing": "ignore"}, "missing 'ignore'"),
                         ({**good, "averages": {"x": ["x"]}}, "has a category's name"),
                         ({**good, "averages": {"m": ["q"]}}, "average 'm'"),
                         ({**good, "benchmarks": {"a": -1}}, "shots must be a whole number")]:
        with pytest.raises(ConfigError, match=message):
            parse_composites({"composites": {"t": bad}, "default": "t", "published": "t"}, "f.yaml")


# ---- the published composites --------------------------------------------------------------------------

def _published_rows() -> list[dict[str, str]]:
    with (REPO / "reports" / "published_scores.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_every_published_gauntlet_row_is_recomputed_within_1e_6():
    """Each model's gauntlet:* rows from the same file's per-benchmark LLM Foundry rows, with the project's
    definition of the published composite (tasks/composites.yaml `published`) and its declarations."""
    composites = shipped_composites()
    definition = composites.get(composites.published)
    decls = declarations_for(definition, shipped_task_declarations(), composites)
    rows = _published_rows()
    scores: dict[str, dict[tuple[str, int], float]] = defaultdict(dict)
    published: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["harness"] != "llm-foundry":
            continue
        if r["task"].startswith("gauntlet:"):
            published[r["model"]][r["task"].removeprefix("gauntlet:")] = float(r["value"])
        else:
            scores[r["model"]][(r["task"], int(r["num_fewshot"]))] = float(r["value"])
    assert sum(len(v) for v in published.values()) == 96  # 16 models x (5 categories + average)
    recomputed, deviations, no_benchmarks = 0, [], []
    for model, composite in published.items():
        have = {name: scores[model][(name, shots)] for name, shots in definition.benchmarks.items()
                if (name, shots) in scores[model]}
        if not scores[model]:
            no_benchmarks.append(model)  # the source prints only this model's composites
            assert compute(definition, have, decls).averages == {"average": None}
            continue
        out = compute(definition, have, decls, shots={n: definition.benchmarks[n] for n in have})
        assert out.complete, (model, out.absent)
        ours = {**{c: s.value for c, s in out.categories.items()}, **out.averages}
        assert set(ours) == set(composite)
        for name, value in composite.items():
            deviations.append(abs(ours[name] - value))
            assert ours[name] == pytest.approx(value, abs=1e-6), (model, name)
            recomputed += 1
    assert recomputed == 72 and max(deviations) < 1e-6
    # the four models of LLM Foundry's gauntlet table that its per-benchmark table leaves out
    assert sorted(no_benchmarks) == ["gpt-j-6b", "mpt-7b-chat", "opt-6.7b", "stablelm-tuned-alpha-7b"]


def test_the_published_v0_definition_is_needed_not_v0_3():
    """The published composites do not follow v0.3 (other benchmarks and shots): a check that the test above
    proves something about the definition, not just about averaging."""
    composites = shipped_composites()
    v03 = composites.get(composites.default)
    v0 = composites.get(composites.published)
    assert set(v0.benchmarks) != set(v03.benchmarks)
    assert {n for n in v0.benchmarks if n in v03.benchmarks and v0.benchmarks[n] != v03.benchmarks[n]}


# ---- the project's definitions against LLM Foundry's files --------------------------------------------

def test_v0_3_definition_matches_llm_foundry_eval_gauntlet_v0_3():
    shared = yaml.safe_load((SHARED / "reference" / "llm-foundry" / "eval_gauntlet_v0.3.yaml").read_text())
    theirs = shared["eval_gauntlet"]
    composites = shipped_composites()
    ours = composites.get("gauntlet-v0.3")
    decls = declarations_for(ours, shipped_task_declarations(), composites)
    assert theirs["weighting"] == "EQUAL"
    assert (ours.subtract_random_baseline, ours.rescale_accuracy) == (theirs["subtract_random_baseline"],
                                                                      theirs["rescale_accuracy"])
    assert ours.averages == {k: tuple(v) for k, v in theirs["averages"].items()}
    assert list(ours.categories) == [c["name"] for c in theirs["categories"]]
    expected = {b["name"]: (c["name"], b["num_fewshot"], float(b["random_baseline"]))
                for c in theirs["categories"] for b in c["benchmarks"]}
    assert {n: (decls[n].category, shots, decls[n].baseline) for n, shots in ours.benchmarks.items()} == expected


def test_v0_3_benchmarks_are_llm_foundry_task_labels():
    shared = yaml.safe_load((SHARED / "reference" / "llm-foundry" / "tasks_v0.3.yaml").read_text())
    shots = {t["label"]: t["num_fewshot"] for t in shared["icl_tasks"]}
    for name, n in shipped_composites().get("gauntlet-v0.3").benchmarks.items():
        assert n in shots[name], name


def test_each_benchmark_declared_once():
    """A benchmark with a task YAML takes its category and baseline from it; composites.yaml declares only the
    others. After adding a task YAML for one of them, delete its line under `benchmarks:` in composites.yaml."""
    composites = shipped_composites()
    tasks = shipped_task_declarations()
    assert set(composites.declarations) & set(tasks) == set()
    needed = {n for d in composites.definitions.values() for n in d.benchmarks}
    assert set(composites.declarations) <= needed  # nothing declared that no composite uses
    for d in composites.definitions.values():
        declarations_for(d, tasks, composites)  # every benchmark has exactly one source


# ---- a run's composite ------------------------------------------------------------------------------------

def _task(shots: int, category: str, baseline: float, headline: str = "acc", subset_average: str | None = None):
    return {"headline_metric": headline, "subset_average": subset_average, "category": category,
            "baseline": baseline, "fewshot": {"num_fewshot": shots}}


def test_a_runs_composite_uses_headlines_declarations_and_shots():
    tasks = {"jeopardy": _task(3, "world_knowledge", 0.0, "acc", "macro"),
             "mmlu": {**_task(5, "world_knowledge", 0.25, "acc", "micro"),
                      "metrics": {"acc": {"harnesses": ["lm-eval"]}}},
             "piqa": _task(3, "commonsense_reasoning", 0.5, "acc_token"),  # v0.3 needs 0 shots
             "hellaswag": _task(0, "language_understanding", 0.25, "acc_token"),
             "lambada_openai": _task(0, "language_understanding", 0.0),
             "humaneval": _task(0, "programming", 0.0, "pass@1")}
    results = {"jeopardy": {"acc": 0.2}, "mmlu": {"acc": 0.4, "acc_macro": 0.43},
               "piqa": {"acc_token": 0.7}, "hellaswag": {"acc_token": 0.55, "acc": 0.5},
               "lambada_openai": {"acc": 0.6}, "humaneval": {"pass@1": 0.1}}
    out = run_composite(tasks, results)
    assert out is not None and out.definition.name == "gauntlet-v0.3"
    assert out.benchmarks["mmlu"].score == 0.43 and out.benchmarks["mmlu"].metric == "acc_macro"
    assert out.benchmarks["mmlu"].rescaled == pytest.approx((0.43 - 0.25) / 0.75, abs=1e-12)
    assert out.notes == ("mmlu: acc_macro (the mean over subsets, as LLM Foundry averages subcategories)",
                         "mmlu: acc reproduces lm-eval, not LLM Foundry's protocol for this benchmark")
    assert out.absent["piqa"] == "ran at 3 shots; the composite needs 0"
    assert "humaneval" not in out.benchmarks and "humaneval" not in out.absent
    # no category is complete (winograd, winogrande absent from language_understanding) ...
    assert all(c.value is None for c in out.categories.values()) and out.averages["core_average"] is None
    # ... but what is known is recorded: (0.55 - 0.25) / 0.75 = 0.4 and 0.6 -> 0.5
    assert out.categories["language_understanding"].present_mean == pytest.approx(0.5, abs=1e-12)
    assert out.categories["language_understanding"].absent == ("winograd", "winogrande")


def test_no_composite_for_a_run_without_gauntlet_benchmarks():
    assert run_composite({"humaneval": _task(0, "programming", 0.0, "pass@1")}, {"humaneval": {"pass@1": 0.1}}) is None
