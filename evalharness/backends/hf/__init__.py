"""The Hugging Face causal-LM backend (`--backend hf`, the default)."""

from .backend import HFBackend, infer_max_length
from .options import HFOptions

__all__ = ["HFBackend", "HFOptions", "infer_max_length"]
