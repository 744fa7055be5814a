"""The shipped gauntlet and MPT-table tasks against LLM Foundry's own configuration (tasks_v0.3.yaml and
eval_gauntlet_v0.3.yaml in the shared reference folder) and the published scores' task names."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from evalharness.requests import GenerateRequest
from evalharness.tasks import TaskRegistry
from evalharness.tasks.task import Task
from support.paths import REPO, SHARED

REFERENCE = SHARED / "reference" / "llm-foundry"
ABSENT = {"squad", "coqa", "bigbench_elementary_math_qa"}
MPT_TABLE = ["lambada_openai", "piqa", "copa", "boolq", "arc_challenge", "arc_easy", "hellaswag", "jeopardy", "mmlu",
             "triviaqa_sm_sub", "winograd", "winogrande"]
# shipped before the gauntlet, in evalharness's own prompt format (lm-eval's for mmlu and hellaswag); their
# default shots stay as they were
EARLIER = {"lambada_openai", "piqa", "hellaswag", "mmlu", "jeopardy"}


def read_jsonl(path) -> list[dict]:
    # split on "\n" only: some strings hold U+2028, which str.splitlines() would split on
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


@pytest.fixture(scope="module")
def registry() -> TaskRegistry:
    return TaskRegistry()


@pytest.fixture(scope="module")
def gauntlet() -> dict[str, dict]:
    raw = yaml.safe_load((REFERENCE / "eval_gauntlet_v0.3.yaml").read_text())["eval_gauntlet"]
    return {b["name"]: {**b, "category": c["name"]} for c in raw["categories"] for b in c["benchmarks"]}


@pytest.fixture(scope="module")
def icl_tasks() -> dict[str, dict]:
    return {t["label"]: t for t in yaml.safe_load((REFERENCE / "tasks_v0.3.yaml").read_text())["icl_tasks"]}


def test_gauntlet_suite_is_v03_minus_the_absent_files(registry, gauntlet):
    suite = registry.suite_spec("gauntlet")
    assert set(suite.tasks) == set(gauntlet) - ABSENT and len(suite.tasks) == 28
    assert set(suite.absent) == ABSENT
    # each task at its own shots, except the two earlier tasks whose own default is zero-shot
    assert suite.num_fewshot == {"jeopardy": 3, "mmlu": 5}


def test_every_gauntlet_task_has_the_gauntlets_settings(registry, gauntlet, icl_tasks):
    suite_shots = registry.suite_spec("gauntlet").num_fewshot
    for name in registry.suite("gauntlet"):
        spec, ref, icl = registry.get(name), gauntlet[name], icl_tasks[name]
        assert suite_shots.get(name, spec.num_fewshot) == ref["num_fewshot"], name  # the shots the suite runs
        assert spec.category == ref["category"], name
        assert spec.baseline == pytest.approx(ref["random_baseline"]), name
        assert spec.output_type == icl["icl_task_type"], name
        if name in EARLIER:
            continue
        assert spec.num_fewshot == ref["num_fewshot"] == icl["num_fewshot"][0], name
        f = spec.llm_foundry
        assert f is not None, name
        assert f.continuation_delimiter == icl.get("continuation_delimiter", " "), name
        assert f.example_delimiter == icl.get("example_delimiter", "\n"), name
        assert f.prompt_string == icl.get("prompt_string", ""), name
        assert f.question_prelimiter == icl.get("question_prelimiter", ""), name
        assert f.fewshot_random_seed == icl.get("fewshot_random_seed", 1234), name
        assert f.cot_delimiter == icl.get("cot_delimiter", ""), name
        assert f.do_normalization == icl.get("do_normalization", True), name
        assert f.has_categories == icl.get("has_categories", False), name
        assert list(f.early_stopping_criteria) == icl.get("early_stopping_criteria", []), name
        headline = spec.metric(spec.headline_metric)
        assert "llm-foundry" in headline.harnesses, name
        expected = {"multiple_choice": "acc_token", "schema": "acc_token", "language_modeling": "acc",
                    "generation_task_with_answers": "exact_match"}[spec.output_type]
        assert spec.headline_metric == expected, name


def test_mpt_table_suite_is_the_twelve_tasks_zero_shot(registry):
    suite = registry.suite_spec("mpt-table")
    assert list(suite.tasks) == MPT_TABLE and suite.num_fewshot == 0
    # the MPT-7B rows of the published scores are zero-shot, under these task names (TriviaQA's row is on
    # LLM Foundry's triviaqa_sm.jsonl, named triviaqa; here it is the gauntlet's subset triviaqa_sm_sub)
    with (REPO / "reports" / "published_scores.csv").open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == "mpt-7b" and r["harness"] == "llm-foundry"]
    zero_shot = {r["task"] for r in rows if r["num_fewshot"] == "0"}
    assert set(MPT_TABLE) - zero_shot == {"triviaqa_sm_sub"} and "triviaqa" in zero_shot
    for r in rows:
        if r["task"] in MPT_TABLE and r["num_fewshot"] == "0":
            assert r["metric"] == registry.get(r["task"]).headline_metric or r["task"] == "mmlu", r


def test_new_tasks_build_from_the_real_files(registry, data_dir):
    seen = set()
    for name in registry.suite("gauntlet"):
        spec = registry.get(name)
        if name in EARLIER:
            continue
        rows = read_jsonl(data_dir / spec.dataset.path)
        task = Task(spec, data_dir)
        items = task.build_items(limit=3)
        assert len(items) == 3 and len(task.documents.docs) == len(rows), name
        for item, row in zip(items, rows):
            if spec.output_type == "generation_task_with_answers":
                (req,) = item.requests
                assert isinstance(req, GenerateRequest) and req.stop == tuple(spec.llm_foundry.early_stopping_criteria)
                assert item.gold[0] == row["answer"].strip() and set(row.get("aliases", [])) <= set(item.gold)
            elif spec.output_type == "schema":
                assert len(item.requests) == len(row["context_options"]) and item.gold == row["gold"]
                assert {r.continuation for r in item.requests} == {" " + row["continuation"].strip()}
            elif spec.output_type == "multiple_choice":
                assert [r.continuation for r in item.requests] == [" " + c for c in row["choices"]]
                assert item.gold == row["gold"]
            else:
                assert item.requests[0].continuation == " " + row["continuation"].strip()
        seen.add(spec.output_type)
    assert seen == {"multiple_choice", "schema", "language_modeling", "generation_task_with_answers"}


def test_svamp_shot_layout(registry, data_dir):
    """A svamp item as LLM Foundry writes it: 'Question: ' before each problem, '\\n\\nA:' then the equation, the
    cot delimiter and the answer with no space between (the delimiter is not right-stripped inside shots)."""
    rows = read_jsonl(data_dir / "llm-foundry" / "svamp.jsonl")
    (item,) = Task(registry.get("svamp"), data_dir).build_items(limit=1)
    prompt = item.requests[0].prompt
    shots = prompt.split("\nQuestion: ")
    assert len(shots) == 6 and shots[0].startswith("Question: ")
    assert shots[-1] == rows[0]["context"] + "\n\nA:"
    by_context = {r["context"]: r for r in rows}
    for shot in [shots[0][len("Question: "):]] + shots[1:-1]:
        context, answer = shot.split("\n\nA:")
        r = by_context[context]
        assert answer == f"{r['chain_of_thought']}The answer is {r['answer']}"
    assert item.gold == (rows[0]["answer"],)


def test_docs_tasks_table_lists_every_task(registry):
    """docs/tasks.md has one row per shipped task with the task file's shots, headline, category and baseline."""
    rows = {}
    for line in (REPO / "docs" / "tasks.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 9 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells
    assert set(rows) == set(registry.specs)
    for name, spec in registry.specs.items():
        _, _, _, fmt, shots, headline, category, baseline, _ = rows[name]
        assert int(shots) == spec.num_fewshot and headline == f"`{spec.headline_metric}`", name
        assert category == spec.category.replace("_", " ") and float(baseline) == spec.baseline, name
        assert fmt == ("LLM Foundry" if spec.llm_foundry else "evalharness"), name
