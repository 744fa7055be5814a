"""The Hugging Face causal-LM backend (`--backend hf`, the default). HFOptions imports without torch."""

from typing import Any

from .options import HFOptions


def __getattr__(name: str) -> Any:
    """HFBackend and infer_max_length import torch: loaded on first use (`evalharness list` stays fast)."""
    if name in ("HFBackend", "infer_max_length"):
        from . import backend

        return getattr(backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["HFBackend", "HFOptions", "infer_max_length"]
