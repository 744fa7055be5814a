"""evalharness: in-context-learning evaluation for MPT and any Hugging Face causal LM.

Public API: `evaluate` (an in-memory model), `run` (a RunConfig, writes files), the request/result types
where tasks and backends meet, and the error types shown to users.
"""

from .api import evaluate, run
from .config import RunConfig
from .errors import ConfigError, DataError, DataFileNotFound, EvalHarnessError, ModelLoadError
from .requests import LoglikelihoodRequest, LoglikelihoodResult

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "DataError", "DataFileNotFound", "EvalHarnessError", "LoglikelihoodRequest",
    "LoglikelihoodResult", "ModelLoadError", "RunConfig", "evaluate", "run", "__version__",
]
