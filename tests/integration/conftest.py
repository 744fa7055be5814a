"""Fixtures shared by the fault tests (test_faults.py, test_write_faults.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cli import cli
from support.fault_runs import run_args


@pytest.fixture(scope="session")
def reference(tiny_mpt_dir, data_dir, tmp_path_factory) -> Path:
    """An uninterrupted run of the fault tests' command (support/fault_runs.py)."""
    out = tmp_path_factory.mktemp("faults") / "uninterrupted"
    proc = cli(*run_args(tiny_mpt_dir, out), cwd=out.parent, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    return out
