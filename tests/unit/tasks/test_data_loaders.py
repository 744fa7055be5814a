"""Tests for evalharness.data: locating files and loading the benchmark data files."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evalharness.data import (
    MMLU_SUBJECTS,
    HellaSwagDoc,
    LMDoc,
    MCDoc,
    MMLUDoc,
    data_file,
    load_hellaswag,
    load_language_modeling,
    load_mmlu_subject,
    load_multiple_choice,
    resolve_data_dir,
)
from evalharness.errors import DataError, DataFileNotFound, EvalHarnessError
from support.paths import REPO

# ---------------------------------------------------------------- helpers


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def jsonl(*rows: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def assert_data_error(err: DataError, path: Path, line: int | None, field: str | None, problem: str) -> None:
    """The error and its message name the file, the line and the field, and say what is wrong."""
    msg = str(err)
    assert err.path == str(path)
    assert err.line == line
    assert err.field == field
    assert path.name in msg
    if line is None:
        assert msg.startswith(f"{path}:")
    else:
        assert msg.startswith(f"{path}:{line}:")
    if field is not None:
        assert f"field {field!r}:" in msg
    else:
        assert "field '" not in msg
    assert problem in msg


MC_OK = {"query": "Question: q?\n", "choices": ["yes", "no"], "gold": 1}
LM_OK = {"context": "The cat sat on the", "continuation": "mat"}
HS_OK = {
    "ind": 24,
    "activity_label": "Roof shingle removal",
    "ctx_a": "A man is sitting on a roof.",
    "ctx_b": "he",
    "split_type": "indomain",
    "label": 3,
    "endings": ["a", "b", "c", "d"],
}


DROP = object()


def with_(base: dict, **changes: object) -> dict:
    """A copy of `base` with fields changed (DROP removes a field)."""
    row = dict(base)
    for key, value in changes.items():
        if value is DROP:
            row.pop(key, None)
        else:
            row[key] = value
    return row


# ---------------------------------------------------------------- locate


def test_resolve_data_dir_prefers_explicit(monkeypatch, tmp_path):
    monkeypatch.setenv("EVALHARNESS_DATA_DIR", "/from/env")
    assert resolve_data_dir(tmp_path) == tmp_path
    assert resolve_data_dir(str(tmp_path)) == tmp_path


def test_resolve_data_dir_uses_env_then_none(monkeypatch):
    monkeypatch.setenv("EVALHARNESS_DATA_DIR", "/from/env")
    assert resolve_data_dir(None) == Path("/from/env")
    monkeypatch.setenv("EVALHARNESS_DATA_DIR", "")
    assert resolve_data_dir(None) is None
    monkeypatch.delenv("EVALHARNESS_DATA_DIR")
    assert resolve_data_dir(None) is None


def test_data_file_found(tmp_path):
    target = write(tmp_path / "llm-foundry" / "piqa.jsonl", jsonl(MC_OK))
    assert data_file(tmp_path, "llm-foundry/piqa.jsonl") == target


def test_data_file_missing_in_existing_dir(tmp_path):
    with pytest.raises(DataFileNotFound) as exc:
        data_file(tmp_path, "llm-foundry/piqa.jsonl")
    msg = str(exc.value)
    assert "'llm-foundry/piqa.jsonl' not found" in msg
    assert str(tmp_path) in msg
    assert "--data-dir" in msg and "EVALHARNESS_DATA_DIR" in msg
    assert exc.value.expected == "llm-foundry/piqa.jsonl"
    assert exc.value.looked_in == tmp_path


def test_data_file_dir_does_not_exist(tmp_path):
    with pytest.raises(DataFileNotFound) as exc:
        data_file(tmp_path / "nope", "piqa.jsonl")
    msg = str(exc.value)
    assert "data directory does not exist" in msg
    assert str(tmp_path / "nope") in msg
    assert "--data-dir" in msg and "EVALHARNESS_DATA_DIR" in msg


def test_data_file_without_data_dir():
    with pytest.raises(DataFileNotFound) as exc:
        data_file(None, "hellaswag/hellaswag_val.jsonl")
    msg = str(exc.value)
    assert "'hellaswag/hellaswag_val.jsonl' not found" in msg
    assert "no data directory was given" in msg
    assert "--data-dir" in msg and "EVALHARNESS_DATA_DIR" in msg


# ---------------------------------------------------------------- ICL jsonl: happy paths


def test_load_language_modeling(tmp_path):
    path = write(
        tmp_path / "lm.jsonl",
        jsonl(LM_OK, "", {"context": "WORLD HISTORY: clue", "continuation": "Byrd", "category": "world_history"})
        + "   \n",
    )
    assert load_language_modeling(path) == [
        LMDoc("The cat sat on the", "mat", None),
        LMDoc("WORLD HISTORY: clue", "Byrd", "world_history"),
    ]


def test_load_multiple_choice(tmp_path):
    path = write(
        tmp_path / "mc.jsonl",
        jsonl(MC_OK, {"query": "Q2", "choices": ["0", "1", "2"], "gold": 0, "category": "math", "extra": 1}),
    )
    docs = load_multiple_choice(path)
    assert docs == [
        MCDoc("Question: q?\n", ("yes", "no"), 1, None),
        MCDoc("Q2", ("0", "1", "2"), 0, "math"),
    ]
    assert isinstance(docs[0].choices, tuple)
    with pytest.raises(AttributeError):
        docs[0].gold = 0  # type: ignore[misc]


def test_jsonl_bom_crlf_and_no_final_newline(tmp_path):
    raw = b"\xef\xbb\xbf" + json.dumps(MC_OK).encode() + b"\r\n" + json.dumps(MC_OK).encode()
    path = write(tmp_path / "mc.jsonl", raw)
    assert [d.gold for d in load_multiple_choice(path)] == [1, 1]


def test_jsonl_non_ascii_text(tmp_path):
    row = {"context": "Zoë said \u2028 “hi”", "continuation": "café"}
    path = write(tmp_path / "lm.jsonl", json.dumps(row, ensure_ascii=False) + "\n")
    assert load_language_modeling(path) == [LMDoc("Zoë said \u2028 “hi”", "café", None)]


# ---------------------------------------------------------------- ICL jsonl: errors

MC_ERRORS = [
    ("{not json", None, "invalid JSON"),
    ('["a", "b"]', None, "expected a JSON object, got array"),
    ("3", None, "expected a JSON object, got number"),
    ('{"query": "q", "query": "r", "choices": ["a"], "gold": 0}', "query", "key appears twice"),
    (with_(MC_OK, query=DROP), "query", "missing required field"),
    (with_(MC_OK, query=5), "query", "expected a string, got number"),
    (with_(MC_OK, query=None), "query", "expected a string, got null"),
    (with_(MC_OK, choices=DROP), "choices", "missing required field"),
    (with_(MC_OK, choices="yes"), "choices", "expected a list of strings, got string"),
    (with_(MC_OK, choices=[]), "choices", "list is empty"),
    (with_(MC_OK, choices=["a", 2]), "choices[1]", "expected a string, got number"),
    (with_(MC_OK, choices=["a", ""]), "choices[1]", "must not be empty"),
    (with_(MC_OK, gold=DROP), "gold", "missing required field"),
    (with_(MC_OK, gold=True), "gold", "expected an integer, got boolean True"),
    (with_(MC_OK, gold=1.0), "gold", "expected an integer, got number 1.0"),
    (with_(MC_OK, gold="1"), "gold", "expected an integer, got string '1'"),
    (with_(MC_OK, gold=2), "gold", "2 is out of range for 2 choices (expected 0..1)"),
    (with_(MC_OK, gold=-1), "gold", "-1 is out of range for 2 choices"),
    (with_(MC_OK, category=7), "category", "expected a string or null, got number"),
    ('{"query": "\\ud800", "choices": ["a"], "gold": 0}', "query", "unpaired surrogate"),
]


@pytest.mark.parametrize(("bad", "field", "problem"), MC_ERRORS)
def test_multiple_choice_errors(tmp_path, bad, field, problem):
    # good row, blank line, good row, bad row: the bad row is on line 4
    path = write(tmp_path / "mc.jsonl", jsonl(MC_OK, "", MC_OK, bad, MC_OK))
    with pytest.raises(DataError) as exc:
        load_multiple_choice(path)
    assert_data_error(exc.value, path, 4, field, problem)


LM_ERRORS = [
    (with_(LM_OK, context=DROP), "context", "missing required field"),
    (with_(LM_OK, context=["a"]), "context", "expected a string, got array"),
    (with_(LM_OK, continuation=DROP), "continuation", "missing required field"),
    (with_(LM_OK, continuation=""), "continuation", "must not be empty"),
    (with_(LM_OK, continuation={"a": 1}), "continuation", "expected a string, got object"),
    (with_(LM_OK, category=False), "category", "expected a string or null, got boolean"),
    ('"just a string"', None, "expected a JSON object, got string"),
]


@pytest.mark.parametrize(("bad", "field", "problem"), LM_ERRORS)
def test_language_modeling_errors(tmp_path, bad, field, problem):
    path = write(tmp_path / "lm.jsonl", jsonl(LM_OK, bad))
    with pytest.raises(DataError) as exc:
        load_language_modeling(path)
    assert_data_error(exc.value, path, 2, field, problem)


@pytest.mark.parametrize(
    ("loader", "good"),
    [(load_language_modeling, LM_OK), (load_multiple_choice, MC_OK), (load_hellaswag, HS_OK)],
)
def test_jsonl_non_utf8_reports_line(tmp_path, loader, good):
    raw = jsonl(good, good).encode() + b'{"context": "caf\xe9"}\n'
    path = write(tmp_path / "bad.jsonl", raw)
    with pytest.raises(DataError) as exc:
        loader(path)
    assert_data_error(exc.value, path, 3, None, "not valid UTF-8 (byte 0xe9 at column 17)")


@pytest.mark.parametrize("loader", [load_language_modeling, load_multiple_choice, load_hellaswag])
@pytest.mark.parametrize("content", ["", "\n", "  \n\r\n\t\n"])
def test_jsonl_no_rows(tmp_path, loader, content):
    path = write(tmp_path / "empty.jsonl", content)
    with pytest.raises(DataError) as exc:
        loader(path)
    assert_data_error(exc.value, path, None, None, "no rows")


@pytest.mark.parametrize("loader", [load_language_modeling, load_multiple_choice, load_hellaswag])
def test_jsonl_missing_file_and_directory(tmp_path, loader):
    with pytest.raises(DataFileNotFound) as exc:
        loader(tmp_path / "missing.jsonl")
    assert "'missing.jsonl' not found" in str(exc.value)
    assert str(tmp_path) in str(exc.value)
    (tmp_path / "adir.jsonl").mkdir()
    with pytest.raises(DataError) as exc2:
        loader(tmp_path / "adir.jsonl")
    assert_data_error(exc2.value, tmp_path / "adir.jsonl", None, None, "cannot read file")


def test_jsonl_line_with_control_char_is_not_blank(tmp_path):
    path = write(tmp_path / "mc.jsonl", jsonl(MC_OK) + "\x1c\n")
    with pytest.raises(DataError) as exc:
        load_multiple_choice(path)
    assert_data_error(exc.value, path, 2, None, "invalid JSON")


def test_jsonl_deeply_nested_json_is_data_error(tmp_path):
    path = write(tmp_path / "mc.jsonl", "[" * 200_000 + "\n")
    with pytest.raises(DataError) as exc:
        load_multiple_choice(path)
    assert_data_error(exc.value, path, 1, None, "invalid JSON")


# ---------------------------------------------------------------- HellaSwag


def test_load_hellaswag(tmp_path):
    wikihow = {
        "ind": 4, "ctx": "x", "activity_label": "Home", "ctx_a": "[header] How to", "ctx_b": "", "split": "val",
        "split_type": "zeroshot", "label": "1", "endings": ["e0", "e1"], "source_id": "wikihow~1",
    }
    no_optional = with_(HS_OK, ind=DROP, split_type=None, label=0)
    path = write(tmp_path / "hellaswag_val.jsonl", jsonl(HS_OK, wikihow, no_optional))
    assert load_hellaswag(path) == [
        HellaSwagDoc(
            "Roof shingle removal", "A man is sitting on a roof.", "he", ("a", "b", "c", "d"), 3, 24, "indomain"
        ),
        HellaSwagDoc("Home", "[header] How to", "", ("e0", "e1"), 1, 4, "zeroshot"),
        HellaSwagDoc("Roof shingle removal", "A man is sitting on a roof.", "he", ("a", "b", "c", "d"), 0, None, None),
    ]


HS_ERRORS = [
    (with_(HS_OK, activity_label=DROP), "activity_label", "missing required field"),
    (with_(HS_OK, ctx_a=1), "ctx_a", "expected a string, got number"),
    (with_(HS_OK, ctx_b=DROP), "ctx_b", "missing required field"),
    (with_(HS_OK, endings=[]), "endings", "list is empty"),
    (with_(HS_OK, endings="abcd"), "endings", "expected a list of strings, got string"),
    (with_(HS_OK, endings=["a", None]), "endings[1]", "expected a string, got null"),
    (with_(HS_OK, label=DROP), "label", "missing required field"),
    (with_(HS_OK, label=4), "label", "4 is out of range for 4 endings (expected 0..3)"),
    (with_(HS_OK, label="4"), "label", "4 is out of range for 4 endings"),
    (with_(HS_OK, label=""), "label", "is empty (test-split rows have no label"),
    (with_(HS_OK, label="x"), "label", "expected an integer or a numeric string, got string 'x'"),
    (with_(HS_OK, label="-1"), "label", "expected an integer or a numeric string, got string '-1'"),
    (with_(HS_OK, label="\u00b2"), "label", "expected an integer or a numeric string"),
    (with_(HS_OK, label="9" * 5000), "label", "is out of range"),
    (with_(HS_OK, label=True), "label", "expected an integer or a numeric string, got boolean True"),
    (with_(HS_OK, label=2.0), "label", "got number 2.0"),
    (with_(HS_OK, ind="24"), "ind", "expected an integer, got string '24'"),
    (with_(HS_OK, ind=False), "ind", "expected an integer, got boolean False"),
    (with_(HS_OK, split_type=1), "split_type", "expected a string or null, got number"),
]


@pytest.mark.parametrize(("bad", "field", "problem"), HS_ERRORS)
def test_hellaswag_errors(tmp_path, bad, field, problem):
    path = write(tmp_path / "hellaswag_val.jsonl", jsonl(HS_OK, HS_OK, bad))
    with pytest.raises(DataError) as exc:
        load_hellaswag(path)
    assert_data_error(exc.value, path, 3, field, problem)


# ---------------------------------------------------------------- MMLU


def mmlu_file(folder: Path, content: str | bytes, subject: str = "abstract_algebra", split: str = "test") -> Path:
    return write(folder / split / f"{subject}_{split}.csv", content)


def test_mmlu_subjects_list():
    assert len(MMLU_SUBJECTS) == 57
    assert list(MMLU_SUBJECTS) == sorted(set(MMLU_SUBJECTS))
    assert {"abstract_algebra", "professional_law", "high_school_government_and_politics"} <= set(MMLU_SUBJECTS)


def test_load_mmlu_subject(tmp_path):
    mmlu_file(
        tmp_path,
        '"Find the degree, please.",0,4,2,6,B\r\n'
        '"A question\nover two lines",x,"0,1","0,4",0,D\r\n'
        "\r\n"
        "Q3,a,b,c,d,A",
        subject="anatomy",
        split="dev",
    )
    assert load_mmlu_subject(tmp_path, "anatomy", "dev") == [
        MMLUDoc("Find the degree, please.", ("0", "4", "2", "6"), 1, "anatomy"),
        MMLUDoc("A question\nover two lines", ("x", "0,1", "0,4", "0"), 3, "anatomy"),
        MMLUDoc("Q3", ("a", "b", "c", "d"), 0, "anatomy"),
    ]


# first row spans lines 1-2, so the bad row starts on line 3
MMLU_ERRORS = [
    ("Q,a,b,c,d", None, "expected 6 fields (question, A, B, C, D, answer), got 5"),
    ("Q,a,b,c,d,A,extra", None, "expected 6 fields (question, A, B, C, D, answer), got 7"),
    ("   ,a,b,c,d,E", "answer", "expected one of A, B, C, D, got 'E'"),
    ("Q,a,b,c,d,b", "answer", "expected one of A, B, C, D, got 'b'"),
    ("Q,a,b,c,d, A", "answer", "got ' A'"),
    ("Q,a,b,c,d,", "answer", "is empty"),
    (",a,b,c,d,A", "question", "is empty"),
    ('Q,"",b,c,d,A', "A", "is empty"),
    ("Q,a,b,c,,A", "D", "is empty"),
    ("Q,a,b\x00,c,d,A", "B", "contains a NUL character"),
    ('"multi\nline",a,b,c,d,Z', "answer", "got 'Z'"),
]


@pytest.mark.parametrize(("bad", "field", "problem"), MMLU_ERRORS)
def test_mmlu_errors(tmp_path, bad, field, problem):
    path = mmlu_file(tmp_path, '"two\nlines",a,b,c,d,A\n' + bad + "\nQ,a,b,c,d,C\n")
    with pytest.raises(DataError) as exc:
        load_mmlu_subject(tmp_path, "abstract_algebra", "test")
    assert_data_error(exc.value, path, 3, field, problem)


def test_mmlu_non_utf8_reports_line(tmp_path):
    path = mmlu_file(tmp_path, b"Q,a,b,c,d,A\nQ2,a,b,c,d,A\nQ\xff,a,b,c,d,A\n")
    with pytest.raises(DataError) as exc:
        load_mmlu_subject(tmp_path, "abstract_algebra", "test")
    assert_data_error(exc.value, path, 3, None, "not valid UTF-8 (byte 0xff)")


def test_mmlu_csv_syntax_error(tmp_path):
    path = mmlu_file(tmp_path, "Q,a,b,c,d,A\nQ2,a,b,c,d,A\nQ3 is far too long,a,b,c,d,A\n")
    old = csv.field_size_limit(10)
    try:
        with pytest.raises(DataError) as exc:
            load_mmlu_subject(tmp_path, "abstract_algebra", "test")
    finally:
        csv.field_size_limit(old)
    assert_data_error(exc.value, path, 3, None, "CSV syntax error: field larger than field limit")


@pytest.mark.parametrize("content", ["", "\n\n", "\r\n"])
def test_mmlu_no_rows(tmp_path, content):
    path = mmlu_file(tmp_path, content)
    with pytest.raises(DataError) as exc:
        load_mmlu_subject(tmp_path, "abstract_algebra", "test")
    assert_data_error(exc.value, path, None, None, "no rows")


def test_mmlu_missing_file(tmp_path):
    with pytest.raises(DataFileNotFound) as exc:
        load_mmlu_subject(tmp_path, "anatomy", "val")
    msg = str(exc.value)
    assert exc.value.expected == "val/anatomy_val.csv"
    assert "'val/anatomy_val.csv' not found" in msg
    assert str(tmp_path) in msg


def test_mmlu_unknown_subject_suggests_names(tmp_path):
    with pytest.raises(DataError) as exc:
        load_mmlu_subject(tmp_path, "abstract_algebr", "test")
    expected = "unknown MMLU subject 'abstract_algebr'; did you mean abstract_algebra"
    assert_data_error(exc.value, tmp_path, None, "subject", expected)
    with pytest.raises(DataError) as exc2:
        load_mmlu_subject(tmp_path, "zzzz", "test")
    assert_data_error(exc2.value, tmp_path, None, "subject", "see MMLU_SUBJECTS for the 57 names")


def test_mmlu_unknown_split(tmp_path):
    with pytest.raises(DataError) as exc:
        load_mmlu_subject(tmp_path, "anatomy", "train")
    assert_data_error(exc.value, tmp_path, None, "split", "unknown MMLU split 'train'; expected one of dev, val, test")


# ---------------------------------------------------------------- real data files


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """$EVALHARNESS_DATA_DIR, else <repo>/../shared/data; fails (not skips) when neither exists."""
    from_env = os.environ.get("EVALHARNESS_DATA_DIR")
    candidate = Path(from_env) if from_env else REPO.parent / "shared" / "data"
    if not candidate.is_dir():
        pytest.fail(
            f"real benchmark data not found at {candidate}: set EVALHARNESS_DATA_DIR to the data directory "
            "(it must hold llm-foundry/, hellaswag/ and mmlu/)",
            pytrace=False,
        )
    return candidate


@pytest.mark.parametrize(
    ("relative", "rows"),
    [
        ("llm-foundry/lambada_openai.jsonl", 5153),
        ("llm-foundry/jeopardy_all.jsonl", 2117),
    ],
)
def test_real_language_modeling(real_data_dir, relative, rows):
    docs = load_language_modeling(data_file(real_data_dir, relative))
    assert len(docs) == rows


def test_real_lambada_first_row(real_data_dir):
    first = load_language_modeling(data_file(real_data_dir, "llm-foundry/lambada_openai.jsonl"))[0]
    assert first.context.startswith("In my palm is a clear stone")
    assert first.context.endswith("I don't care about")
    assert first.continuation == "signs"
    assert first.category is None


def test_real_jeopardy_categories(real_data_dir):
    docs = load_language_modeling(data_file(real_data_dir, "llm-foundry/jeopardy_all.jsonl"))
    counts: dict[str, int] = {}
    for doc in docs:
        assert doc.category is not None
        counts[doc.category] = counts.get(doc.category, 0) + 1
    assert counts == {
        "literature": 490, "science": 476, "american_history": 413, "world_history": 373, "word_origins": 365,
    }
    assert docs[0].continuation == "Admiral Richard Byrd"


@pytest.mark.parametrize(
    ("relative", "rows", "n_choices"),
    [("llm-foundry/piqa.jsonl", 1838, 2), ("llm-foundry/hellaswag.jsonl", 10042, 4)],
)
def test_real_multiple_choice(real_data_dir, relative, rows, n_choices):
    docs = load_multiple_choice(data_file(real_data_dir, relative))
    assert len(docs) == rows
    assert all(len(d.choices) == n_choices for d in docs)


def test_real_piqa_gold_counts(real_data_dir):
    docs = load_multiple_choice(data_file(real_data_dir, "llm-foundry/piqa.jsonl"))
    assert sum(d.gold == 0 for d in docs) == 910
    assert docs[0].query == "Question: How do I ready a guinea pig cage for it's new occupants?\n"


def test_real_hellaswag_val(real_data_dir):
    docs = load_hellaswag(data_file(real_data_dir, "hellaswag/hellaswag_val.jsonl"))
    assert len(docs) == 10042
    assert docs[0] == HellaSwagDoc(
        "Roof shingle removal",
        "A man is sitting on a roof.",
        "he",
        ("is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
         "is holding a rubik's cube.", "starts pulling up roofing on a roof."),
        3,
        24,
        "indomain",
    )
    assert [sum(d.label == i for d in docs) for i in range(4)] == [2515, 2485, 2584, 2458]
    assert sum(d.split_type == "zeroshot" for d in docs) == 5041


def test_real_mmlu_abstract_algebra(real_data_dir):
    docs = load_mmlu_subject(real_data_dir / "mmlu", "abstract_algebra", "test")
    assert len(docs) == 100
    assert docs[0] == MMLUDoc(
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.",
        ("0", "4", "2", "6"),
        1,
        "abstract_algebra",
    )


def test_real_mmlu_totals(real_data_dir):
    folder = real_data_dir / "mmlu"
    test = {s: len(load_mmlu_subject(folder, s, "test")) for s in MMLU_SUBJECTS}
    assert sum(test.values()) == 14042
    assert test["professional_law"] == 1534 and test["miscellaneous"] == 783
    assert all(len(load_mmlu_subject(folder, s, "dev")) == 5 for s in MMLU_SUBJECTS)
    assert sum(len(load_mmlu_subject(folder, s, "val")) for s in MMLU_SUBJECTS) == 1531
    assert sorted(p.name.removesuffix("_test.csv") for p in (folder / "test").glob("*_test.csv")) == list(MMLU_SUBJECTS)


# ---------------------------------------------------------------- property tests: only DataError escapes

json_scalars = st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["context", "continuation", "category", "query", "choices", "gold",
          "activity_label", "ctx_a", "ctx_b", "endings", "label", "ind", "split_type"]
field_values = (
    json_values
    | st.lists(st.text(max_size=5), max_size=5)
    | st.integers(-2, 5)
    | st.from_regex(r"[0-9]{1,2}", fullmatch=True)
)
rows_with_known_fields = st.dictionaries(st.sampled_from(FIELDS), field_values)


def _near(base: dict) -> st.SearchStrategy[dict]:
    """A valid row with at most one field replaced by a random value and at most one field dropped."""
    keys = st.sampled_from(sorted(base))
    return st.tuples(st.dictionaries(keys, field_values, max_size=1), st.sets(keys, max_size=1)).map(
        lambda t: {k: v for k, v in {**base, **t[0]}.items() if k not in t[1]}
    )


near_valid_rows = _near(LM_OK) | _near(MC_OK) | _near(HS_OK) | st.sampled_from([LM_OK, MC_OK, HS_OK])
same_kind_rows = st.sampled_from([LM_OK, MC_OK, HS_OK]).flatmap(lambda b: st.lists(_near(b) | st.just(b), max_size=5))
json_lines = (same_kind_rows | st.lists(near_valid_rows | json_values | rows_with_known_fields, max_size=5)).map(
    lambda rows: "\n".join(json.dumps(r) for r in rows).encode("utf-8")
)
csv_cells = st.text(max_size=6) | st.sampled_from(["A", "B", "C", "D", "E", "0", ""])
csv_rows = st.lists(
    st.lists(csv_cells, max_size=8) | st.tuples(*[st.text(min_size=1, max_size=6)] * 5, csv_cells).map(list),
    max_size=5,
)


def _csv_bytes(rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue().encode("utf-8")


file_contents = st.binary(max_size=200) | json_lines | csv_rows.map(_csv_bytes)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prop")


def _check_loaded(docs: list) -> None:
    assert docs
    for doc in docs:
        choices = getattr(doc, "choices", None) or getattr(doc, "endings", None)
        gold = getattr(doc, "gold", getattr(doc, "label", None))
        if choices is not None:
            assert isinstance(choices, tuple) and all(isinstance(c, str) for c in choices)
            assert type(gold) is int and 0 <= gold < len(choices)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(content=file_contents)
def test_loaders_raise_only_data_errors(scratch, content):
    path = write(scratch / "f.jsonl", content)
    mmlu_file(scratch / "mmlu", content)
    loaders = [
        lambda: load_language_modeling(path),
        lambda: load_multiple_choice(path),
        lambda: load_hellaswag(path),
        lambda: load_mmlu_subject(scratch / "mmlu", "abstract_algebra", "test"),
    ]
    for load in loaders:
        try:
            docs = load()
        except (DataError, DataFileNotFound) as e:
            assert isinstance(e, EvalHarnessError) and str(e)
        else:
            _check_loaded(docs)


@settings(max_examples=50, deadline=None)
@given(rows=st.lists(
    st.builds(
        lambda q, ch, g, cat: MCDoc(q, tuple(ch), g % len(ch), cat),
        st.text(), st.lists(st.text(min_size=1), min_size=1, max_size=5), st.integers(0, 100), st.none() | st.text(),
    ),
    min_size=1, max_size=5,
))
def test_multiple_choice_round_trip(scratch, rows):
    lines = []
    for d in rows:
        obj = {"query": d.query, "choices": list(d.choices), "gold": d.gold}
        if d.category is not None:
            obj["category"] = d.category
        lines.append(json.dumps(obj, ensure_ascii=False))
    path = write(scratch / "rt.jsonl", "\n".join(lines) + "\n")
    assert load_multiple_choice(path) == rows
