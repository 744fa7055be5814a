"""A program for the sandbox: solution code, test code defining `check`, and the name to check."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Program:
    """Runs as `solution + "\\n" + test + "\\n" + f"check({entry_point})"` (see `source`).

    The sandbox compiles `solution` (prompt + completion) and `test` separately, executes both in one
    fresh namespace, then calls the test's own `check` (captured right after the test ran) on
    `entry_point`. A program passes only if that call returns.
    """

    solution: str
    test: str
    entry_point: str

    @property
    def source(self) -> str:
        """The whole program as one script."""
        return f"{self.solution}\n{self.test}\ncheck({self.entry_point})"
