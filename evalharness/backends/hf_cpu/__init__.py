"""The CPU plugin for the HF backend: speed work that only helps CPUs and one transformers release.

Optional: installed with `pip install 'evalharness[cpu]'` (which brings ninja to build the kernels), found by the
HF backend through its accelerator hooks (evalharness.backends.hf.accelerator) and on by default on CPUs where
the guard (guard.py) passes. Its parts, each also switched off by its own environment variable:

- fused_ops: one-pass C++ kernels for Llama's RMSNorm, rotary embedding, attention, SiLU MLP and the log-probs at
  the read positions (fused_ops.py, fused_ops.cpp; EVALHARNESS_FUSED_OPS=0);
- packed_linear: linear layers on oneDNN-packed weights (packed_linear.py; EVALHARNESS_PACKED_LINEAR=0);
- last_layer: a Llama model's last decoder layer only at the read positions (last_layer.py);
- keep_freed_memory: glibc keeps freed memory for the next batch (cpu_allocator.py; EVALHARNESS_KEEP_FREED_MEMORY=0),
  process-wide, so only when evalharness owns the process (the command line).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

import torch

from . import guard

log = logging.getLogger("evalharness")


class CPUAccelerator:
    """The plugin's hooks for one model (evalharness.backends.hf.accelerator.Accelerator)."""

    name = "cpu"

    def __init__(self, model: torch.nn.Module, parts: dict[str, bool | str], ops: Any | None) -> None:
        self.model = model
        self.parts = parts
        self.ops = ops
        self.at_reads = parts["last_layer"] is True
        self._packed = None
        if parts["packed_linear"] is True:
            from .packed_linear import PackedWeights

            self._packed = PackedWeights()

    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        with contextlib.ExitStack() as swaps:
            if self.ops is not None:
                from .fused_ops import fused_llama_ops

                swaps.enter_context(fused_llama_ops(self.model, self.ops))
            if self._packed is not None:
                from .packed_linear import packed_linears

                swaps.enter_context(packed_linears(self.model, self._packed))
            yield

    def body_at_reads(self, rows: torch.Tensor, positions: torch.Tensor) -> contextlib.AbstractContextManager[bool]:
        if not self.at_reads:
            return contextlib.nullcontext(False)
        from .last_layer import last_layer_at

        return last_layer_at(self.model, rows, positions, ops=self.ops)

    def log_probs(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        from .fused_ops import kernel_ok

        if self.ops is None or logits.dim() != 2 or not kernel_ok(logits) or not hasattr(self.ops, "log_softmax_at"):
            return None
        lp, greedy = self.ops.log_softmax_at(logits.contiguous(), targets.to(torch.long).contiguous())
        return lp, greedy

    def describe(self) -> dict[str, Any]:
        return {"parts": dict(self.parts), "versions": f"transformers {guard.transformers_version()}, torch {torch.__version__}"}


PARTS = ("fused_ops", "packed_linear", "last_layer", "keep_freed_memory")


def accelerator_for(model: torch.nn.Module, *, process_wide: bool = False,
                    only: tuple[str, ...] = PARTS) -> CPUAccelerator | str:
    """The plugin bound to `model`, or why it does not apply (see guard.py); `only`: the parts that may be used
    (all by default). Builds the kernels now, once per machine, so nothing is compiled while progress bars run."""
    device = next(model.parameters()).device
    if device.type != "cpu":
        return f"the model is on {device.type}, not the CPU"
    problem = guard.version_problem()
    if problem:
        return problem
    from ..hf.sharding import is_sharded
    from . import cpu_allocator, fused_ops, last_layer, packed_linear

    parts: dict[str, bool | str] = {}
    ops = None
    if "fused_ops" not in only:
        parts["fused_ops"] = "off (not selected)"
    elif guard.env_off(fused_ops.ENV):
        parts["fused_ops"] = f"off ({fused_ops.ENV}=0)"
    elif not fused_ops.fusable_modules(model):
        parts["fused_ops"] = "off (no Llama modules it replaces)"
    elif guard.build_problem():
        parts["fused_ops"] = f"off ({guard.build_problem()})"
    else:
        ops = fused_ops.load_fused_ops()
        parts["fused_ops"] = True if ops is not None else "off (the kernels failed to build; see the log)"
    linears = packed_linear.body_linears(model) if not is_sharded(model) else []
    if not packed_linear.available():
        parts["packed_linear"] = f"off ({packed_linear.ENV}=0 or no oneDNN)"
    elif not linears:
        parts["packed_linear"] = "off (no plain linear layers)"
    else:
        parts["packed_linear"] = True if packed_linear.fits_in_memory(linears) else "off (not enough free memory)"
    parts["last_layer"] = True if last_layer.last_layer(model) is not None else "off (not a plain Llama under sdpa)"
    if "keep_freed_memory" not in only:
        parts["keep_freed_memory"] = "off (not selected)"
    elif not process_wide:
        parts["keep_freed_memory"] = "off (evalharness does not own the process)"
    else:
        parts["keep_freed_memory"] = True if cpu_allocator.keep_freed_memory() else f"off ({cpu_allocator.ENV}=0 or not glibc)"
    for part in ("packed_linear", "last_layer"):
        if part not in only:
            parts[part] = "off (not selected)"
    if not any(v is True for v in parts.values()):
        return "no part applies: " + "; ".join(f"{k} {v}" for k, v in parts.items())
    return CPUAccelerator(model, parts, ops)


__all__ = ["CPUAccelerator", "accelerator_for"]
