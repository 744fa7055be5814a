"""Where the data-only folders (tasks/, prompts/, reports/) are: a checkout or an installed wheel."""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def resource_dir(name: str) -> Path:
    """The folder `name` (tasks, prompts or reports): beside the package in a checkout, inside it in a wheel."""
    for candidate in (_PACKAGE_DIR / "_resources" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"evalharness resource folder {name!r} not found next to {_PACKAGE_DIR}")
