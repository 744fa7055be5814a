"""Loader for the original MMLU release CSVs (hendrycks/test `data/{dev,val,test}/<subject>_<split>.csv`).

Each file is header-less CSV with exactly 6 fields per row: question, A, B, C, D, answer letter (A-D).
Cells stay strings (e.g. `0`); empty cells are errors; blank lines are skipped.
Errors name the file, the line where the row starts and the field.
"""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass
from pathlib import Path

from evalharness.data.icl_jsonl import read_bytes
from evalharness.errors import DataError, DataFileNotFound

MMLU_SPLITS: tuple[str, ...] = ("dev", "val", "test")
MMLU_FIELDS: tuple[str, ...] = ("question", "A", "B", "C", "D", "answer")
_LETTERS = "ABCD"
_BOM = "\ufeff"

MMLU_SUBJECTS: tuple[str, ...] = (
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
)


@dataclass(frozen=True)
class MMLUDoc:
    """One MMLU question: `choices[gold]` is correct (gold 0..3 for A..D)."""

    question: str
    choices: tuple[str, str, str, str]
    gold: int
    subject: str


def _check_names(folder: Path, subject: str, split: str) -> None:
    """DataError for an unknown subject (with the nearest names) or split."""
    if subject not in MMLU_SUBJECTS:
        close = difflib.get_close_matches(subject, MMLU_SUBJECTS, n=3)
        hint = f"did you mean {', '.join(close)}?" if close else "see MMLU_SUBJECTS for the 57 names"
        raise DataError(folder, None, "subject", f"unknown MMLU subject {subject!r}; {hint}")
    if split not in MMLU_SPLITS:
        expected = ", ".join(MMLU_SPLITS)
        raise DataError(folder, None, "split", f"unknown MMLU split {split!r}; expected one of {expected}")


def _decode(path: Path, raw: bytes) -> str:
    """UTF-8 text (a leading BOM dropped); DataError with the line of the first bad byte."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(path, line, None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x})") from None
    return text[1:] if text.startswith(_BOM) else text


def _row_doc(path: Path, line: int, row: list[str], subject: str) -> MMLUDoc:
    if len(row) != len(MMLU_FIELDS):
        raise DataError(path, line, None, f"expected 6 fields ({', '.join(MMLU_FIELDS)}), got {len(row)}")
    for field, cell in zip(MMLU_FIELDS, row):
        if cell == "":
            raise DataError(path, line, field, "is empty")
        if "\x00" in cell:
            raise DataError(path, line, field, "contains a NUL character")
    answer = row[5]
    if len(answer) != 1 or answer not in _LETTERS:
        raise DataError(path, line, "answer", f"expected one of A, B, C, D, got {answer[:20]!r}")
    question, a, b, c, d = row[:5]
    return MMLUDoc(question, (a, b, c, d), _LETTERS.index(answer), subject)


def load_mmlu_subject(folder: str | Path, subject: str, split: str) -> list[MMLUDoc]:
    """Read `<folder>/<split>/<subject>_<split>.csv` (split: dev, val or test)."""
    folder = Path(folder)
    _check_names(folder, subject, split)
    relative = f"{split}/{subject}_{split}.csv"
    path = folder / relative
    if not path.is_file():
        layout = "<folder>/{dev,val,test}/<subject>_<split>.csv"
        raise DataFileNotFound(relative, folder, hint=f"expected the MMLU release layout {layout}")
    reader = csv.reader(io.StringIO(_decode(path, read_bytes(path)), newline=""))
    docs = []
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(path, start, None, f"CSV syntax error: {e}") from None
        end = reader.line_num
        if not row or (len(row) == 1 and row[0].strip(" \t\r") == ""):
            continue
        docs.append(_row_doc(path, start, row, subject))
    if not docs:
        raise DataError(path, None, None, "no rows (the file is empty or has only blank lines)")
    return docs
