"""Save and restore every random number generator a training loop draws from (torch CPU/CUDA, random, numpy)."""

from __future__ import annotations

import contextlib
import random
from typing import Any, Iterator

import numpy as np
import torch


def get_rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's global and torch's CPU generators, and CUDA's if CUDA is in use."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # never initialise CUDA just to read it
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Whatever the block draws (or seeds), the generators are as before it afterwards, also on errors."""
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
