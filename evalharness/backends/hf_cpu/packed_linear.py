"""The body's linear layers through oneDNN with weights packed once, while the backend scores on the CPU.

`torch.nn.functional.linear` on the CPU hands the weight to its GEMM library on every call: oneDNN in bfloat16,
which re-lays the weight out into its blocked format each time, and MKL in float32, which on AMD CPUs runs a
slower code path than oneDNN's. Here each `nn.Linear` weight of the model's body (the decoder layers) and of its
LM head is laid out once in oneDNN's format (`torch.ops.mkldnn._reorder_linear_weight`, the op torch.compile's
CPU backend uses for frozen weights) and the layer is called through `torch.ops.mkldnn._linear_pointwise`.
Measured on this machine (2 cores, AMD EPYC Zen 4), interleaved, per product of the SmolLM2-135M shapes:
bfloat16 2-7% faster and bit-identical; float32 1.3-1.5x faster, equal to MKL's products up to the order of
the float32 sums (relative differences ~1e-7).

The packed copies cost as much memory as the weights: they are made only while they fit in a quarter of the
memory available (`fits_in_memory`), kept per backend, and made again when a weight changes (its storage or its
in-place version counter, as when a training loop steps between two evaluations). `EVALHARNESS_PACKED_LINEAR=0`
turns them off. `packed_linears(...)` swaps the layers' `forward` for the duration of a `with` block, like
fused_ops.py; anything else (autograd, another device or dtype) runs `F.linear`.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

from ...models.fsdp import available_memory
from .forward_swap import swapped_forwards

ENV = "EVALHARNESS_PACKED_LINEAR"
# packed copies may take at most this share of MemAvailable
MEMORY_SHARE = 0.25


def available() -> bool:
    """True if this torch has oneDNN and the two ops, and `EVALHARNESS_PACKED_LINEAR` is not 0."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
                and hasattr(torch.ops.mkldnn, "_linear_pointwise"))
    except (AttributeError, RuntimeError):  # pragma: no cover - a torch built without oneDNN
        return False


def body_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """Exactly-`nn.Linear` modules of the model's body (`base_model_prefix`) and its LM head holding plain CPU
    float32/bfloat16 parameters (not sharded ones)."""
    prefix = getattr(model, "base_model_prefix", None)
    body = getattr(model, prefix, None) if prefix else None
    if not isinstance(body, torch.nn.Module):
        return []
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    found = list(body.modules()) + ([head] if isinstance(head, torch.nn.Module) else [])
    return [m for m in found
            if type(m) is torch.nn.Linear and type(m.weight) is torch.nn.Parameter
            and m.weight.device.type == "cpu" and m.weight.dtype in (torch.float32, torch.bfloat16)]


def fits_in_memory(modules: list[torch.nn.Linear], share: float = MEMORY_SHARE) -> bool:
    """True if packed copies of these weights take at most `share` of the memory available now."""
    return sum(m.weight.numel() * m.weight.element_size() for m in modules) <= share * available_memory()


class PackedWeights:
    """oneDNN-packed copies of linear weights, made on first use and again whenever a weight changes."""

    def __init__(self) -> None:
        self._packed: dict[int, tuple[tuple[int, int, torch.dtype], torch.Tensor]] = {}

    def get(self, module: torch.nn.Linear) -> torch.Tensor:
        w = module.weight
        key = (w.data_ptr(), w._version, w.dtype)
        hit = self._packed.get(id(module))
        if hit is None or hit[0] != key:
            with torch.no_grad():
                hit = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach()))
            self._packed[id(module)] = hit
        return hit[1]

    def __len__(self) -> int:
        return len(self._packed)


def _forward(module: torch.nn.Linear, cache: PackedWeights, x: torch.Tensor) -> torch.Tensor:
    w = module.weight
    if (x.device.type == "cpu" and x.dtype == w.dtype and x.dim() >= 2
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))):
        return torch.ops.mkldnn._linear_pointwise(x, cache.get(module), module.bias, "none", [], "")
    return F.linear(x, w, module.bias)


@contextmanager
def packed_linears(model: torch.nn.Module, cache: PackedWeights) -> Iterator[int]:
    """Within the block, the body's linear layers run on their packed weights; yields how many were swapped."""
    with swapped_forwards((m, functools.partial(_forward, m, cache)) for m in body_linears(model)) as swapped:
        yield swapped
