"""Data-file loaders: locate the data directory and parse each benchmark's files into frozen docs."""

from __future__ import annotations

from evalharness.data.hellaswag import HellaSwagDoc, load_hellaswag
from evalharness.data.icl_jsonl import (
    LMDoc,
    MCDoc,
    QADoc,
    SchemaDoc,
    load_generation_with_answers,
    load_language_modeling,
    load_multiple_choice,
    load_schema,
)
from evalharness.data.locate import DATA_DIR_ENV, data_file, resolve_data_dir
from evalharness.data.mmlu import MMLU_SPLITS, MMLU_SUBJECTS, MMLUDoc, load_mmlu_subject

__all__ = [
    "DATA_DIR_ENV",
    "HellaSwagDoc",
    "LMDoc",
    "MCDoc",
    "MMLUDoc",
    "MMLU_SPLITS",
    "MMLU_SUBJECTS",
    "QADoc",
    "SchemaDoc",
    "data_file",
    "load_generation_with_answers",
    "load_hellaswag",
    "load_language_modeling",
    "load_mmlu_subject",
    "load_multiple_choice",
    "load_schema",
    "resolve_data_dir",
]
