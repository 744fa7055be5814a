"""Errors that evalharness reports to users as one clear line."""

from __future__ import annotations

from pathlib import Path


class EvalHarnessError(Exception):
    """Base class: a problem with the user's input or environment, shown without a traceback."""

    every_rank_knows = False  # every rank of a multi-process run raises the same error: one line per machine


class ConfigError(EvalHarnessError):
    """A bad command-line argument, task spec, suite, preset or setting."""


class ModelLoadError(EvalHarnessError):
    """A model or tokenizer that cannot be found or loaded."""


class DataFileNotFound(EvalHarnessError):
    """A data file the task needs is missing from the data directory."""

    def __init__(self, expected: str, looked_in: Path | str | None, hint: str = "") -> None:
        self.expected = expected
        self.looked_in = looked_in
        where = f" in data directory {looked_in}" if looked_in is not None else ""
        msg = f"data file {expected!r} not found{where}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class DataError(EvalHarnessError):
    """A malformed row in a data file: names the file, the line (1-based) and the field."""

    def __init__(self, path: Path | str, line: int | None, field: str | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        loc = self.path if line is None else f"{self.path}:{line}"
        fld = f" field {field!r}:" if field else ""
        super().__init__(f"{loc}:{fld} {problem}")


class CodeExecutionNotAllowed(EvalHarnessError):
    """A task would run model-written code, and the user has not allowed it."""

    def __init__(self) -> None:
        super().__init__(
            "this task executes model-generated code; it runs in a sandbox, but untrusted code can still do "
            "harm: pass --allow-code-execution (allow_code_execution=True in the Python API) to allow it"
        )


class SandboxUnavailable(EvalHarnessError):
    """The code-execution sandbox cannot run on this machine."""


class InputTooLong(EvalHarnessError):
    """A request whose continuation (or whose generated tokens and one prompt token) exceeds the backend's maximum
    input length: its score would be meaningless. `index`: the request's place in the list the backend was given."""

    def __init__(self, index: int, needed: int, max_length: int, what: str) -> None:
        self.index = index
        self.needed = needed
        self.max_length = max_length
        self.what = what
        super().__init__(f"request {index}: {what} needs {needed} tokens, more than the maximum input length "
                         f"{max_length} (--max-seq-len)")

    def at(self, index: int) -> InputTooLong:
        """The same error for the request's index in another list."""
        return InputTooLong(index, self.needed, self.max_length, self.what)

    def for_item(self, task: str, doc_id: int, subset: str | None) -> ConfigError:
        """The user's one line: the task and item, what they need, what to pass."""
        item = f"item {doc_id}" + (f" of {subset}" if subset else "")
        return ConfigError(f"--max-seq-len {self.max_length} is too short for task {task!r}: {item} needs "
                           f"{self.needed} tokens ({self.what}, the task's longest); pass --max-seq-len {self.needed} "
                           "or more, or leave it out (the model's own maximum)")
