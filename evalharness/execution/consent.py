"""Explicit consent before any model-written code runs."""

from __future__ import annotations

from evalharness.errors import CodeExecutionNotAllowed


def ensure_code_execution_allowed(allow_code_execution: bool) -> None:
    """Raise `CodeExecutionNotAllowed` unless the user passed `allow_code_execution=True` exactly."""
    if allow_code_execution is not True:
        raise CodeExecutionNotAllowed()
