"""Swapping a module's `forward` for the duration of a `with` block: how the backend's speed levers stand in for
transformers' own code (fused_ops.py, last_layer.py, packed_linear.py) without changing anything global."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch


@contextmanager
def swapped_forwards(replacements: Iterable[tuple[torch.nn.Module, Callable]]) -> Iterator[int]:
    """Within the block, each module's calls go to its replacement (set as a `forward` attribute of the instance,
    removed again on exit); a module that already has an instance `forward` (someone else's override) is left
    alone. Yields how many modules were swapped."""
    swapped: list[torch.nn.Module] = []
    for module, forward in replacements:
        if "forward" in module.__dict__:
            continue
        module.forward = forward
        swapped.append(module)
    try:
        yield len(swapped)
    finally:
        for module in swapped:
            module.__dict__.pop("forward", None)
