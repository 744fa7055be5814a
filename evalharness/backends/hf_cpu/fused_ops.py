"""Fused CPU kernels for the element-wise parts of Llama decoder layers, swapped in while the backend scores.

On the CPU, a small model's forward spends a large share of its time in memory-bound element-wise passes:
LlamaRMSNorm alone is eight of them (to float32, pow, mean, add, rsqrt, mul, back to the dtype, mul by the
weight), the rotary embedding of queries and keys six (mul, slice, neg, cat, mul, add). fused_ops.cpp does
each in one pass with the same arithmetic (the same roundings in bfloat16; the one difference, the order of a
float32 sum, is in the .cpp header). The MLP's act_fn(gate) * up (SiLU only) is one pass too (silu_mul: the same
formula and roundings as torch, its exp by fused multiply-adds instead of Sleef's; about 2x torch's two passes in
bfloat16; two earlier tries with a slower exp were not faster, docs/performance.md). Two kernels are not
element-wise: the attention (scores, softmax and weighted sum per (row, key/value head); in bfloat16 with
AVX512-BF16 pair dot products) and the log-probs at the read positions (log_softmax_at, the plugin's
log_probs hook).

The kernels are compiled once per machine when the plugin is first bound to a model, before any batch runs
(torch.utils.cpp_extension with ninja and the system C++ compiler, about 30 s), into the evalharness cache,
keyed by the source, the compiler flags, the CPU's instruction-set flags and the torch version. If that is
impossible (no compiler), scoring goes on with the eager modules and one warning. `EVALHARNESS_FUSED_OPS=0`
turns them off.

`fused_llama_ops(model)` swaps the kernels in for the duration of a `with` block by giving the model's own
LlamaRMSNorm, LlamaAttention and LlamaMLP instances a `forward` attribute (removed again on exit); nothing global
changes, and modules of any other class (including FSDP-wrapped ones) are left alone. The replacements are written
against the transformers source they replace: each is used only while that source is byte for byte the one they
were checked against (KNOWN_SOURCES), so a transformers upgrade that changes one turns its swap off rather than
computing something else. They fall back to the eager forward for anything the kernels do not take (autograd,
non-CPU tensors, other dtypes).
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import inspect
import logging
import os
import platform
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from .forward_swap import swapped_forwards

log = logging.getLogger("evalharness")

ENV = "EVALHARNESS_FUSED_OPS"
SOURCE = Path(__file__).with_name("fused_ops.cpp")
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math",
          "-mprefer-vector-width=512", "-fopenmp"]

# sha256 (first 16 hex digits) of the transformers code each replacement stands in for (transformers 5.23.0),
# here and in last_layer.py
KNOWN_SOURCES = {
    "LlamaRMSNorm.forward": "3480f6ca9ea40b53",
    "LlamaDecoderLayer.forward": "775f48d129e3628b",
    "LlamaAttention.forward": "544a556ba10f473f",
    "apply_rotary_pos_emb": "a6dd2967da96713e",
    "rotate_half": "3ef6f9c768ce9c6a",
    "sdpa_attention_forward": "a030d39b9274fbb1",
    "LlamaMLP.forward": "1923407024d5de0b",
    "SiLUActivation.forward": "f2004e1800110042",
}

_lock = threading.Lock()
_loaded: Any = None
_tried = False


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def build_name() -> str:
    """The extension's name: changes with the source and its path (torch rebuilds when the path changes, so
    two checkouts must not share a build folder), flags, CPU features and torch version."""
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), str(SOURCE.resolve()).encode(), " ".join(CFLAGS).encode(),
                 _cpu_flags().encode(), torch.__version__.encode(), platform.machine().encode(), sys.version.encode()):
        digest.update(part)
    return "evalharness_fused_ops_" + digest.hexdigest()[:16]


@contextmanager
def build_lock(build_dir: Path) -> Iterator[None]:
    """Held while the kernels are built or loaded, so one process at a time touches `build_dir`.

    An flock: the system drops it when its holder dies, so a build killed at any moment never blocks a later
    run. Under it, torch's own lock file in the folder (`lock`, which torch's build waits on for as long as it
    exists) can only be left by a dead build, and is removed."""
    with open(build_dir.parent / f"{build_dir.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            stale = build_dir / "lock"
            if stale.exists():
                log.info(f"removing {stale}, left by a kernel build that was killed")
                stale.unlink(missing_ok=True)
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_fused_ops() -> Any | None:
    """The compiled kernels (building them on first use), or None if turned off or they cannot be built."""
    global _loaded, _tried
    if not enabled():
        return None
    with _lock:
        if _tried:
            return _loaded
        _tried = True
        try:
            from torch.utils.cpp_extension import load

            from ...models.embedded import cache_root

            name = build_name()
            build_dir = cache_root() / "kernels" / name
            build_dir.mkdir(parents=True, exist_ok=True)
            with build_lock(build_dir):
                if not any(build_dir.glob("*.so")):
                    log.info("compiling the fused CPU kernels (once per machine, about 30 s)")
                _loaded = load(name=name, sources=[str(SOURCE)], extra_cflags=CFLAGS, extra_ldflags=["-fopenmp"],
                               build_directory=str(build_dir), verbose=False)
        except Exception as exc:  # no compiler, no ninja, a failed build: the eager modules still work
            log.warning(f"fused CPU kernels unavailable, using the eager modules ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}); set {ENV}=0 to skip "
                        "the attempt")
            _loaded = None
        return _loaded


def source_digest(fn: Any) -> str:
    return hashlib.sha256(inspect.cleandoc(inspect.getsource(fn)).encode()).hexdigest()[:16]


@functools.cache
def llama_sources_known(*names: str) -> bool:
    """True if each named piece of transformers' modeling_llama ("LlamaAttention.forward", ...) is byte for byte
    the source in KNOWN_SOURCES; False if one differs or the source cannot be read (a frozen install)."""
    try:
        from transformers.models.llama import modeling_llama as llama

        return all(source_digest(_attr(llama, n)) == KNOWN_SOURCES[n] for n in names)
    except (ImportError, OSError, TypeError, AttributeError):
        return False


@functools.lru_cache(maxsize=1)
def swappable_kinds() -> frozenset[str]:
    """Which replacements match the installed transformers: "rms_norm", "attention", "sdpa", "mlp"."""
    try:
        from transformers.models.llama import modeling_llama as llama
    except ImportError:  # pragma: no cover - transformers always ships Llama
        return frozenset()

    kinds = {"rms_norm": llama_sources_known("LlamaRMSNorm.forward"),
             "mlp": llama_sources_known("LlamaMLP.forward") and _silu_source_known(),
             "attention": llama_sources_known("LlamaAttention.forward", "apply_rotary_pos_emb", "rotate_half")
             and hasattr(llama, "ALL_ATTENTION_FUNCTIONS") and hasattr(llama, "eager_attention_forward")}
    try:  # the attention kernel stands in for transformers' sdpa function, inside the swapped LlamaAttention
        from transformers.integrations import sdpa_attention

        kinds["sdpa"] = kinds["attention"] and source_digest(sdpa_attention.sdpa_attention_forward) == \
            KNOWN_SOURCES["sdpa_attention_forward"]
    except (ImportError, OSError, TypeError, AttributeError):
        pass
    return frozenset(k for k, ok in kinds.items() if ok)


def _attr(module: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _silu_source_known() -> bool:
    try:
        from transformers.activations import SiLUActivation

        return source_digest(SiLUActivation.forward) == KNOWN_SOURCES["SiLUActivation.forward"]
    except (ImportError, OSError, TypeError):
        return False


def silu_known(act: Any) -> bool:
    """True if `act` is transformers' SiLUActivation (its source checked once, in swappable_kinds) with no
    instance override (a hub kernel swapped in)."""
    from transformers.activations import SiLUActivation

    return type(act) is SiLUActivation and "forward" not in act.__dict__


def kernel_ok(x: torch.Tensor, *others: torch.Tensor) -> bool:
    """True if the kernels may replace the eager ops on these tensors."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.bfloat16)
        and not (torch.is_grad_enabled() and (x.requires_grad or any(o.requires_grad for o in others)))
        and all(o.dtype == x.dtype and o.device == x.device and o.is_contiguous() for o in others)
    )


def _rms_norm_forward(module: Any, ops: Any, hidden_states: torch.Tensor) -> torch.Tensor:
    if kernel_ok(hidden_states, module.weight):
        return ops.rms_norm(hidden_states.contiguous(), module.weight, float(module.variance_epsilon))
    return type(module).forward(module, hidden_states)


def _attention_forward(module: Any, ops: Any, hidden_states: torch.Tensor,
                       position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
                       attention_mask: torch.Tensor | None = None, past_key_values: Any = None,
                       **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """LlamaAttention.forward (transformers 5.23.0) with the rotary embedding through the kernel, and under sdpa the
    attention itself for more than one query per row (_attention_kernel_ok says when)."""
    cos, sin = position_embeddings if position_embeddings is not None else (None, None)
    if (cos is None or hidden_states.dim() != 3 or cos.dim() != 3 or cos.shape[1] != hidden_states.shape[1]
            or not kernel_ok(hidden_states, cos, sin) or module.training):
        return type(module).forward(module, hidden_states, position_embeddings, attention_mask, past_key_values,
                                    **kwargs)
    from transformers.models.llama.modeling_llama import ALL_ATTENTION_FUNCTIONS, eager_attention_forward

    input_shape = hidden_states.shape[:-1]
    hidden_shape = (*input_shape, -1, module.head_dim)
    query_states = ops.rope(module.q_proj(hidden_states).view(hidden_shape), cos, sin).transpose(1, 2)
    key_states = ops.rope(module.k_proj(hidden_states).view(hidden_shape), cos, sin).transpose(1, 2)
    value_states = module.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
    if past_key_values is not None:
        key_states, value_states = past_key_values.update(key_states, value_states, module.layer_idx)
    # one query per row (a decoding step): torch's sdpa is faster than the kernel, 5x at 1,000 keys
    if query_states.shape[2] > 1 and _attention_kernel_ok(module, query_states, key_states, attention_mask, kwargs):
        attn_output, attn_weights = ops.attention(query_states, key_states, value_states, attention_mask,
                                                  float(module.scaling)), None
    else:
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(module.config._attn_implementation,
                                                                    eager_attention_forward)
        attn_output, attn_weights = attention_interface(module, query_states, key_states, value_states,
                                                        attention_mask, dropout=0.0, scaling=module.scaling, **kwargs)
    attn_output = attn_output.reshape(*input_shape, -1).contiguous()
    return module.o_proj(attn_output), attn_weights


def _mlp_forward(module: Any, ops: Any, x: torch.Tensor) -> torch.Tensor:
    """LlamaMLP.forward (transformers 5.23.0) with a SiLU act_fn: silu(gate) * up in one kernel pass."""
    if not kernel_ok(x) or module.training:
        return type(module).forward(module, x)
    return module.down_proj(ops.silu_mul(module.gate_proj(x), module.up_proj(x)))


_FORWARDS = {"rms_norm": _rms_norm_forward, "attention": _attention_forward, "mlp": _mlp_forward}


# keyword arguments that reach sdpa_attention_forward (and a decoder layer, last_layer.py) from a plain forward
# and change nothing they compute
INERT_ATTENTION_KWARGS = frozenset({"position_ids", "cache_position", "use_cache", "output_attentions",
                                    "output_hidden_states", "return_dict"})


def _attention_kernel_ok(module: Any, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None,
                         kwargs: dict[str, Any]) -> bool:
    """True if the attention kernel computes what transformers' sdpa_attention_forward would: the model runs sdpa,
    causal, with no extra bias or soft-capping, and the mask is None over as many keys as queries (causal) or one
    query (all keys), or a boolean [B or 1, 1, Tq, Tk] mask of allowed keys."""
    if (module.config._attn_implementation != "sdpa" or "sdpa" not in swappable_kinds()
            or not getattr(module, "is_causal", False) or q.shape[-1] % 16
            or any(key not in INERT_ATTENTION_KWARGS for key in kwargs) or kwargs.get("output_attentions")):
        return False
    from transformers.integrations import sdpa_attention
    from transformers.models.llama.modeling_llama import ALL_ATTENTION_FUNCTIONS

    if ALL_ATTENTION_FUNCTIONS.get("sdpa") is not sdpa_attention.sdpa_attention_forward:  # someone registered another
        return False
    b, _, tq, _ = q.shape
    tk = k.shape[2]
    if mask is None:
        return tq == tk or tq == 1
    return (mask.dtype == torch.bool and mask.dim() == 4 and mask.shape[1] == 1 and mask.shape[0] in (1, b)
            and tuple(mask.shape[2:]) == (tq, tk) and mask.device == q.device)


def fusable_modules(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    """(module, kind) for every module of the model the kernels can stand in for: exactly LlamaRMSNorm and
    LlamaAttention and LlamaMLP with a SiLU (not subclasses, which may compute something else, nor FSDP-wrapped
    copies), each only if its transformers source is the known one (swappable_kinds)."""
    kinds = swappable_kinds()
    if not kinds:
        return []
    from transformers.models.llama.modeling_llama import LlamaAttention, LlamaMLP, LlamaRMSNorm

    found = []
    for module in model.modules():
        if type(module) is LlamaRMSNorm and "rms_norm" in kinds:
            found.append((module, "rms_norm"))
        elif type(module) is LlamaAttention and "attention" in kinds:
            found.append((module, "attention"))
        elif type(module) is LlamaMLP and "mlp" in kinds and silu_known(module.act_fn):
            found.append((module, "mlp"))
    return found


@contextmanager
def fused_llama_ops(model: torch.nn.Module, ops: Any | None = None) -> Iterator[int]:
    """Within the block, the model's Llama norms, attentions and MLPs run the fused kernels; yields how many
    modules were swapped (0 if the kernels are unavailable or the model has none)."""
    ops = ops if ops is not None else load_fused_ops()
    kinds = fusable_modules(model) if ops is not None else []
    with swapped_forwards((m, functools.partial(_FORWARDS[kind], m, ops)) for m, kind in kinds) as swapped:
        yield swapped
