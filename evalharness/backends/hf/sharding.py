"""What the HF backend needs to know about an FSDP2-sharded model (evalharness.models.fsdp shards it)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch


def is_fsdp_module(module: Any) -> bool:
    """True if `module` was wrapped by FSDP2's `fully_shard`."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch < 2.6 or no distributed
        return False
    return isinstance(module, FSDPModule)


def is_sharded(model: torch.nn.Module) -> bool:
    """True if any part of the model is sharded with FSDP2."""
    return any(is_fsdp_module(m) for m in model.modules())


@contextlib.contextmanager
def root_gathered(model: Any) -> Iterator[None]:
    """Hold the FSDP root's own parameters (embeddings, final norm, head) gathered for one batch.

    The backend may run the model body and the head separately, outside the root's forward; the blocks
    gather and free their own shards in their forward hooks. Inference mode as the backend's forward passes:
    FSDP reuses the gathered tensors, first made there.
    """
    with torch.inference_mode():
        model.unshard()
    try:
        yield
    finally:
        with torch.inference_mode():
            model.reshard()
