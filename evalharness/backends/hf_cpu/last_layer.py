"""The last decoder layer of a Llama model run only at the positions whose log-probs are read.

The last layer's keys and values are needed at every position (each read position attends them), but its
queries, attention output, output projection, residuals and MLP only where a hidden state is read: for a zero-shot
MMLU row that is one position of ~100. `last_layer_at(model, rows, positions)` swaps in, for the duration of a
`with` block, a forward of the last LlamaDecoderLayer that computes exactly that and returns the hidden states at
the given (row, position) pairs as [1, N, hidden] (the model's final norm is per position, so it applies as
before). For SmolLM2-135M (30 layers) that is ~3% of the body's FLOPs.

As with fused_ops.py, the replacement is written against the transformers source it stands in for and is used
only while that source is byte for byte the one it was checked against (fused_ops.KNOWN_SOURCES), only for exactly
LlamaDecoderLayer / LlamaAttention instances (not subclasses, not FSDP-wrapped ones), under the sdpa attention
implementation, with no attention mask or a boolean one. Anything else (autograd, unexpected arguments) runs the
layer's own forward and picks the positions from its output, so the result is the same either way.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from .forward_swap import swapped_forwards
from .fused_ops import INERT_ATTENTION_KWARGS, kernel_ok, llama_sources_known

# the transformers code the replacement stands in for (hashes in fused_ops.KNOWN_SOURCES)
REPLACED = ("LlamaDecoderLayer.forward", "LlamaAttention.forward", "rotate_half")


def last_layer(model: torch.nn.Module) -> torch.nn.Module | None:
    """The model's last decoder layer if the read-positions forward can stand in for it, else None."""
    if not llama_sources_known(*REPLACED):
        return None
    from transformers.models.llama.modeling_llama import LlamaAttention, LlamaDecoderLayer

    body = getattr(model, getattr(model, "base_model_prefix", ""), None)
    layers = getattr(body, "layers", None)
    config = getattr(model, "config", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0 or config is None:
        return None
    if len(layers) != getattr(config, "num_hidden_layers", -1) or getattr(config, "_attn_implementation", None) != "sdpa":
        return None
    layer = layers[-1]
    if type(layer) is not LlamaDecoderLayer or type(layer.self_attn) is not LlamaAttention:
        return None
    return layer


@contextmanager
def last_layer_at(model: torch.nn.Module, rows: torch.Tensor, positions: torch.Tensor,
                  ops: Any | None = None) -> Iterator[bool]:
    """Within the block, a forward of the model's body returns, as its last hidden state, [1, N, hidden]: the
    hidden states at (rows[i], positions[i]) of the tokens it is given (positions count from the first token
    fed, after any cached prefix; no pairs: only the last layer's keys and values are computed, for a KV cache).
    Rotary embedding and attention run the fused kernels `ops` (fused_ops.py) where given. Yields False, changing
    nothing, if the model does not allow it."""
    layer = last_layer(model)
    forward = [] if layer is None else [(layer, functools.partial(_read_positions_forward, layer, ops, rows, positions))]
    with swapped_forwards(forward) as swapped:
        yield swapped == 1


def _read_positions_forward(layer: Any, ops: Any, rows: torch.Tensor, positions: torch.Tensor,
                            hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                            position_ids: torch.Tensor | None = None, past_key_values: Any = None,
                            use_cache: bool | None = False,
                            position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
                            **kwargs: Any) -> torch.Tensor:
    """LlamaDecoderLayer.forward (transformers 5.23.0) at the (rows, positions) pairs only: [1, N, hidden]."""
    attn = layer.self_attn
    batch, length = hidden_states.shape[:2]
    plain = (position_embeddings is not None and hidden_states.dim() == 3 and not layer.training
             and not (torch.is_grad_enabled() and hidden_states.requires_grad)
             and all(key in INERT_ATTENTION_KWARGS for key in kwargs) and not kwargs.get("output_attentions")
             and (attention_mask is None or (attention_mask.dtype == torch.bool and attention_mask.dim() == 4
                                             and attention_mask.shape[1] == 1 and attention_mask.shape[2] == length)))
    if not plain:
        full = type(layer).forward(layer, hidden_states, attention_mask=attention_mask, position_ids=position_ids,
                                   past_key_values=past_key_values, use_cache=use_cache,
                                   position_embeddings=position_embeddings, **kwargs)
        return full[rows, positions][None]

    cos, sin = position_embeddings
    rows, positions = rows.to(hidden_states.device), positions.to(hidden_states.device)
    head_dim = attn.head_dim
    x = layer.input_layernorm(hidden_states)

    # keys and values at every position (rotary as LlamaAttention applies it), after the cached ones if any
    key_states = attn.k_proj(x).view(batch, length, -1, head_dim)
    key_states = _rope(ops, key_states, cos, sin).transpose(1, 2)
    value_states = attn.v_proj(x).view(batch, length, -1, head_dim).transpose(1, 2)
    if past_key_values is not None:
        key_states, value_states = past_key_values.update(key_states, value_states, attn.layer_idx)
    keys = key_states.shape[2]
    n = rows.numel()
    if n == 0:  # a prefix pass: only the keys and values were wanted
        return hidden_states.new_zeros(1, 0, hidden_states.shape[-1])

    # queries at the read positions only, laid out [B, R, heads, D] with R the most reads of any row
    slot = _slot_in_row(rows, batch)
    reads = int(slot.max()) + 1
    trig_rows = rows if cos.shape[0] > 1 else torch.zeros_like(rows)
    q = attn.q_proj(x[rows, positions]).view(n, 1, -1, head_dim)
    q = _rope(ops, q, cos[trig_rows, positions][:, None], sin[trig_rows, positions][:, None])[:, 0]
    query_states = q.new_zeros(batch, reads, q.shape[1], head_dim)
    query_states[rows, slot] = q
    allowed = torch.zeros(batch, 1, reads, keys, dtype=torch.bool, device=q.device)
    if attention_mask is None:  # causal, the queries being the last `length` of the keys
        allowed[rows, 0, slot] = torch.arange(keys, device=q.device)[None] <= (keys - length + positions)[:, None]
    else:
        mask_rows = rows if attention_mask.shape[0] > 1 else torch.zeros_like(rows)
        allowed[rows, 0, slot] = attention_mask[mask_rows, 0, positions]
    query_states = query_states.transpose(1, 2)

    if ops is not None and kernel_ok(query_states, key_states, value_states) and head_dim % 16 == 0:
        out = ops.attention(query_states, key_states, value_states, allowed, float(attn.scaling))  # [B, R, H, D]
    else:  # rows' unused query slots see no key: NaN there, never read
        out = F.scaled_dot_product_attention(query_states, key_states, value_states, attn_mask=allowed,
                                             scale=attn.scaling, enable_gqa=True).transpose(1, 2)
    out = attn.o_proj(out[rows, slot].reshape(n, -1))
    h = hidden_states[rows, positions] + out
    h = h + layer.mlp(layer.post_attention_layernorm(h))
    return h[None]


def _slot_in_row(rows: torch.Tensor, batch: int) -> torch.Tensor:
    """For each entry, how many earlier entries have the same row: its query slot in that row."""
    order = torch.argsort(rows, stable=True)
    sorted_rows = rows[order]
    starts = torch.zeros(batch + 1, dtype=torch.long, device=rows.device)
    starts[1:] = torch.cumsum(torch.bincount(sorted_rows, minlength=batch), 0)
    slot = torch.empty_like(rows)
    slot[order] = torch.arange(rows.numel(), device=rows.device) - starts[sorted_rows]
    return slot


def _rope(ops: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of x [B, T, heads, D] with cos/sin [B or 1, T, D], as apply_rotary_pos_emb computes it."""
    if ops is not None and kernel_ok(x, cos, sin):
        return ops.rope(x, cos, sin)
    from transformers.models.llama.modeling_llama import rotate_half

    return x * cos[:, :, None] + rotate_half(x) * sin[:, :, None]
