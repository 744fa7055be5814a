"""evalharness: in-context-learning evaluation for MPT and any Hugging Face causal LM.

Public API: `evaluate` (an in-memory model or any backend), `run` (a RunConfig, writes files), the typed results
(`EvalResults`), the request/result types where tasks and backends meet, the backend interface and registry
(`Backend`, `register_backend`), the metric registry (`register_metric`) and the error types shown to users.
"""

from typing import Any

from .config import RunConfig
from .errors import ConfigError, DataError, DataFileNotFound, EvalHarnessError, ModelLoadError
from .requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult

__version__ = "0.1.0"

_LAZY = {  # these import torch or the task machinery: loaded on first use so `evalharness list` stays fast
    "evaluate": ("api", "evaluate"),
    "run": ("api", "run"),
    "EvalResults": ("results", "EvalResults"),
    "TaskResult": ("results", "TaskResult"),
    "Backend": ("backends.base", "Backend"),
    "Capabilities": ("backends.base", "Capabilities"),
    "register_backend": ("backends.registry", "register_backend"),
    "register_metric": ("metrics.registry", "register_metric"),
    "Metric": ("metrics.registry", "Metric"),
    "TaskRegistry": ("tasks.registry", "TaskRegistry"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'evalharness' has no attribute {name!r}")


__all__ = [
    "Backend", "Capabilities", "ConfigError", "DataError", "DataFileNotFound", "EvalHarnessError", "EvalResults",
    "GenerateRequest", "GenerateResult", "LoglikelihoodRequest", "LoglikelihoodResult", "Metric", "ModelLoadError",
    "RunConfig", "TaskRegistry", "TaskResult", "__version__", "evaluate", "register_backend", "register_metric", "run",
]
