"""evalharness: in-context-learning evaluation for MPT and any Hugging Face causal LM.

Public API: `evaluate` (an in-memory model), `run` (a RunConfig, writes files), the request/result types
where tasks and backends meet, and the error types shown to users.
"""

from typing import Any

from .config import RunConfig
from .errors import ConfigError, DataError, DataFileNotFound, EvalHarnessError, ModelLoadError
from .requests import LoglikelihoodRequest, LoglikelihoodResult

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`evaluate` and `run` import torch: load them on first use so `evalharness list` stays fast."""
    if name in ("evaluate", "run"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'evalharness' has no attribute {name!r}")

__all__ = [
    "ConfigError", "DataError", "DataFileNotFound", "EvalHarnessError", "LoglikelihoodRequest",
    "LoglikelihoodResult", "ModelLoadError", "RunConfig", "evaluate", "run", "__version__",
]
