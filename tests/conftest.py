"""Shared fixtures: the real data directory, the GPT-NeoX tokenizer, a tiny random MPT checkpoint."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from support.paths import SHARED
from support.tiny_models import build_tiny_mpt

os.environ.setdefault("OMP_NUM_THREADS", "1")


def _has_composer() -> bool:
    spec = importlib.util.find_spec("composer")
    return spec is not None and spec.origin is not None  # not tests/composer itself, seen as a namespace package


# tests/composer need Composer, which pins torch<2.7.1: they run in their own environment (.venv-composer,
# built by scripts/setup_composer.sh; .ci/run runs them after the main tests), not in the main one.
collect_ignore_glob = [] if _has_composer() else ["composer/*"]


def _data_dir() -> Path:
    env = os.environ.get("EVALHARNESS_DATA_DIR")
    return Path(env) if env else SHARED / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real benchmark data (CI always has it): a missing folder fails, it never skips."""
    path = _data_dir()
    assert (path / "llm-foundry").is_dir(), (
        f"real benchmark data not found at {path}; set EVALHARNESS_DATA_DIR to the shared data folder"
    )
    return path


@pytest.fixture(scope="session")
def neox_tokenizer_dir() -> Path:
    path = SHARED / "tokenizers" / "gpt-neox-20b"
    assert (path / "tokenizer.json").exists(), f"GPT-NeoX-20B tokenizer not found at {path}"
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_mpt_dir(tmp_path_factory: pytest.TempPathFactory, neox_tokenizer_dir: Path) -> Path:
    return build_tiny_mpt(tmp_path_factory.mktemp("tiny-mpt"), neox_tokenizer_dir)
