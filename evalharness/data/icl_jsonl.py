"""Loaders for LLM Foundry ICL jsonl files (language modeling, multiple choice, schema, generation with answers).

File rules (shared with the HellaSwag loader):
- UTF-8, one JSON object per line; a UTF-8 byte-order mark at the start is ignored.
- Fully blank lines (only spaces, tabs, CR) are not rows and are skipped; every other line is a row.
- Bad rows are never skipped: the first problem raises DataError naming file, 1-based line and field.
- Extra fields are ignored; duplicate keys in one object are an error; a file with no rows is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalharness.errors import DataError, DataFileNotFound

__all__ = [
    "LMDoc",
    "MCDoc",
    "QADoc",
    "SchemaDoc",
    "load_generation_with_answers",
    "load_language_modeling",
    "load_multiple_choice",
    "load_schema",
    "read_bytes",
    "iter_json_objects",
    "get_str",
    "get_optional_str",
    "get_int",
    "get_optional_int",
    "get_str_list",
    "check_index",
    "describe",
    "no_rows_error",
]

_BOM = b"\xef\xbb\xbf"
_JSON_BLANK = " \t\r"


@dataclass(frozen=True)
class LMDoc:
    """A language-modeling row: score `continuation` after `context`."""

    context: str
    continuation: str
    category: str | None


@dataclass(frozen=True)
class MCDoc:
    """A multiple-choice row: `choices[gold]` is the right continuation of `query`."""

    query: str
    choices: tuple[str, ...]
    gold: int
    category: str | None


@dataclass(frozen=True)
class SchemaDoc:
    """A schema row (LLM Foundry): `continuation` is scored after each of `context_options`; `gold` is the right one."""

    context_options: tuple[str, ...]
    continuation: str
    gold: int
    category: str | None


@dataclass(frozen=True)
class QADoc:
    """A generation-with-answers row (LLM Foundry): the model answers `context`; `answer` or any of `aliases` is right.

    chain_of_thought: the worked solution shown before the answer in few-shot examples ("" when the file has none).
    """

    context: str
    answer: str
    aliases: tuple[str, ...]
    chain_of_thought: str
    category: str | None


# ---------------------------------------------------------------- reading


def read_bytes(path: Path) -> bytes:
    """The file's bytes; a missing file raises DataFileNotFound, other OS errors DataError."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataFileNotFound(path.name, path.parent) from None
    except OSError as e:
        raise DataError(path, None, None, f"cannot read file: {e.strerror or e}") from None


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


def _json_kind(value: Any) -> str:
    """The JSON type name of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def describe(value: Any) -> str:
    """JSON type name plus a short repr for scalars, e.g. `number 1.5`, for messages."""
    kind = _json_kind(value)
    if kind in ("array", "object", "null"):
        return kind
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def iter_json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for every non-blank line; DataError on any bad line."""
    raw = read_bytes(path)
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            bad = line[e.start]
            raise DataError(path, number, None, f"not valid UTF-8 (byte 0x{bad:02x} at column {e.start + 1})") from None
        if not text.strip(_JSON_BLANK):
            continue
        try:
            value = json.loads(text, object_pairs_hook=_no_duplicates)
        except _DuplicateKey as e:
            raise DataError(path, number, str(e), "key appears twice in the object") from None
        except json.JSONDecodeError as e:
            raise DataError(path, number, None, f"invalid JSON: {e.msg} at column {e.colno}") from None
        except (ValueError, RecursionError) as e:
            raise DataError(path, number, None, f"invalid JSON: {e}") from None
        if not isinstance(value, dict):
            raise DataError(path, number, None, f"expected a JSON object, got {_json_kind(value)}")
        yield number, value


# ---------------------------------------------------------------- fields


def _valid_str(path: Path, line: int, field: str, value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(path, line, field, "string contains an unpaired surrogate escape") from None
    return value


def get_str(path: Path, line: int, obj: dict[str, Any], field: str, *, allow_empty: bool = True) -> str:
    """Required string field."""
    if field not in obj:
        raise DataError(path, line, field, "missing required field")
    value = obj[field]
    if not isinstance(value, str):
        raise DataError(path, line, field, f"expected a string, got {_json_kind(value)}")
    if not allow_empty and value == "":
        raise DataError(path, line, field, "must not be empty")
    return _valid_str(path, line, field, value)


def get_optional_str(path: Path, line: int, obj: dict[str, Any], field: str) -> str | None:
    """Optional string field; absent or null gives None."""
    value = obj.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(path, line, field, f"expected a string or null, got {_json_kind(value)}")
    return _valid_str(path, line, field, value)


def get_int(path: Path, line: int, obj: dict[str, Any], field: str) -> int:
    """Required integer field (booleans and floats are rejected)."""
    if field not in obj:
        raise DataError(path, line, field, "missing required field")
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(path, line, field, f"expected an integer, got {describe(value)}")
    return value


def get_optional_int(path: Path, line: int, obj: dict[str, Any], field: str) -> int | None:
    """Optional integer field; absent or null gives None."""
    if obj.get(field) is None:
        return None
    return get_int(path, line, obj, field)


def get_str_list(path: Path, line: int, obj: dict[str, Any], field: str) -> tuple[str, ...]:
    """Required non-empty list of non-empty strings."""
    if field not in obj:
        raise DataError(path, line, field, "missing required field")
    value = obj[field]
    if not isinstance(value, list):
        raise DataError(path, line, field, f"expected a list of strings, got {_json_kind(value)}")
    if not value:
        raise DataError(path, line, field, "list is empty")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise DataError(path, line, f"{field}[{i}]", f"expected a string, got {_json_kind(item)}")
        if item == "":
            raise DataError(path, line, f"{field}[{i}]", "must not be empty")
        _valid_str(path, line, f"{field}[{i}]", item)
    return tuple(value)


def check_index(path: Path, line: int, field: str, value: int, count: int, of: str) -> int:
    """`value` must index a list of `count` items called `of`."""
    if not 0 <= value < count:
        raise DataError(path, line, field, f"{value} is out of range for {count} {of} (expected 0..{count - 1})")
    return value


def no_rows_error(path: Path) -> DataError:
    return DataError(path, None, None, "no rows (the file is empty or has only blank lines)")


# ---------------------------------------------------------------- loaders


def load_language_modeling(path: str | Path) -> list[LMDoc]:
    """Rows `{"context": str, "continuation": non-empty str, "category"?: str}`."""
    path = Path(path)
    docs = []
    for line, obj in iter_json_objects(path):
        context = get_str(path, line, obj, "context")
        continuation = get_str(path, line, obj, "continuation", allow_empty=False)
        category = get_optional_str(path, line, obj, "category")
        docs.append(LMDoc(context, continuation, category))
    if not docs:
        raise no_rows_error(path)
    return docs


def load_multiple_choice(path: str | Path) -> list[MCDoc]:
    """Rows `{"query": str, "choices": [non-empty str, ...], "gold": int index, "category"?: str}`."""
    path = Path(path)
    docs = []
    for line, obj in iter_json_objects(path):
        query = get_str(path, line, obj, "query")
        choices = get_str_list(path, line, obj, "choices")
        gold = check_index(path, line, "gold", get_int(path, line, obj, "gold"), len(choices), "choices")
        category = get_optional_str(path, line, obj, "category")
        docs.append(MCDoc(query, choices, gold, category))
    if not docs:
        raise no_rows_error(path)
    return docs


def load_schema(path: str | Path) -> list[SchemaDoc]:
    """Rows `{"context_options": [non-empty str, ...], "continuation": non-empty str, "gold": int index, "category"?: str}`."""
    path = Path(path)
    docs = []
    for line, obj in iter_json_objects(path):
        options = get_str_list(path, line, obj, "context_options")
        continuation = get_str(path, line, obj, "continuation", allow_empty=False)
        gold = check_index(path, line, "gold", get_int(path, line, obj, "gold"), len(options), "context options")
        category = get_optional_str(path, line, obj, "category")
        docs.append(SchemaDoc(options, continuation, gold, category))
    if not docs:
        raise no_rows_error(path)
    return docs


def load_generation_with_answers(path: str | Path) -> list[QADoc]:
    """Rows `{"context": str, "answer": str, "aliases"?: [str, ...], "chain_of_thought"?: str, "category"?: str}`."""
    path = Path(path)
    docs = []
    for line, obj in iter_json_objects(path):
        context = get_str(path, line, obj, "context")
        answer = get_str(path, line, obj, "answer")
        aliases: tuple[str, ...] = ()
        if obj.get("aliases") is not None:
            if obj["aliases"] == []:
                aliases = ()
            else:
                aliases = get_str_list(path, line, obj, "aliases")
        cot = get_optional_str(path, line, obj, "chain_of_thought") or ""
        category = get_optional_str(path, line, obj, "category")
        docs.append(QADoc(context, answer, aliases, cot, category))
    if not docs:
        raise no_rows_error(path)
    return docs
