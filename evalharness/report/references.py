"""Published reference scores: loading (the shipped CSV plus user files), validation and selection."""

from __future__ import annotations

import csv
import difflib
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..resources import resource_dir
from .aliases import resolve_alias
from .protocol import AGGREGATES, Protocol

REQUIRED = ("model", "task", "metric", "num_fewshot", "value", "source")
UNKNOWN_SHOTS = ("", "?", "unknown")  # num_fewshot None: not stated, or mixed (LLM Foundry's gauntlet composites)
OPTIONAL = ("display_name", "subset", "aggregate", "harness", "note", "reported_as")
FRACTION_METRICS = ("acc", "pass@", "exact_match", "em", "f1")


@dataclass(frozen=True)
class Reference:
    """One published score, with the protocol it was obtained under and its citation."""

    model: str
    display_name: str
    task: str
    subset: str
    metric: str
    aggregate: str | None
    num_fewshot: int | None
    value: float
    harness: str
    note: str
    source: str

    @property
    def protocol(self) -> Protocol:
        return Protocol(self.metric, self.aggregate, self.num_fewshot, frozenset({self.harness}))


def builtin_reference_file() -> Path:
    return resource_dir("reports") / "published_scores.csv"


def _parse_row(row: dict[str, str | None], where: str) -> Reference:
    def field(name: str) -> str:
        return (row.get(name) or "").strip()

    for name in REQUIRED:
        if not field(name) and name != "num_fewshot":
            raise ConfigError(f"{where}: field {name!r} is empty")
    try:
        value = float(field("value"))
    except ValueError:
        raise ConfigError(f"{where}: field 'value': {field('value')!r} is not a number") from None
    metric = field("metric")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: field 'value' must be finite")
    if metric.startswith(FRACTION_METRICS) and not 0.0 <= value <= 1.0:
        raise ConfigError(f"{where}: field 'value': {value} is not a fraction in [0, 1] (percentages: divide by 100)")
    shots_text = field("num_fewshot")
    if shots_text in UNKNOWN_SHOTS:
        shots = None
    elif shots_text.isdigit():
        shots = int(shots_text)
    else:
        raise ConfigError(f"{where}: field 'num_fewshot': {shots_text!r} is not a whole number (or '?' or empty)")
    aggregate = field("aggregate") or None
    if aggregate is not None and aggregate not in AGGREGATES:
        raise ConfigError(f"{where}: field 'aggregate': {aggregate!r} is not one of {', '.join(AGGREGATES)}")
    return Reference(
        model=field("model").lower(), display_name=field("display_name") or field("model"), task=field("task"),
        subset=field("subset"), metric=metric, aggregate=aggregate, num_fewshot=shots, value=value,
        harness=field("harness") or "unknown", note=field("note"), source=field("source"),
    )


def read_reference_file(path: Path | str) -> list[Reference]:
    """All rows of one reference CSV; a bad file or row is a ConfigError naming the file, line and field."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(f"{path}: reference file lacks column(s) {', '.join(missing)} "
                                  f"(needs {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})")
            return [_parse_row(row, f"{path}:{reader.line_num}") for row in reader]
    except OSError as exc:
        raise ConfigError(f"reference file {path} cannot be read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc


def load_references(extra: list[Path | str] | tuple[Path | str, ...] = (), *, builtin: bool = True) -> list[Reference]:
    """The shipped published scores (unless builtin=False) followed by the user's files, in order."""
    files = ([builtin_reference_file()] if builtin else []) + [Path(p) for p in extra]
    return [ref for f in files for ref in read_reference_file(f)]


def check_models(names: list[str], references: list[Reference]) -> list[str]:
    """Lower-cased model names (an alias such as llama-33b resolved), each known to the references; else a
    ConfigError with suggestions."""
    known = list(dict.fromkeys(r.model for r in references))
    out = []
    for name in names:
        key = name.strip().lower()
        if key not in known:
            key = resolve_alias(key)
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"no published scores for model {name!r}{hint} (known: {', '.join(known)})")
        out.append(key)
    return out


def select(references: list[Reference], model: str, task: str, subset: str, row: Protocol) -> Reference | None:
    """The model's score for the task closest to the row's protocol: same shots first, then harness,
    metric and average; ties keep file order (the shipped file lists primary sources first)."""
    candidates = [r for r in references if r.model == model and r.task == task and r.subset == subset]
    if not candidates:
        return None

    def rank(ref: Reference) -> tuple[bool, ...]:
        return (ref.num_fewshot != row.num_fewshot, ref.harness not in row.harnesses, ref.metric != row.metric,
                bool(ref.aggregate and row.aggregate and ref.aggregate != row.aggregate))

    return min(candidates, key=rank)
