"""LLM Foundry's ICL format (the `llm_foundry:` block): its few-shot sampler, its prompt layout, and schema items.

Every expected value is written out by hand from LLM Foundry's rules (llmfoundry/eval/datasets/
in_context_learning_evaluation.py and utils.py): one `random.Random(fewshot_random_seed)` per file, drawn item
after item; for item i, `set(rng.sample(range(n), k))`, the item itself replaced by `rng.choice(range(n))` draws,
the shots used in the set's iteration order.
"""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import pytest

from evalharness.errors import ConfigError
from evalharness.evaluator import Evaluator
from evalharness.requests import LoglikelihoodRequest
from evalharness.tasks import TaskRegistry
from evalharness.tasks.fewshot import llm_foundry_shot_indices
from evalharness.tasks.spec import parse_task_spec
from evalharness.tasks.task import Task
from support.toy_backend import ToyBackend, ToyOptions

# Python's random.Random(1234), as LLM Foundry calls it, for a file of 5 rows and 3 shots (worked out step by step):
#   item 0: sample -> [3, 0, 4]; 0 is the item: removed; choice draws 0 (the item), 4 (taken), 0, 0, 0, 2 -> {2, 3, 4}
#   item 1: sample -> [1, 0, 3]; 1 removed; choice draws 0 (taken), 2                               -> {0, 2, 3}
#   item 2: sample -> [4, 3, 2]; 2 removed; choice draws 3 (taken), 1                               -> {1, 3, 4}
#   item 3: sample -> [0, 1, 2]                                                                     -> {0, 1, 2}
#   item 4: sample -> [0, 4, 2]; 4 removed; choice draws 3                                          -> {0, 2, 3}
# A set of small ints iterates in value order here, so item 2's shots come as 1, 3, 4 (drawn as 4, 3, 1).
SHOTS_5_ROWS_3_SHOTS = [[2, 3, 4], [0, 2, 3], [1, 3, 4], [0, 1, 2], [0, 2, 3]]


def test_shot_indices_follow_llm_foundrys_draws():
    rng = random.Random(1234)
    assert [llm_foundry_shot_indices(5, 3, i, rng) for i in range(5)] == SHOTS_5_ROWS_3_SHOTS
    # the generator is shared by the items: item 1 alone, from a fresh generator, gets item 0's draws instead
    assert llm_foundry_shot_indices(5, 3, 1, random.Random(1234)) == [0, 3, 4]
    # more shots than other rows: every other row
    assert sorted(llm_foundry_shot_indices(3, 5, 1, random.Random(1234))) == [0, 2]


def _folder(tmp_path: Path, spec: str, rows: list[dict], name: str = "lf") -> tuple[Path, Path]:
    data = tmp_path / "data"
    (data / "tiny").mkdir(parents=True)
    (data / "tiny" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / f"{name}.yaml").write_text(textwrap.dedent(spec), encoding="utf-8")
    return tasks, data


LM_SPEC = """\
    name: lf_lm
    output_type: language_modeling
    dataset: {format: icl_language_modeling, path: tiny/lf.jsonl}
    prompt: {context: "{{ doc.context }}", target: "{{ doc.continuation }}"}
    llm_foundry: {}
    num_fewshot: 3
    metrics: [acc]
"""
# surrounding whitespace of every field is stripped, as LLM Foundry's strip_dataset does
LM_ROWS = [{"context": f" q{i} ", "continuation": f"a{i} "} for i in range(5)]


def lm_task(tmp_path: Path, spec: str = LM_SPEC, name: str = "lf_lm") -> Task:
    tasks, data = _folder(tmp_path, spec, LM_ROWS)
    return Task(TaskRegistry(include_paths=[tasks]).get(name), data)


def test_default_layout_and_shots(tmp_path):
    t = lm_task(tmp_path)
    items = t.build_items()
    # defaults: example_delimiter "\n", continuation_delimiter " ", the item's context right-stripped, one space
    # before the scored continuation
    expected = [
        ("q2 a2\nq3 a3\nq4 a4\nq0", " a0"),
        ("q0 a0\nq2 a2\nq3 a3\nq1", " a1"),
        ("q1 a1\nq3 a3\nq4 a4\nq2", " a2"),
        ("q0 a0\nq1 a1\nq2 a2\nq3", " a3"),
        ("q0 a0\nq2 a2\nq3 a3\nq4", " a4"),
    ]
    assert [(it.requests[0].context, it.requests[0].continuation) for it in items] == expected
    assert [it.gold for it in items] == [f"a{i}" for i in range(5)]
    # --limit takes a prefix of the file: the same draws, the same prompts
    assert t.build_items(limit=2) == items[:2]
    info = t.fewshot_info(None)
    assert info["num_fewshot"] == 3 and info["seed"] == 1234 and info["format"] == "llm-foundry"
    assert info["delimiter"] == "\n" and info["target_delimiter"] == " "
    zero = t.build_items(num_fewshot=0)
    assert [(it.requests[0].context, it.requests[0].continuation) for it in zero][:2] == [("q0", " a0"), ("q1", " a1")]


def test_prompt_string_prelimiter_and_delimiters(tmp_path):
    spec = LM_SPEC.replace("llm_foundry: {}", textwrap.dedent("""\
        llm_foundry:
          prompt_string: "P:"
          question_prelimiter: "Q: "
          continuation_delimiter: "\\nA: "
          example_delimiter: "\\n\\n"
    """).replace("\n", "\n    "))
    items = lm_task(tmp_path, spec).build_items()
    # prompt_string, then each shot [example_delimiter] prelimiter context continuation_delimiter answer (the
    # delimiter also after the prompt string: text precedes the first shot), then the item without its answer,
    # right-stripped ("\nA: " ends as "\nA:")
    assert items[3].requests[0] == LoglikelihoodRequest(
        "P:\n\nQ: q0\nA: a0\n\nQ: q1\nA: a1\n\nQ: q2\nA: a2\n\nQ: q3\nA:", " a3")


def test_categories_have_one_sampler_each(tmp_path):
    rows = [{"context": f"{c}{i}", "continuation": f"{c.upper()}{i}", "category": c} for c in "xy" for i in range(5)]
    rows = [rows[i // 2 + 5 * (i % 2)] for i in range(10)]  # interleave: x0 y0 x1 y1 ...
    spec = LM_SPEC.replace("llm_foundry: {}", "llm_foundry: {has_categories: true}")
    tasks, data = _folder(tmp_path, spec, rows)
    t = Task(TaskRegistry(include_paths=[tasks]).get("lf_lm"), data)
    items = t.build_items()
    assert t.spec.group_by_subset
    by_cat: dict[str, list[str]] = {"x": [], "y": []}
    for it in items:
        by_cat[it.subset].append(it.requests[0].context)
    # each category is its own 5-row file with its own random.Random(1234): the same shot positions in both
    for c in "xy":
        assert by_cat[c] == [
            "\n".join(f"{c}{j} {c.upper()}{j}" for j in shots) + f"\n{c}{i}"
            for i, shots in enumerate(SHOTS_5_ROWS_3_SHOTS)
        ]


SCHEMA_SPEC = """\
    name: lf_schema
    output_type: schema
    dataset: {format: icl_schema, path: tiny/lf_schema.jsonl}
    prompt:
      context: "{{ doc.context_options[doc.gold] }}"
      choices: doc.context_options
      gold: doc.gold
      target: "{{ doc.continuation }}"
    num_fewshot: 1
    metrics: [acc_token, acc]
"""
SCHEMA_ROWS = [
    {"context_options": ["Ann", "Bobby"], "continuation": "ran.", "gold": 0},
    {"context_options": ["The cat", "The dog"], "continuation": "barked.", "gold": 1},
    {"context_options": ["Cy", "Dee"], "continuation": "sat.", "gold": 1},
]


def schema_task(tmp_path: Path) -> Task:
    tasks, data = _folder(tmp_path, SCHEMA_SPEC, SCHEMA_ROWS, "lf_schema")
    return Task(TaskRegistry(include_paths=[tasks]).get("lf_schema"), data)


def test_schema_requests(tmp_path):
    t = schema_task(tmp_path)
    assert t.spec.llm_foundry is not None  # schema tasks always use LLM Foundry's format (its defaults here)
    # random.Random(1234) over 3 rows, 1 shot: item 0 draws [1], item 1 draws [0], item 2 draws [0].
    # A shot is the gold option, the continuation delimiter and the continuation; each option of the item follows
    # after the example delimiter, with the continuation delimiter right-stripped (" " -> ""), and the shared
    # continuation is scored after every option.
    items = t.build_items()
    assert [[(r.context, r.continuation) for r in it.requests] for it in items] == [
        [("The dog barked.\nAnn", " ran."), ("The dog barked.\nBobby", " ran.")],
        [("Ann ran.\nThe cat", " barked."), ("Ann ran.\nThe dog", " barked.")],
        [("Ann ran.\nCy", " sat."), ("Ann ran.\nDee", " sat.")],
    ]
    assert [it.gold for it in items] == [0, 1, 1]
    # zero-shot: the options alone (LLM Foundry adds no continuation delimiter then)
    zero = t.build_items(num_fewshot=0)
    assert [r.context for r in zero[0].requests] == ["Ann", "Bobby"]


def test_schema_scored_with_a_toy_backend(tmp_path):
    t = schema_task(tmp_path)
    backend = ToyBackend(ToyOptions(scale=1.0, context_scale=1.0))  # log-prob = -(continuation + context chars)
    result = Evaluator(backend, {"lf_schema": t}).run()["lf_schema"]
    # item 0: " ran." (5) after "The dog barked.\nAnn" (19) -> -24; after "...\nBobby" (21) -> -26: option 0 = gold
    # item 1: " barked." (8) after "Ann ran.\nThe cat" (16) and "Ann ran.\nThe dog" (16): -24 twice, a tie, which
    #         goes to the first option (LLM Foundry's index(min)): 0, gold 1 -> wrong
    # item 2: " sat." (5) after "Ann ran.\nCy" (11) -> -16, after "Ann ran.\nDee" (12) -> -17: option 0, gold 1 -> wrong
    # acc_token divides by the continuation's tokens, the same under both options: the same predictions
    assert result.metrics["acc"] == pytest.approx(1 / 3)
    assert result.metrics["acc_token"] == pytest.approx(1 / 3)
    assert result.metrics["n"] == 3
    assert result.info["output_type"] == "schema" and result.info["fewshot"]["num_fewshot"] == 1


@pytest.mark.parametrize("extra, message", [
    ({"llm_foundry": {"continuation_delimter": " "}}, "unknown setting(s) ['continuation_delimter']"),
    ({"llm_foundry": {}, "target_delimiter": " "}, "do not apply with 'llm_foundry'"),
    ({"llm_foundry": {"do_normalization": "yes"}}, "'llm_foundry.do_normalization': must be true or false"),
    ({"llm_foundry": {"early_stopping_criteria": ["\n"]}}, "only generation_task_with_answers tasks stop"),
    ({"llm_foundry": {}, "group_by_subset": True}, "say 'has_categories: true'"),
])
def test_llm_foundry_block_errors(extra, message):
    raw = {"name": "t", "output_type": "language_modeling", "metrics": ["acc"],
           "dataset": {"format": "icl_language_modeling", "path": "x.jsonl"},
           "prompt": {"context": "{{ doc.context }}", "target": "{{ doc.continuation }}"}, **extra}
    with pytest.raises(ConfigError) as err:
        parse_task_spec(raw, "tasks/t.yaml")
    assert str(err.value).startswith("tasks/t.yaml: ") and message in str(err.value)


def test_schema_needs_a_continuation_and_options():
    raw = {"name": "t", "output_type": "schema", "metrics": ["acc_token"],
           "dataset": {"format": "icl_schema", "path": "x.jsonl"}, "prompt": {"context": "x", "target": "y"}}
    with pytest.raises(ConfigError, match="'prompt.choices' and 'prompt.gold' are required for schema tasks"):
        parse_task_spec(raw, "t.yaml")
    with pytest.raises(ConfigError, match="'acc_norm' is not defined for schema tasks"):
        parse_task_spec({**raw, "metrics": ["acc_norm"]}, "t.yaml")
