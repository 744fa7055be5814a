"""Task specs as pure data: a new task from a YAML file + a Jinja template, and validation messages."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from evalharness.errors import ConfigError
from evalharness.tasks import TaskRegistry
from evalharness.tasks.task import Task

ROWS = [
    {"query": "Q: 2+2?\n", "choices": ["4", "5", "22"], "gold": 0, "category": "math"},
    {"query": "Q: capital of France?\n", "choices": ["Rome", "Paris"], "gold": 1, "category": "geo"},
    {"query": "Q: 3*3?\n", "choices": ["6", "9"], "gold": 1, "category": "math"},
    {"query": "Q: largest ocean?\n", "choices": ["Pacific", "Atlantic"], "gold": 0, "category": "geo"},
]

GOOD_SPEC = """\
name: tiny_qa
description: A made-up task defined only by data files.
output_type: multiple_choice
dataset:
  format: icl_multiple_choice
  path: tiny/qa.jsonl
prompt:
  description: "Answer the questions.\\n\\n"
  context: tiny_qa.jinja
  choices: doc.choices
  gold: doc.gold
target_delimiter: " "
fewshot_delimiter: "\\n###\\n"
fewshot_seed: 7
metrics: [acc, acc_norm]
"""

TEMPLATE = "{{ doc.query | trim }} [{{ subset }}]\nA:\n"  # the file's one trailing newline is dropped


@pytest.fixture()
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    tasks, data = tmp_path / "tasks", tmp_path / "data"
    prompts = tasks / "prompts"  # a task folder's templates: beside its YAMLs or in its prompts/ subfolder
    for d in (tasks, prompts, data / "tiny"):
        d.mkdir(parents=True)
    (prompts / "tiny_qa.jinja").write_text(TEMPLATE, encoding="utf-8")
    (data / "tiny" / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return tasks, prompts, data


def write_spec(tasks: Path, text: str, name: str = "tiny_qa.yaml") -> Path:
    path = tasks / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def spec_error(tasks: Path, text: str) -> tuple[str, Path]:
    path = write_spec(tasks, text)
    with pytest.raises(ConfigError) as exc:
        TaskRegistry(tasks_dir=tasks)
    return str(exc.value), path


# ---- a task added purely as data -------------------------------------------------------------

def test_new_task_from_yaml_and_template(dirs):
    tasks, prompts, data = dirs
    path = write_spec(tasks, GOOD_SPEC)
    registry = TaskRegistry(tasks_dir=tasks)
    assert list(registry.specs) == ["tiny_qa"]
    spec = registry.get("tiny_qa")
    assert spec.source_file == str(path)
    assert spec.metric_names == ("acc", "acc_norm")
    t = Task(spec, data)
    items = t.build_items()
    assert len(items) == 4
    for i, (row, item) in enumerate(zip(ROWS, items)):
        ctx = "Answer the questions.\n\n" + row["query"].strip() + f" [{row['category']}]\nA:"
        assert item.doc_id == i
        assert item.subset == row["category"]
        assert [(r.context, r.continuation) for r in item.requests] == [(ctx, " " + c) for c in row["choices"]]
        assert item.gold == row["gold"]
        assert item.choice_lengths == tuple(len(c) for c in row["choices"])
    assert t.documents.files.keys() == {"tiny/qa.jsonl"}
    assert [it.doc_id for it in t.build_items(limit=2)] == [0, 1]


def test_new_task_few_shot_uses_its_delimiters(dirs):
    tasks, prompts, data = dirs
    write_spec(tasks, GOOD_SPEC)
    t = Task(TaskRegistry(tasks_dir=tasks).get("tiny_qa"), data)
    item = t.build_items(limit=1, num_fewshot=2)[0]
    ctx = item.requests[0].context
    assert ctx.startswith("Answer the questions.\n\n")
    parts = ctx[len("Answer the questions.\n\n"):].split("\n###\n")
    assert len(parts) == 3
    assert parts[-1] == "Q: 2+2? [math]\nA:"
    rendered = {f"{r['query'].strip()} [{r['category']}]\nA: {r['choices'][r['gold']]}" for r in ROWS[1:]}
    assert set(parts[:2]) <= rendered and len(set(parts[:2])) == 2
    info = t.fewshot_info(2)
    assert info["seed"] == 7 and info["delimiter"] == "\n###\n"
    assert t.build_items(limit=1, num_fewshot=2)[0] == item


def test_new_language_modeling_task_with_inline_templates(dirs):
    tasks, prompts, data = dirs
    (data / "tiny" / "lm.jsonl").write_text(
        json.dumps({"context": "The sky is", "continuation": "blue"}) + "\n"
        + json.dumps({"context": "Grass is", "continuation": "green"}) + "\n", encoding="utf-8")
    write_spec(tasks, """\
        name: tiny_lm
        output_type: language_modeling
        dataset: {format: icl_language_modeling, path: tiny/lm.jsonl}
        prompt:
          context: "Complete: {{ doc.context }}"
          target: "{{ doc.continuation | upper }}"
        metrics: [acc, perplexity]
        """, "tiny_lm.yaml")
    t = Task(TaskRegistry(tasks_dir=tasks).get("tiny_lm"), data)
    items = t.build_items()
    assert [(r.context, r.continuation) for it in items for r in it.requests] == [
        ("Complete: The sky is", " BLUE"), ("Complete: Grass is", " GREEN")]
    assert [it.gold for it in items] == ["BLUE", "GREEN"]


def test_suites_file_of_a_custom_tasks_dir(dirs):
    tasks, _, _ = dirs
    write_spec(tasks, GOOD_SPEC)
    (tasks / "suites.yaml").write_text("mine: [tiny_qa]\n", encoding="utf-8")
    registry = TaskRegistry(tasks_dir=tasks)
    assert registry.suite("mine") == ("tiny_qa",)
    assert registry.resolve("mine", None) == ("tiny_qa",)
    assert registry.resolve(None, "mine") == ("tiny_qa",)


# ---- validation: errors name the file and the field ------------------------------------------

def test_missing_output_type(dirs):
    msg, path = spec_error(dirs[0], GOOD_SPEC.replace("output_type: multiple_choice\n", ""))
    assert str(path) in msg and "output_type" in msg and "missing" in msg


def test_bad_output_type(dirs):
    msg, path = spec_error(dirs[0], GOOD_SPEC.replace("output_type: multiple_choice", "output_type: generation"))
    assert str(path) in msg and "output_type" in msg and "generation" in msg


def test_metric_not_valid_for_type(dirs):
    msg, path = spec_error(dirs[0], GOOD_SPEC.replace("metrics: [acc, acc_norm]", "metrics: [acc, perplexity]"))
    assert str(path) in msg and "'metrics[1]'" in msg and "perplexity" in msg and "multiple_choice" in msg


def test_unknown_field(dirs):
    msg, path = spec_error(dirs[0], GOOD_SPEC + "num_shots: 5\n")
    assert str(path) in msg and "num_shots" in msg and "unknown field" in msg


def test_unknown_prompt_field(dirs):
    msg, path = spec_error(dirs[0], GOOD_SPEC.replace("  gold: doc.gold", "  gold: doc.gold\n  answer: doc.gold"))
    assert str(path) in msg and "prompt" in msg and "answer" in msg


def test_missing_prompt_choices(dirs):
    msg, path = spec_error(dirs[0], GOOD_SPEC.replace("  choices: doc.choices\n", ""))
    assert str(path) in msg and "prompt.choices" in msg


def test_missing_prompt_target_for_language_modeling(dirs):
    msg, path = spec_error(dirs[0], """\
        name: x
        output_type: language_modeling
        dataset: {format: icl_language_modeling, path: x.jsonl}
        prompt: {context: "{{ doc.context }}"}
        metrics: [acc]
        """)
    assert str(path) in msg and "prompt.target" in msg


def test_missing_dataset_path(dirs):
    msg, path = spec_error(dirs[0], GOOD_SPEC.replace("  path: tiny/qa.jsonl\n", ""))
    assert str(path) in msg and "dataset" in msg and "'path'" in msg


def test_unknown_dataset_format(dirs):
    tasks, prompts, data = dirs
    path = write_spec(tasks, GOOD_SPEC.replace("format: icl_multiple_choice", "format: parquet"))
    spec = TaskRegistry(tasks_dir=tasks).get("tiny_qa")
    with pytest.raises(ConfigError) as exc:
        Task(spec, data)
    msg = str(exc.value)
    assert str(path) in msg and "dataset.format" in msg and "parquet" in msg and "icl_multiple_choice" in msg


def test_template_not_found(dirs):
    tasks, prompts, data = dirs
    path = write_spec(tasks, GOOD_SPEC.replace("context: tiny_qa.jinja", "context: no_such.jinja"))
    spec = TaskRegistry(tasks_dir=tasks).get("tiny_qa")
    with pytest.raises(ConfigError) as exc:
        Task(spec, data)
    msg = str(exc.value)
    assert "no_such.jinja" in msg and "not found" in msg and str(prompts) in msg
    assert str(path) in msg and "prompt.context" in msg


def test_template_syntax_error(dirs):
    tasks, prompts, data = dirs
    (prompts / "broken.jinja").write_text("line one\n{{ doc.query \n", encoding="utf-8")
    path = write_spec(tasks, GOOD_SPEC.replace("context: tiny_qa.jinja", "context: broken.jinja"))
    spec = TaskRegistry(tasks_dir=tasks).get("tiny_qa")
    with pytest.raises(ConfigError) as exc:
        Task(spec, data)
    msg = str(exc.value)
    assert "broken.jinja" in msg and "line 2" in msg
    assert str(path) in msg and "prompt.context" in msg


def test_expression_syntax_error(dirs):
    tasks, prompts, data = dirs
    path = write_spec(tasks, GOOD_SPEC.replace("choices: doc.choices", "choices: doc.choices |"))
    spec = TaskRegistry(tasks_dir=tasks).get("tiny_qa")
    with pytest.raises(ConfigError) as exc:
        Task(spec, data)
    msg = str(exc.value)
    assert "doc.choices |" in msg
    assert str(path) in msg and "prompt.choices" in msg


def test_render_error_names_file_and_doc(dirs):
    tasks, prompts, data = dirs
    path = write_spec(tasks, GOOD_SPEC.replace("context: tiny_qa.jinja", 'context: "{{ doc.question }}"'))
    t = Task(TaskRegistry(tasks_dir=tasks).get("tiny_qa"), data)
    with pytest.raises(ConfigError) as exc:
        t.build_items(limit=1)
    msg = str(exc.value)
    assert str(path) in msg and "prompt.context" in msg and "doc_id 0" in msg and "question" in msg


def test_gold_out_of_range_from_expression(dirs):
    tasks, prompts, data = dirs
    write_spec(tasks, GOOD_SPEC.replace("gold: doc.gold", "gold: doc.gold + 5"))
    t = Task(TaskRegistry(tasks_dir=tasks).get("tiny_qa"), data)
    with pytest.raises(ConfigError, match=r"prompt.gold must be an index in \[0, 3\), got 5"):
        t.build_items(limit=1)


def test_suite_naming_unknown_task(dirs):
    tasks, _, _ = dirs
    write_spec(tasks, GOOD_SPEC)
    suites = tasks / "suites.yaml"
    suites.write_text("mine: [tiny_qa, tiny_qb]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        TaskRegistry(tasks_dir=tasks)
    msg = str(exc.value)
    assert str(suites) in msg and "'mine'" in msg and "'tiny_qb'" in msg


def test_duplicate_task_name(dirs):
    tasks, _, _ = dirs
    first = write_spec(tasks, GOOD_SPEC, "a.yaml")
    second = write_spec(tasks, GOOD_SPEC, "b.yaml")
    with pytest.raises(ConfigError) as exc:
        TaskRegistry(tasks_dir=tasks)
    msg = str(exc.value)
    assert str(second) in msg and str(first) in msg and "tiny_qa" in msg


def test_invalid_yaml(dirs):
    msg, path = spec_error(dirs[0], "name: [unclosed\n")
    assert str(path) in msg and "invalid YAML" in msg


# ---- unknown names: "did you mean" -----------------------------------------------------------

def test_unknown_task_did_you_mean():
    registry = TaskRegistry()
    with pytest.raises(ConfigError) as exc:
        registry.get("hellaswg")
    assert "unknown task 'hellaswg'" in str(exc.value) and "did you mean 'hellaswag'" in str(exc.value)
    with pytest.raises(ConfigError, match="did you mean 'hellaswag'"):
        registry.resolve("piqa,hellaswg", None)


def test_unknown_task_without_close_match():
    with pytest.raises(ConfigError) as exc:
        TaskRegistry().get("zzzzzz")
    assert "unknown task 'zzzzzz'" in str(exc.value) and "did you mean" not in str(exc.value)
    assert "evalharness list" in str(exc.value)


def test_unknown_suite_did_you_mean():
    registry = TaskRegistry()
    with pytest.raises(ConfigError) as exc:
        registry.suite("icll")
    assert "unknown suite 'icll'" in str(exc.value) and "did you mean 'icl'" in str(exc.value)
    with pytest.raises(ConfigError, match="did you mean 'icl'"):
        registry.resolve(None, "icll")


def test_shipped_registry():
    registry = TaskRegistry()
    assert {"lambada_openai", "piqa", "hellaswag", "mmlu", "jeopardy", "jeopardy_em"} <= set(registry.specs)
    assert registry.suite("icl") == ("lambada_openai", "piqa", "hellaswag", "mmlu", "jeopardy")
    assert registry.resolve("icl", None) == registry.suite("icl")
    assert registry.resolve("piqa, mmlu,piqa", None) == ("piqa", "mmlu")


def test_limit_per_subset_is_a_flag(dirs):
    ok = TaskRegistry(tasks_dir=write_spec(dirs[0], GOOD_SPEC.replace(
        "  path: tiny/qa.jsonl\n", "  path: tiny/qa.jsonl\n  limit_per_subset: true\n")).parent).get("tiny_qa")
    assert ok.dataset.limit_per_subset is True
    msg, _ = spec_error(dirs[0], GOOD_SPEC.replace("  path: tiny/qa.jsonl\n", "  path: tiny/qa.jsonl\n  limit_per_subset: 5\n"))
    assert "limit_per_subset" in msg and "true or false" in msg
