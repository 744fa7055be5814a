"""Request strings built from the REAL data files equal the prompt format, computed here independently.

Every expectation is derived from the raw files with `json` / `csv` (never with evalharness's loaders),
following the protocol each task documents (LLM Foundry / lm-evaluation-harness).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from evalharness.requests import LoglikelihoodResult
from evalharness.tasks import TaskRegistry
from evalharness.tasks.task import Item, ScoredItem, Task

LETTERS = "ABCD"
SAMPLE_KEYS = {
    "doc_id", "subset", "requests", "logprobs", "is_greedy", "num_tokens", "truncated",
    "prediction", "predictions", "gold", "metrics",
}


# ---- independent readers of the raw files ------------------------------------------------------

def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_mmlu(data_dir: Path, subject: str, split: str) -> list[list[str]]:
    with open(data_dir / "mmlu" / split / f"{subject}_{split}.csv", encoding="utf-8", newline="") as f:
        return [row for row in csv.reader(f) if row]


def mmlu_question(row: list[str]) -> str:
    question, a, b, c, d, _ = row
    return f"{question.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"


def mmlu_description(subject: str) -> str:
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def hellaswag_pre(text: str) -> str:
    return re.sub(r"\[.*?\]", "", text.strip().replace(" [title]", ". ")).replace("  ", " ")


def task(name: str, data_dir: Path) -> Task:
    return Task(TaskRegistry().get(name), data_dir)


def contexts(item: Item) -> set[str]:
    return {r.context for r in item.requests}


# ---- LAMBADA ---------------------------------------------------------------------------------

def test_lambada_requests_all_rows(data_dir):
    rows = read_jsonl(data_dir / "llm-foundry" / "lambada_openai.jsonl")
    items = task("lambada_openai", data_dir).build_items()
    assert len(rows) == len(items) == 5153
    for i, (row, item) in enumerate(zip(rows, items)):
        assert item.doc_id == i and item.subset is None
        assert len(item.requests) == 1
        (req,) = item.requests
        assert req.context == row["context"]
        assert req.continuation == " " + row["continuation"]
        assert item.gold == row["continuation"]


def test_lambada_limit_takes_first_rows_of_file(data_dir):
    rows = read_jsonl(data_dir / "llm-foundry" / "lambada_openai.jsonl")
    items = task("lambada_openai", data_dir).build_items(limit=4)
    assert [it.requests[0].context for it in items] == [r["context"] for r in rows[:4]]


# ---- PIQA ------------------------------------------------------------------------------------

def test_piqa_requests_all_rows(data_dir):
    rows = read_jsonl(data_dir / "llm-foundry" / "piqa.jsonl")
    items = task("piqa", data_dir).build_items()
    assert len(rows) == len(items) == 1838
    for i, (row, item) in enumerate(zip(rows, items)):
        ctx = row["query"] + "Answer:"
        assert item.doc_id == i
        assert [(r.context, r.continuation) for r in item.requests] == [(ctx, " " + c) for c in row["choices"]]
        assert item.gold == row["gold"]
        assert item.choice_lengths == tuple(len(c) for c in row["choices"])
    assert items[0].requests[0].context == "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:"


def test_piqa_limit_is_per_file(data_dir):
    rows = read_jsonl(data_dir / "llm-foundry" / "piqa.jsonl")
    items = task("piqa", data_dir).build_items(limit=7)
    assert [it.doc_id for it in items] == list(range(7))
    assert [it.requests[0].context for it in items] == [r["query"] + "Answer:" for r in rows[:7]]


# ---- HellaSwag -------------------------------------------------------------------------------

def test_hellaswag_requests_all_rows_and_equal_llm_foundry_file(data_dir):
    raw = read_jsonl(data_dir / "hellaswag" / "hellaswag_val.jsonl")
    foundry = read_jsonl(data_dir / "llm-foundry" / "hellaswag.jsonl")
    items = task("hellaswag", data_dir).build_items()
    assert len(raw) == len(foundry) == len(items) == 10042
    for i, (row, ref, item) in enumerate(zip(raw, foundry, items)):
        ctx = hellaswag_pre(row["activity_label"] + ": " + row["ctx_a"] + " " + row["ctx_b"].capitalize())
        choices = [hellaswag_pre(e) for e in row["endings"]]
        assert item.doc_id == i
        assert [(r.context, r.continuation) for r in item.requests] == [(ctx, " " + c) for c in choices], i
        assert item.gold == int(row["label"])
        # the same (context, choices, gold) as LLM Foundry's file, which was built with this preprocessing
        got_choices = [r.continuation[1:] for r in item.requests]
        assert (item.requests[0].context, got_choices, item.gold) == (ref["query"], ref["choices"], ref["gold"]), i
    assert items[0].requests[0].context == "Roof shingle removal: A man is sitting on a roof. He"


def test_hellaswag_preprocessing_touches_wikihow_rows(data_dir):
    """Guard that the check above is not vacuous: WikiHow rows carry [title]/[step] tags that are removed."""
    raw = read_jsonl(data_dir / "hellaswag" / "hellaswag_val.jsonl")
    tagged = [i for i, r in enumerate(raw) if "[" in r["ctx_a"] + r["ctx_b"] + "".join(r["endings"])]
    assert len(tagged) > 1000
    items = task("hellaswag", data_dir).build_items()
    for i in tagged[:200]:
        for r in items[i].requests:
            assert "[title]" not in r.context + r.continuation
            assert "[step]" not in r.context + r.continuation


# ---- MMLU ------------------------------------------------------------------------------------

MMLU_SUBJECTS_CHECKED = ["abstract_algebra", "anatomy", "high_school_government_and_politics", "world_religions"]


@pytest.fixture(scope="module")
def mmlu_task(data_dir) -> Task:
    return task("mmlu", data_dir)


@pytest.mark.parametrize("subject", MMLU_SUBJECTS_CHECKED)
def test_mmlu_requests_whole_subject(mmlu_task, data_dir, subject):
    rows = read_mmlu(data_dir, subject, "test")
    items = [it for it in mmlu_task.build_items() if it.subset == subject]
    assert len(items) == len(rows) > 0
    for i, (row, item) in enumerate(zip(rows, items)):
        ctx = mmlu_description(subject) + mmlu_question(row)
        assert item.doc_id == i
        assert [(r.context, r.continuation) for r in item.requests] == [(ctx, " " + x) for x in LETTERS]
        assert item.gold == LETTERS.index(row[5])


def test_mmlu_description_spaces_underscores(mmlu_task):
    items = [it for it in mmlu_task.build_items(limit=1) if it.subset == "high_school_government_and_politics"]
    assert items[0].requests[0].context.startswith(
        "The following are multiple choice questions (with answers) about high school government and politics.\n\n")


def test_mmlu_limit_is_per_subject(mmlu_task, data_dir):
    items = mmlu_task.build_items(limit=3)
    assert len(items) == 57 * 3
    by_subject: dict[str, list[int]] = {}
    for it in items:
        by_subject.setdefault(it.subset, []).append(it.doc_id)
    assert len(by_subject) == 57
    assert all(ids == [0, 1, 2] for ids in by_subject.values())
    rows = read_mmlu(data_dir, "world_religions", "test")
    got = [it for it in items if it.subset == "world_religions"]
    assert [it.requests[0].context for it in got] == [mmlu_description("world_religions") + mmlu_question(r) for r in rows[:3]]


def test_mmlu_two_shots_exact_string(mmlu_task):
    item = [it for it in mmlu_task.build_items(limit=1, num_fewshot=2) if it.subset == "abstract_algebra"][0]
    expected = (
        "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
        "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\n"
        "A. 0\nB. 1\nC. 2\nD. 3\n"
        "Answer: B\n\n"
        "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. "
        "Statement 2 | If H and K are subgroups of G then HK is a subgroup of G.\n"
        "A. True, True\nB. False, False\nC. True, False\nD. False, True\n"
        "Answer: B\n\n"
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
        "A. 0\nB. 4\nC. 2\nD. 6\n"
        "Answer:"
    )
    assert contexts(item) == {expected}
    assert [r.continuation for r in item.requests] == [" A", " B", " C", " D"]
    assert item.gold == 1


@pytest.mark.parametrize("subject", ["anatomy", "high_school_government_and_politics"])
def test_mmlu_shots_are_first_dev_rows_of_same_subject(mmlu_task, data_dir, subject):
    dev = read_mmlu(data_dir, subject, "dev")
    test_rows = read_mmlu(data_dir, subject, "test")
    items = [it for it in mmlu_task.build_items(limit=2, num_fewshot=2) if it.subset == subject]
    shots = "\n\n".join(mmlu_question(r) + " " + r[5] for r in dev[:2])
    for row, item in zip(test_rows, items):
        assert contexts(item) == {mmlu_description(subject) + shots + "\n\n" + mmlu_question(row)}
    info = mmlu_task.fewshot_info(2)
    assert info["num_fewshot"] == 2
    assert info["delimiter"] == "\n\n"
    assert info["target_delimiter"] == " "
    assert info["seed"] is None  # shots are the first k dev rows: no sampling
    assert "dev" in info["source"]


# ---- Jeopardy --------------------------------------------------------------------------------

def test_jeopardy_requests_all_rows(data_dir):
    rows = read_jsonl(data_dir / "llm-foundry" / "jeopardy_all.jsonl")
    items = task("jeopardy", data_dir).build_items()
    assert len(rows) == len(items) == 2117
    for i, (row, item) in enumerate(zip(rows, items)):
        assert item.doc_id == i
        assert item.subset == row["category"]
        (req,) = item.requests
        assert req.context == row["context"] + "\nAnswer:"
        assert req.continuation == " " + row["continuation"]
        assert item.gold == row["continuation"]
    assert {it.subset for it in items} == {"literature", "science", "american_history", "world_history", "word_origins"}


@pytest.mark.parametrize("name", ["jeopardy", "jeopardy_em"])
def test_jeopardy_limit_is_per_category(data_dir, name):
    """--limit N takes the first N of each of the five categories (the file is sorted by category), as MMLU's is
    per subject, so a limited run's macro average covers every category; a full run is unchanged."""
    rows = read_jsonl(data_dir / "llm-foundry" / "jeopardy_all.jsonl")
    first: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if len(first.setdefault(r["category"], [])) < 5:
            first[r["category"]].append(i)
    items = task(name, data_dir).build_items(limit=5)
    assert [it.doc_id for it in items] == sorted(i for ids in first.values() for i in ids)
    assert len(items) == 25 and {it.subset for it in items} == set(first) and len(first) == 5
    full = task(name, data_dir).build_items()
    assert [it.doc_id for it in full] == list(range(len(rows)))
    by_id = {it.doc_id: it for it in full}
    assert all(it == by_id[it.doc_id] for it in items)  # the same requests (prompts, shots) as in the full run


# ---- seeded few-shot sampling (tasks without a separate few-shot split) ----------------------

def _split_shots(context: str, item_context: str, n: int) -> list[str]:
    assert context.endswith("\n\n" + item_context)
    shots = context[: -len("\n\n" + item_context)].split("\n\n")
    assert len(shots) == n
    return shots


def test_piqa_three_shots_are_other_rows_and_deterministic(data_dir):
    rows = read_jsonl(data_dir / "llm-foundry" / "piqa.jsonl")
    shot_text = [r["query"] + "Answer:" + " " + r["choices"][r["gold"]] for r in rows]
    index_of: dict[str, list[int]] = {}
    for i, s in enumerate(shot_text):
        assert "\n\n" not in s  # so that splitting on the delimiter recovers the shots
        index_of.setdefault(s, []).append(i)

    t = task("piqa", data_dir)
    items50 = t.build_items(limit=50, num_fewshot=3)
    items5 = t.build_items(limit=5, num_fewshot=3)
    again = task("piqa", data_dir).build_items(limit=50, num_fewshot=3)
    assert items50 == again  # same twice (a fresh Task too)
    assert items50[:5] == items5  # independent of --limit

    shot_sets = set()
    for i, item in enumerate(items50):
        (ctx,) = contexts(item)
        shots = _split_shots(ctx, rows[i]["query"] + "Answer:", 3)
        ids = []
        for s in shots:
            assert s in index_of, s
            assert any(j != i for j in index_of[s])  # never the item itself
            ids.append(index_of[s][0])
        assert i not in ids
        assert len(set(ids)) == 3
        shot_sets.add(tuple(ids))
        assert [r.continuation for r in item.requests] == [" " + c for c in rows[i]["choices"]]
    assert len(shot_sets) > 1  # sampled per item, not one fixed prefix

    info = t.fewshot_info(3)
    assert info["num_fewshot"] == 3
    assert info["seed"] == 1234
    assert info["delimiter"] == "\n\n"
    assert info["target_delimiter"] == " "


def test_jeopardy_two_shots_from_same_category(data_dir):
    rows = read_jsonl(data_dir / "llm-foundry" / "jeopardy_all.jsonl")
    where: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        where.setdefault(r["context"] + "\nAnswer: " + r["continuation"], []).append(i)

    t = task("jeopardy", data_dir)
    items = t.build_items(num_fewshot=2)
    # check the first 30 items of every category
    seen: dict[str, int] = {}
    checked = 0
    for item in items:
        if seen.get(item.subset, 0) >= 30:
            continue
        seen[item.subset] = seen.get(item.subset, 0) + 1
        i = item.doc_id
        (req,) = item.requests
        shots = _split_shots(req.context, rows[i]["context"] + "\nAnswer:", 2)
        for s in shots:
            assert s in where, s
            candidates = [j for j in where[s] if j != i and rows[j]["category"] == rows[i]["category"]]
            assert candidates, (i, s)
        assert req.continuation == " " + rows[i]["continuation"]
        checked += 1
    assert checked == 150
    taken: dict[str, int] = {}
    expected = []
    for it in items:
        taken[it.subset] = taken.get(it.subset, 0) + 1
        if taken[it.subset] <= 3:
            expected.append(it)
    assert len(expected) == 15 and t.build_items(limit=3, num_fewshot=2) == expected  # per category, same shots
    info = t.fewshot_info(2)
    assert info["seed"] == 1234 and info["delimiter"] == "\n\n"
    assert "category" in info["source"]


# ---- samples_<task>.jsonl records (no tokenizer involved) ------------------------------------

def test_sample_record_multiple_choice(data_dir):
    t = task("piqa", data_dir)
    item = t.build_items(limit=1)[0]
    results = (LoglikelihoodResult(-5.0, False, 10), LoglikelihoodResult(-4.0, True, 20, truncated=True))
    scored = t.score(item, results)
    assert isinstance(scored, ScoredItem)
    rec = scored.sample_record()
    assert set(rec) == SAMPLE_KEYS
    assert rec["doc_id"] == 0 and rec["subset"] is None
    assert rec["requests"] == [{"context": r.context, "continuation": r.continuation} for r in item.requests]
    assert rec["logprobs"] == [-5.0, -4.0]
    assert rec["is_greedy"] == [False, True]
    assert rec["num_tokens"] == [10, 20]
    assert rec["truncated"] is True
    # acc: argmax logprob -> 1; acc_token: -5/10 > -4/20? no: -0.5 < -0.2 -> 1
    assert rec["prediction"] == 1 == rec["predictions"]["acc"]
    assert set(rec["predictions"]) == {"acc", "acc_norm", "acc_token"}
    assert rec["gold"] == item.gold == 0
    assert rec["metrics"]["acc"] == 0.0
    assert set(rec["metrics"]) == {"acc", "acc_norm", "acc_token"}
    json.dumps(rec)  # serialisable as is


def test_sample_record_language_modeling_and_subset(data_dir):
    t = task("jeopardy", data_dir)
    item = t.build_items(limit=1)[0]
    rec = t.score(item, (LoglikelihoodResult(-1.5, True, 4),)).sample_record()
    assert set(rec) == SAMPLE_KEYS
    assert rec["subset"] == "world_history"
    assert rec["gold"] == "Admiral Richard Byrd"
    assert rec["prediction"] is None and rec["predictions"] is None
    assert rec["metrics"] == {"acc": 1.0}
    assert rec["truncated"] is False

    lam = task("lambada_openai", data_dir)
    rec = lam.score(lam.build_items(limit=1)[0], (LoglikelihoodResult(-2.0, False, 1),)).sample_record()
    assert rec["metrics"] == {"acc": 0.0, "logprob": -2.0}
    assert rec["requests"][0]["continuation"] == " signs"
    json.dumps(rec)
