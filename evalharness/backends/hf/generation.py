"""Greedy decoding of the HF backend's own: a batch of prompts completed one token per step through a KV cache.

The levers, each an HFOptions switch (docs/performance.md): the rows' shared leading tokens (few-shot examples
common to every prompt) run once as one row whose keys and values every row then attends; a row leaves the
batch, its input and its cache, as soon as it ends (EOS, a stop sequence); stop sequences are looked for only
in rows whose new token can complete one (StopTable), by decoding that row's new tokens. The KV cache's
buffers are allocated once with room for the whole generation. Per step the work is tensor operations over the
live rows; Python runs per row only for flagged tokens. Works for models whose
forward takes `position_ids`, a 2D padding mask with holes, a transformers DynamicCache and `logits_to_keep`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ...requests import cut_at_stop


@dataclass(frozen=True)
class Decoded:
    """One row's generation: its new tokens (through the EOS, or the token that completed a stop sequence, or
    max_new_tokens of them) and whether a stop sequence ended it."""

    tokens: list[int]
    stopped: bool


class StopTable:
    """Which tokens can complete a stop sequence: `flags[token]` is True where the token's text (decoded alone,
    also with the leading space SentencePiece drops) contains a stop string, starts with a non-empty tail of
    one, or holds an incomplete character. A stop string's first occurrence ends inside some token, which
    then holds the string's tail at its start (or the whole string): only rows whose new token is flagged
    need their text decoded. Tokens past the tokenizer's vocabulary are flagged (never skipped)."""

    def __init__(self, tokenizer: Any, stop: Sequence[str], vocab_size: int) -> None:
        self.stop = tuple(s for s in stop if s)
        n = len(tokenizer)
        flags = [True] * max(vocab_size, n)
        tails = tuple({s[j:] for s in self.stop for j in range(1, len(s))}) or ("\0",)
        for i in range(n):
            text = tokenizer.decode([i], skip_special_tokens=True)
            spaced = " " + text
            flags[i] = ("\ufffd" in text or text.startswith(tails) or spaced.startswith(tails)
                        or any(s in spaced for s in self.stop))
        self.flags = torch.tensor(flags, dtype=torch.bool)


def reserved_cache(model: torch.nn.Module, reserve: int) -> Any:
    """A transformers DynamicCache whose layers write new keys and values into buffers with room for `reserve` more
    tokens than the first update brings, instead of concatenating the whole cache again at every step (a copy of
    every layer's cache per generated token, a third of a decoding step at a 1,000-token cache). The keys and
    values handed to attention are views of the buffers' filled part. Where the cache's layers are not plain
    DynamicLayers (sliding windows, another transformers release's layout), the cache is left as it is."""
    from transformers import DynamicCache, cache_utils

    cache = DynamicCache(config=model.config)
    layers = getattr(cache, "layers", None)
    plain = getattr(cache_utils, "DynamicLayer", None)
    if layers and plain is not None and all(type(layer) is plain for layer in layers):
        reserved = _reserved_layer_class()
        cache.layers = [reserved(reserve) for _ in layers]
    return cache


@functools.cache
def _reserved_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class ReservedLayer(DynamicLayer):
        """A DynamicLayer over preallocated buffers [batch, heads, capacity, head_dim]; `keys`/`values` are views of
        the first `length` positions. Grows by doubling if an update does not fit."""

        def __init__(self, reserve: int) -> None:
            super().__init__()
            self.reserve = reserve
            self.length = 0
            self._k: torch.Tensor | None = None
            self._v: torch.Tensor | None = None

        def _store(self, k: torch.Tensor, v: torch.Tensor, length: int) -> None:
            self._k, self._v, self.length = k, v, length
            self.keys, self.values = k[:, :, :length], v[:, :, :length]

        def _with_room(self, buf: torch.Tensor, capacity: int) -> torch.Tensor:
            new = buf.new_empty((*buf.shape[:2], capacity, buf.shape[3]))
            new[:, :, :self.length] = buf[:, :, :self.length]
            return new

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
                   **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            n = key_states.shape[-2]
            if self._k is None:
                shape = (*key_states.shape[:2], n + self.reserve, key_states.shape[3])
                self._k, self._v = key_states.new_empty(shape), value_states.new_empty(shape)
            elif self.length + n > self._k.shape[2]:
                capacity = max(2 * self._k.shape[2], self.length + n)
                self._k, self._v = self._with_room(self._k, capacity), self._with_room(self._v, capacity)
            self._k[:, :, self.length:self.length + n] = key_states
            self._v[:, :, self.length:self.length + n] = value_states
            self._store(self._k, self._v, self.length + n)
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

        def batch_repeat_interleave(self, repeats: int) -> None:
            if self._k is not None:
                self._store(self._k.repeat_interleave(repeats, dim=0), self._v.repeat_interleave(repeats, dim=0),
                            self.length)

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if self._k is not None:
                self._store(self._k[indices], self._v[indices], self.length)

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove < 0 and self._k is not None:
                self._store(self._k, self._v, max(0, self.length + tokens_to_remove))

        def reset(self) -> None:
            self._k = self._v = None
            self.length = 0
            super().reset()

    return ReservedLayer


def greedy_generate(model: torch.nn.Module, rows: Sequence[Sequence[int]], max_new_tokens: int, *, tokenizer: Any,
                    stop: Sequence[str], eos_token_id: int | None, pad_token_id: int, prefix: int = 0,
                    stop_table: StopTable | None = None, drop_finished: bool = True,
                    reserve_cache: bool = True) -> list[Decoded]:
    """Greedy completions of `rows` (prompt tokens), each up to `max_new_tokens`, ended by `eos_token_id` or the
    first occurrence of a `stop` string in its decoded new tokens (skip_special_tokens).

    `prefix`: the first `prefix` tokens, the same in every row and fewer than any row's length, run once. Rows are
    left-padded to the same width after the prefix (the padding masked out, positions counted over real tokens).
    `stop_table`: check only rows whose new token it flags (else every live row's text at every step).
    `drop_finished`: a finished row leaves the batch; else it runs on, fed padding, until every row ends.
    `reserve_cache`: the KV cache written into buffers with room for the whole generation (reserved_cache), else
    transformers' DynamicCache, which concatenates each layer's whole cache again at every step.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    batch = len(rows)
    if batch == 0 or max_new_tokens <= 0:
        return [Decoded([], False) for _ in rows]
    stop = tuple(s for s in stop if s)
    out = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long)
    generated = [0] * batch
    stopped = [False] * batch
    suffixes = [list(r[prefix:]) for r in rows]
    width = max(len(s) for s in suffixes)
    # room for every token still to come after the first forward pass (the prefix's, or the prompts')
    cache = (reserved_cache(model, (width if prefix else 0) + max_new_tokens) if reserve_cache
             else DynamicCache(config=model.config))
    if prefix:
        model(input_ids=torch.tensor([list(rows[0][:prefix])], device=device), past_key_values=cache, use_cache=True,
              position_ids=torch.arange(prefix, device=device)[None], logits_to_keep=1)
        cache.batch_repeat_interleave(batch)
    input_ids = torch.full((batch, width), pad_token_id, dtype=torch.long)
    real = torch.zeros((batch, width), dtype=torch.long)
    for i, s in enumerate(suffixes):  # left padding: every row's last prompt token in the last column
        input_ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        real[i, width - len(s):] = 1
    positions = (prefix + real.cumsum(-1) - 1).clamp(min=prefix)
    mask = torch.cat([torch.ones((batch, prefix), dtype=torch.long), real], dim=1).to(device)
    next_position = positions[:, -1:].to(device) + 1
    live = torch.arange(batch)  # original row of each row still in the batch
    running = torch.ones(batch, dtype=torch.bool)  # without drop_finished: rows not yet finished
    logits = model(input_ids=input_ids.to(device), attention_mask=mask, position_ids=positions.to(device),
                   past_key_values=cache, use_cache=True, logits_to_keep=1).logits
    flags = stop_table.flags.to(device) if stop_table is not None and stop else None
    for step in range(max_new_tokens):
        token = logits[:, -1].argmax(-1)
        if flags is not None:
            flagged = flags[token]
        token_cpu = token.cpu()
        out[live, step] = token_cpu
        if step + 1 == max_new_tokens:
            ended = running.clone()
        else:
            ended = running & (token_cpu == eos_token_id) if eos_token_id is not None else torch.zeros_like(running)
        if stop:  # rows whose new text may now hold a stop sequence
            check = running & ~ended
            if flags is not None:
                check &= flagged.cpu()
            for k in check.nonzero().flatten().tolist():
                row = int(live[k])
                text = tokenizer.decode(out[row, :step + 1].tolist(), skip_special_tokens=True)
                if any(s in text for s in stop):
                    stopped[row] = True
                    ended[k] = True
        for k in ended.nonzero().flatten().tolist():
            generated[int(live[k])] = step + 1
        running &= ~ended
        if not running.any():
            break
        if drop_finished and ended.any():
            keep = running.nonzero().flatten()
            keep_device = keep.to(device)
            cache.batch_select_indices(keep_device)
            mask, next_position, token = mask[keep_device], next_position[keep_device], token[keep_device]
            live, running = live[keep], running[keep]
        elif not drop_finished:
            token = torch.where(running.to(device), token, pad_token_id)
        mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype, device=device)], dim=1)
        logits = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_position,
                       past_key_values=cache, use_cache=True).logits
        next_position = next_position + 1
    return [Decoded(out[i, :generated[i]].tolist(), stopped[i]) for i in range(batch)]


def decoded_text(tokenizer: Any, decoded: Decoded, stop: Sequence[str]) -> tuple[str, bool]:
    """A row's text, cut before its earliest stop sequence, and whether it had one."""
    return cut_at_stop(tokenizer.decode(decoded.tokens, skip_special_tokens=True), tuple(stop))


def stop_in_new_tokens(tokenizer: Any, stop: Sequence[str], prompt_width: int) -> Any:
    """A transformers stopping criterion: a row is done when one of `stop` appears in its new tokens' text.

    transformers' own `stop_strings` also match across the prompt's end (a prompt ending in a newline and a new
    `def` token end a row on "\\ndef" at once); lm-eval and the loop above look at the new tokens only. Each step
    decodes the tail of every row's new tokens (as many tokens as the longest stop has characters, plus 2).
    """
    from transformers import StoppingCriteria

    lookback = max(len(s) for s in stop) + 2

    class StopInNewTokens(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            tails = tokenizer.batch_decode(input_ids[:, prompt_width:][:, -lookback:], skip_special_tokens=True)
            return torch.tensor([any(s in t for s in stop) for t in tails], dtype=torch.bool, device=input_ids.device)

    return StopInNewTokens()
