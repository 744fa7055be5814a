"""Loader for the original HellaSwag validation jsonl (rowanz/hellaswag `hellaswag_val.jsonl`).

Same file rules as the ICL loaders (see icl_jsonl): blank lines skipped, bad rows raise DataError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness.data.icl_jsonl import (
    check_index,
    describe,
    get_optional_int,
    get_optional_str,
    get_str,
    get_str_list,
    iter_json_objects,
    no_rows_error,
)
from evalharness.errors import DataError

_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class HellaSwagDoc:
    """One HellaSwag row: `endings[label]` is the right ending of `ctx_a` + `ctx_b`."""

    activity_label: str
    ctx_a: str
    ctx_b: str
    endings: tuple[str, ...]
    label: int
    ind: int | None
    split_type: str | None


def _label(path: Path, line: int, obj: dict[str, Any]) -> int:
    """`label` as an int; accepts an integer or a string of ASCII digits."""
    if "label" not in obj:
        raise DataError(path, line, "label", "missing required field")
    value = obj["label"]
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        if value == "":
            raise DataError(path, line, "label", "is empty (test-split rows have no label; use the validation file)")
        if _DIGITS.fullmatch(value):
            if len(value) > 9:
                raise DataError(path, line, "label", f"{describe(value)} is out of range")
            return int(value)
    raise DataError(path, line, "label", f"expected an integer or a numeric string, got {describe(value)}")


def load_hellaswag(path: str | Path) -> list[HellaSwagDoc]:
    """Rows with activity_label, ctx_a, ctx_b (str), endings (non-empty list of str), label; ind/split_type optional."""
    path = Path(path)
    docs = []
    for line, obj in iter_json_objects(path):
        activity_label = get_str(path, line, obj, "activity_label")
        ctx_a = get_str(path, line, obj, "ctx_a")
        ctx_b = get_str(path, line, obj, "ctx_b")
        endings = get_str_list(path, line, obj, "endings")
        label = check_index(path, line, "label", _label(path, line, obj), len(endings), "endings")
        ind = get_optional_int(path, line, obj, "ind")
        split_type = get_optional_str(path, line, obj, "split_type")
        docs.append(HellaSwagDoc(activity_label, ctx_a, ctx_b, endings, label, ind, split_type))
    if not docs:
        raise no_rows_error(path)
    return docs
