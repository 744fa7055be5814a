"""A fast forward for Hugging Face's MptForCausalLM: ALiBi attention through scaled-dot-product attention.

transformers' MPT only has eager attention (a full [B, H, T, T] float score tensor, softmax in float32). This
module recomputes the same hidden states with the model's own modules and weights, but with
`torch.nn.functional.scaled_dot_product_attention` (or flash-attn on CUDA), and it understands *packed rows*:
one shared context followed by several choice segments, each restarting its positions after the context.

Row layout (`mpt_hidden_states`):

- `position_ids[b, t]`: logical position of token t (None: 0..T-1).
- `segment_ids[b, t]`: 0 shared context, k >= 1 choice segment k, -1 right padding (None: plain causal rows).
- Query t attends key s iff s <= t, segment_ids[s] != -1 and segment_ids[s] in (0, segment_ids[t]); every
  query also attends itself, so padding rows are never fully masked (their outputs are meaningless).
- ALiBi bias is the relative form -slope_h * (position_ids[t] - position_ids[s]) with HF MPT's slopes. HF adds
  the key-only form slope_h * (s - (T-1)), equal up to a per-query constant (same softmax) for plain rows.

What HF's MPT forward honours, and so does this one: `wte` without scaling or position embedding,
`layer_norm_epsilon` (through the norms), `attn_config.clip_qkv` (truthiness: 0 means off) and
`attn_config.softmax_scale` (None: 1/sqrt(head_dim)). HF ignores `expansion_ratio` (the MLP is always 4 x d_model,
which the modules carry anyway), `alibi_bias_max` (always 8), `alibi`, `qk_ln`, `attn_type`, `prefix_lm`,
`learned_pos_emb`, `no_bias`, `norm_type`, `attn_impl` and `logit_scale`; `supports_fast_mpt` refuses the configs
where that matters.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from .packing import visible
from .sharding import is_fsdp_module

# Largest attention bias built at once, in elements (64M: 256 MB in float32). Longer/wider inputs are attended
# in query chunks whose bias stays under this; a bias that fits is built once and shared by all layers.
BIAS_BUDGET_ELEMENTS = 1 << 26

_HF_ALIBI_BIAS_MAX = 8  # HF's MptModel.forward never passes config.attn_config.alibi_bias_max


def supports_fast_mpt(model: Any) -> bool:
    """True if `model` is an HF MptForCausalLM/MptModel whose forward `mpt_hidden_states` reproduces exactly."""
    try:
        from transformers import MptForCausalLM, MptModel
    except ImportError:  # pragma: no cover - transformers always ships MPT
        return False
    if not isinstance(model, (MptForCausalLM, MptModel)):
        return False
    config = model.config
    attn = config.attn_config
    if (
        not attn.alibi  # HF always adds ALiBi; a non-ALiBi checkpoint would need position embeddings
        or attn.qk_ln
        or attn.prefix_lm
        or attn.attn_type != "multihead_attention"
        or attn.alibi_bias_max != _HF_ALIBI_BIAS_MAX  # honoured here, ignored by HF: the two would differ
        or config.d_model % config.n_heads
        or (model.training and attn.attn_pdrop)  # no dropout here
    ):
        return False
    return all(_block_supported(block, config.d_model) for block in model.base_model.blocks)


def _block_supported(block: Any, d_model: int) -> bool:
    """The block has HF's structure: fused Wqkv, out_proj, a plain MLP."""
    attn, ffn = block.attn, block.ffn
    return (
        attn.Wqkv.out_features == 3 * d_model
        and attn.n_heads * attn.head_dim == d_model
        and all(hasattr(ffn, name) for name in ("up_proj", "act", "down_proj"))
    )


def mpt_hidden_states(model: Any, input_ids: torch.LongTensor, position_ids: torch.LongTensor | None = None,
                      segment_ids: torch.LongTensor | None = None, prefix: int = 0) -> torch.Tensor:
    """Final hidden states (after norm_f) of an HF MptForCausalLM (or MptModel) for input_ids [B, T].

    With `prefix`, the first `prefix` tokens of every row are the same (and at positions 0..prefix-1 of the
    shared context): they run once, as one row whose keys and values every row attends, and only the hidden
    states of positions prefix..T-1 are returned ([B, T - prefix]).
    Inference only (no dropout); call it under torch.inference_mode() or torch.no_grad().
    """
    transformer = model.base_model
    past: list[tuple[torch.Tensor, torch.Tensor]] = []
    if prefix:
        shared = transformer.wte(input_ids[:1, :prefix])
        attend_shared = _attention_fn(model, shared, None, None)
        for block in transformer.blocks:
            shared = _block_forward(block, shared, attend_shared, record=past)
    hidden = transformer.wte(input_ids[:, prefix:])
    attend = _attention_fn(model, hidden, position_ids, segment_ids, query_start=prefix)
    for i, block in enumerate(transformer.blocks):
        hidden = _block_forward(block, hidden, attend, past=past[i] if past else None)
    return transformer.norm_f(hidden)


# An attention function maps q, k, v [B, H, T, D] and the softmax scale to the context [B, H, T, D].
AttendFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def _block_forward(block: Any, hidden: torch.Tensor, attend: AttendFn,
                   past: tuple[torch.Tensor, torch.Tensor] | None = None,
                   record: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
    """One MptBlock: pre-norm attention and MLP, each with a residual, as HF's MptBlock.forward.

    `past`: keys and values [1, H, P, D] of a shared prefix, attended before the rows' own; `record`: a list
    that receives this block's keys and values.

    A block sharded with FSDP2 (`fully_shard`) is gathered for the duration and freed after, as its own
    forward hooks would do (its submodules are called directly here, so those hooks do not run).
    """
    sharded = is_fsdp_module(block)
    if sharded:
        block.unshard()
    try:
        hidden = _attention_forward(block.attn, block.norm_1(hidden), attend, past, record) + hidden
        ffn = block.ffn
        return ffn.down_proj(ffn.act(ffn.up_proj(block.norm_2(hidden)))) + hidden
    finally:
        if sharded:
            block.reshard()


def _attention_forward(attn: Any, x: torch.Tensor, attend: AttendFn,
                       past: tuple[torch.Tensor, torch.Tensor] | None = None,
                       record: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
    """MptAttention without the eager softmax: fused qkv (optionally clipped), `attend`, out_proj
    (`past` and `record` as in _block_forward)."""
    batch, length, _ = x.shape
    qkv = attn.Wqkv(x)
    if attn.clip_qkv:
        qkv = qkv.clamp(min=-attn.clip_qkv, max=attn.clip_qkv)
    q, k, v = (t.view(batch, length, attn.n_heads, attn.head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=2))
    if record is not None:
        record.append((k, v))
    if past is not None:
        k = torch.cat([past[0].expand(batch, -1, -1, -1), k], dim=2)
        v = torch.cat([past[1].expand(batch, -1, -1, -1), v], dim=2)
    context = attend(q, k, v, attn.softmax_scale)
    return attn.out_proj(context.transpose(1, 2).reshape(batch, length, -1))


def alibi_slopes(model: Any, device: torch.device | None = None) -> torch.Tensor:
    """HF MPT's ALiBi slopes [H] in float32 (build_mpt_alibi_tensor, config.attn_config.alibi_bias_max)."""
    from transformers.models.mpt.modeling_mpt import build_mpt_alibi_tensor

    config = model.config
    # build_mpt_alibi_tensor(H, 2) is slope_h * [-1, 0] per head, shape [H, 1, 2]
    alibi = build_mpt_alibi_tensor(config.n_heads, 2, config.attn_config.alibi_bias_max, device=device)
    return -alibi[:, 0, 0].float()


def _attention_fn(model: Any, hidden: torch.Tensor, position_ids: torch.Tensor | None,
                  segment_ids: torch.Tensor | None, query_start: int = 0) -> AttendFn:
    """The attention used by every layer: flash-attn when it applies, else SDPA with a shared ALiBi/mask bias.

    `hidden` [B, T - query_start, d]: the queries are positions query_start..T-1 of rows of length T (the
    keys of the first query_start positions come from a shared prefix, see mpt_hidden_states).
    """
    slopes = alibi_slopes(model, hidden.device)
    if not query_start and _flash_applies(hidden, position_ids, segment_ids):
        return _flash_attend_fn(slopes)
    bias = _AlibiBias.build(slopes, hidden, position_ids, segment_ids, query_start)
    return bias.attend


@dataclass
class _AlibiBias:
    """ALiBi + mask bias for SDPA, in query chunks [q0, q1) attending keys [0, q1) (causality)."""

    slopes: torch.Tensor  # [H] float32
    positions: torch.Tensor  # [R, T], R = 1 (plain rows, shared by the batch) or B
    segments: torch.Tensor | None  # [B, T] or None (plain causal)
    dtype: torch.dtype
    bounds: list[tuple[int, int]]
    query_start: int = 0  # queries are positions query_start..T-1 (the q tensor's index 0 is query_start)
    cached: list[torch.Tensor] | None = None

    @classmethod
    def build(cls, slopes: torch.Tensor, hidden: torch.Tensor, position_ids: torch.Tensor | None,
              segment_ids: torch.Tensor | None, query_start: int = 0) -> _AlibiBias:
        """Chunk the queries under BIAS_BUDGET_ELEMENTS; build the bias once if it fits entirely."""
        batch, length = hidden.shape[0], hidden.shape[1] + query_start
        device = hidden.device
        if position_ids is None:
            positions = torch.arange(length, device=device)[None]
            if segment_ids is not None:
                positions = positions.expand(batch, length)
        else:
            positions = position_ids.to(device)
        segments = None if segment_ids is None else segment_ids.to(device)
        per_query = positions.shape[0] * slopes.numel() * length
        bounds = _query_chunks(length, max(1, BIAS_BUDGET_ELEMENTS // per_query), query_start)
        bias = cls(slopes, positions, segments, hidden.dtype, bounds, query_start)
        if per_query * (length - query_start) <= BIAS_BUDGET_ELEMENTS:
            bias.cached = [bias.chunk(q0, q1) for q0, q1 in bounds]
        return bias

    def chunks(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(q0, q1, bias [R, H, q1 - q0, q1]) for each query chunk."""
        for i, (q0, q1) in enumerate(self.bounds):
            yield q0, q1, self.cached[i] if self.cached is not None else self.chunk(q0, q1)

    def chunk(self, q0: int, q1: int) -> torch.Tensor:
        """-slope_h * (pos[t] - pos[s]) where allowed, -inf elsewhere, for queries [q0, q1) and keys [0, q1)."""
        distance = (self.positions[:, q0:q1, None] - self.positions[:, None, :q1]).float()
        bias = distance[:, None] * -self.slopes.view(1, -1, 1, 1)
        bias.masked_fill_(~self.allowed(q0, q1)[:, None], float("-inf"))
        return bias.to(self.dtype)

    def allowed(self, q0: int, q1: int) -> torch.Tensor:
        """Boolean [R or 1, q1 - q0, q1]: causal, and with segments the context/same-segment/self rule."""
        if self.segments is None:
            device = self.positions.device
            return (torch.arange(q1, device=device)[None] <= torch.arange(q0, q1, device=device)[:, None])[None]
        return visible(self.segments, q0, q1)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        """SDPA over the query chunks, each against the keys it may see."""
        s = self.query_start
        outputs = [
            F.scaled_dot_product_attention(q[:, :, q0 - s:q1 - s], k[:, :, :q1], v[:, :, :q1], attn_mask=bias,
                                           scale=scale)
            for q0, q1, bias in self.chunks()
        ]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)


def _query_chunks(length: int, size: int, start: int = 0) -> list[tuple[int, int]]:
    """[q0, q1) bounds covering start..length in chunks of `size` (a multiple of 64 when above 64)."""
    if size > 64:
        size -= size % 64
    return [(q0, min(q0 + size, length)) for q0 in range(start, length, size)]


# --- CUDA flash-attn path (cannot run on the CPU dev machines; untested here) --------------------------------


def _flash_applies(hidden: torch.Tensor, position_ids: torch.Tensor | None, segment_ids: torch.Tensor | None) -> bool:
    """flash-attn for plain rows (no position/segment ids) in fp16/bf16 on CUDA, when the package is installed.

    Position ids are required to be None too: flash-attn's ALiBi uses the packed index distance |i - j|, which
    equals ours only for positions 0..T-1.
    """
    return (
        hidden.is_cuda
        and hidden.dtype in (torch.float16, torch.bfloat16)
        and position_ids is None
        and segment_ids is None
        and importlib.util.find_spec("flash_attn") is not None
    )


def _flash_attend_fn(slopes: torch.Tensor) -> AttendFn:
    """CUDA only, not exercised by the tests (no GPU here): flash_attn_func with causal ALiBi.

    flash-attn adds -slope * |i - j|, which under causality is our -slope * (i - j).
    """
    from flash_attn import flash_attn_func

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True,
                              softmax_scale=scale, alibi_slopes=slopes.float())
        return out.transpose(1, 2)  # flash layout [B, T, H, D] back to [B, H, T, D]

    return attend
