"""The Hugging Face backend's typed settings (`--backend-option KEY=VALUE`, or `HFOptions(...)` in Python)."""

from __future__ import annotations

from dataclasses import dataclass

# A batch shares its rows' common leading tokens (few-shot examples, a task description, zero-shot MMLU's
# ~15-token subject header) when there are at least MIN_SHARED_PREFIX of them, they are at least
# SHARED_FRACTION of the batch's width and running them once saves at least MIN_SAVED_PREFIX_TOKENS
# ((rows - 1) x prefix): they run once, as a one-row prefix whose KV cache every row of the batch attends.
# Rows that share that much are batched together, apart from the others, if the group saves as much.
# Measured on zero-shot MMLU, 20 per subject, bfloat16: (8, 0.05, 64) ran 1.04x faster than (32, 0.25, 256),
# which only grouped long few-shot prefixes; identical log-probs (docs/performance.md).
MIN_SHARED_PREFIX = 8
SHARED_FRACTION = 0.05
MIN_SAVED_PREFIX_TOKENS = 64

# What one more forward pass costs, in tokens' worth of compute: batches are cut to minimise padded tokens +
# this per batch (packing.plan_batches). 128 and 256 gave the same 1.06x in bfloat16, 128 the better one in
# float32 (docs/performance.md).
BATCH_OVERHEAD_TOKENS = 128

# With prefix sharing available, contexts longer than this are not packed: each choice gets its own row, the
# rows of an item share the whole context as their prefix and run it once through the KV cache. Packing wins
# at ~180-token contexts (piqa 5-shot, 1.08x), the KV cache at ~800 (hellaswag 10-shot, 1.5x).
PACK_MAX_CONTEXT = 512

# Rows of logits reduced at a time by read_logprobs: a 32 x 49k float32 block stays in cache.
READ_CHUNK = 32


@dataclass(frozen=True)
class HFOptions:
    """How the HF backend runs a model. None means "decide from the model" for the booleans.

    pack: choices of one question share a row behind a block mask (where the model type allows it).
    share_prefix: rows with a long common prefix run it once through a KV cache (not under FSDP).
    batch_overhead_tokens: the per-pass cost batches are planned with; None: plain batches of batch_size.
    mask_free: plain right-padded batches run without a padding mask (causal attention never sees padding).
    read_chunk: rows of logits reduced at a time when reading log-probs.
    accelerator: "auto" (an installed accelerator plugin whose guard passes for this device and model, e.g. the
        CPU plugin), "none", or a plugin's name ("cpu").
    add_bos_token: None (lm-eval 0.4.13's rule: the tokenizer's own special tokens, e.g. a BOS for Gemma and
        Llama tokenizers, nothing for GPT-2/GPT-NeoX/SmolLM2), True (a BOS in front of every input), False (no
        special tokens). Also `--add-bos-token` / `--no-add-bos-token`.

    Greedy generation (generation.py; sampled requests always run through transformers' `generate`):
    gen_loop: the backend's own decoding loop where the model allows it (Llama-family types under sdpa/eager,
        not sharded); False: transformers' `generate`, as lm-eval runs it.
    gen_sort: prompts sorted longest first before they are cut into batches (else in request order).
    gen_share_prefix: the leading tokens every prompt of a batch shares run once, their KV cache repeated
        (None: where the own loop runs).
    gen_drop_finished: a finished row leaves the batch and its cache at once (else it runs on until all end).
    gen_stop_table: stop sequences looked for only in rows whose new token can complete one (else in every
        live row's text at every step).
    gen_reserve_cache: the loop's KV cache in buffers allocated once with room for the whole generation (else
        transformers' DynamicCache, which copies each layer's whole cache at every step).
    gen_accelerate: the accelerator's forward swaps (its `scoring()` context, e.g. the CPU plugin's kernels and
        packed weights) also around the greedy loop's forward passes (else the loop runs transformers' modules).
    """

    pack: bool | None = None
    share_prefix: bool | None = None
    batch_overhead_tokens: float | None = BATCH_OVERHEAD_TOKENS
    mask_free: bool = True
    read_chunk: int = READ_CHUNK
    accelerator: str = "auto"
    add_bos_token: bool | None = None
    gen_loop: bool = True
    gen_sort: bool = True
    gen_share_prefix: bool | None = None
    gen_drop_finished: bool = True
    gen_stop_table: bool = True
    gen_reserve_cache: bool = True
    gen_accelerate: bool = True

    def __post_init__(self) -> None:
        from ...errors import ConfigError

        if self.read_chunk < 1:
            raise ConfigError(f"backend option read_chunk must be >= 1, got {self.read_chunk}")
        if self.batch_overhead_tokens is not None and self.batch_overhead_tokens < 0:
            raise ConfigError(f"backend option batch_overhead_tokens must be >= 0, got {self.batch_overhead_tokens}")
