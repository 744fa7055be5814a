"""Find the data directory and the files inside it."""

from __future__ import annotations

import os
from pathlib import Path

from evalharness.errors import DataFileNotFound

DATA_DIR_ENV = "EVALHARNESS_DATA_DIR"
HOW_TO_SET = f"pass --data-dir DIR or set the environment variable {DATA_DIR_ENV}=DIR"


def resolve_data_dir(explicit: str | Path | None) -> Path | None:
    """The explicit directory if given, else $EVALHARNESS_DATA_DIR, else None (existence not checked)."""
    if explicit is not None and str(explicit) != "":
        return Path(explicit).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV, "")
    if from_env:
        return Path(from_env).expanduser()
    return None


def data_file(data_dir: Path | None, relative: str) -> Path:
    """`data_dir / relative` if that file exists; otherwise raise DataFileNotFound with a how-to hint."""
    if data_dir is None:
        raise DataFileNotFound(relative, None, hint=f"no data directory was given; {HOW_TO_SET}")
    path = Path(data_dir) / relative
    if path.is_file():
        return path
    if not Path(data_dir).is_dir():
        hint = f"the data directory does not exist; {HOW_TO_SET}"
    else:
        hint = f"{HOW_TO_SET} to a directory that contains {relative}"
    raise DataFileNotFound(relative, data_dir, hint=hint)
