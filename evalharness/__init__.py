"""evalharness: in-context-learning evaluation for MPT and any Hugging Face causal LM."""

__version__ = "0.1.0"
