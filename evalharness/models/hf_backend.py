"""The Hugging Face causal-LM backend: answers log-likelihood requests. Knows nothing about tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..requests import LoglikelihoodRequest, LoglikelihoodResult

# Model types whose logits are exactly `output_embeddings(last_hidden_state)`: for these the head runs
# only at the positions whose log-probs are read (no logit scaling or soft-capping to reproduce).
_PLAIN_HEAD_TYPES = frozenset({
    "llama", "mistral", "mpt", "falcon", "gpt_neox", "qwen2", "qwen3", "gpt2", "olmo", "olmo2", "phi3",
    "starcoder2", "gptj", "smollm3",
})


@dataclass(frozen=True)
class _Scored:
    """One request placed on a model input row: which tokens of the row's predictions it reads."""

    index: int  # position in the caller's request list
    targets: tuple[int, ...]  # the continuation tokens (after any left truncation)
    truncated: bool


class HFCausalLM:
    """Scores (context, continuation) pairs with a transformers causal LM.

    Tokenisation follows lm-evaluation-harness: trailing whitespace of the context moves to the
    continuation; the context is encoded alone, context+continuation is encoded whole, and the
    continuation is the whole encoding's tokens past the context's length. No special tokens are added;
    an empty context is replaced by the BOS (else EOS) token. Inputs longer than `max_length` lose tokens
    on the left. Requests are batched longest first, padded on the right to the batch's longest row.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, batch_size: int = 16, max_length: int | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(max_length or infer_max_length(model, tokenizer))
        self.device = next(model.parameters()).device
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        self._split_head = (
            model_type in _PLAIN_HEAD_TYPES
            and getattr(model, "base_model_prefix", None) is not None
            and hasattr(model, getattr(model, "base_model_prefix", ""))
            and model.get_output_embeddings() is not None
        )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad if pad is not None else 0)
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix_token_id = prefix

    # ---- tokenisation ------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens) at the lm-eval boundary."""
        n_space = len(context) - len(context.rstrip())
        if n_space:
            continuation = context[-n_space:] + continuation
            context = context[:-n_space]
        if not context:
            if self.prefix_token_id is None:
                raise ValueError("empty context and the tokenizer has neither a BOS nor an EOS token")
            return [int(self.prefix_token_id)], self.encode(continuation)
        context_ids = self.encode(context)
        whole = self.encode(context + continuation)
        return context_ids, whole[len(context_ids):]

    # ---- scoring -----------------------------------------------------------------------------
    def loglikelihood(
        self,
        requests: Sequence[LoglikelihoodRequest],
        progress: Callable[[int], None] | None = None,
    ) -> list[LoglikelihoodResult]:
        """Answer every request; results come back in the requests' order. `progress(n)` after each batch.

        Requests that feed the model the same input row (e.g. the choices of a multiple-choice question
        whose answers are one token each) share one row of the batch.
        """
        rows: dict[tuple[int, ...], list[_Scored]] = {}
        for i, r in enumerate(requests):
            context, continuation = self.encode_pair(r.context, r.continuation)
            tokens = (context + continuation)[-(self.max_length + 1):]
            n_cont = min(len(continuation), len(tokens) - 1)
            scored = _Scored(i, tuple(tokens[len(tokens) - n_cont:]) if n_cont else (), len(context) + len(continuation) > len(tokens))
            rows.setdefault(tuple(tokens[:-1]), []).append(scored)
        order = sorted(rows.items(), key=lambda kv: -len(kv[0]))
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            for res in self._score_batch(batch):
                results[res[0]] = res[1]
            if progress is not None:
                progress(sum(len(members) for _, members in batch))
        return results  # type: ignore[return-value]

    def _score_batch(self, batch: Sequence[tuple[tuple[int, ...], list[_Scored]]]) -> list[tuple[int, LoglikelihoodResult]]:
        width = max(len(row) for row, _ in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        b_idx, p_idx, targets, members = [], [], [], []
        for i, (row, scored) in enumerate(batch):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
            for s in scored:  # the last len(targets) positions of the row predict the continuation
                n = len(s.targets)
                b_idx += [i] * n
                p_idx += range(len(row) - n, len(row))
                targets += s.targets
                members.append(s)
        targets_t = torch.tensor(targets, dtype=torch.long)
        with torch.inference_mode():
            logits = self._logits_at(input_ids.to(self.device), attention_mask.to(self.device),
                                     torch.tensor(b_idx, dtype=torch.long), torch.tensor(p_idx, dtype=torch.long))
            logprobs = F.log_softmax(logits.float(), dim=-1).cpu()
        token_lp = logprobs[torch.arange(len(targets)), targets_t]
        greedy = logprobs.argmax(dim=-1) == targets_t
        out, offset = [], 0
        for s in members:
            n = len(s.targets)
            out.append((s.index, LoglikelihoodResult(
                logprob=float(token_lp[offset:offset + n].sum()),
                is_greedy=bool(greedy[offset:offset + n].all()),
                num_tokens=n,
                truncated=s.truncated,
            )))
            offset += n
        return out

    def _logits_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, b_idx: torch.Tensor, p_idx: torch.Tensor) -> torch.Tensor:
        """Logits at the (row, position) pairs; the LM head runs only there when the model allows it."""
        b_idx, p_idx = b_idx.to(input_ids.device), p_idx.to(input_ids.device)
        if self._split_head:
            body = getattr(self.model, self.model.base_model_prefix)
            hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)[0]
            return self.model.get_output_embeddings()(hidden[b_idx, p_idx])
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return logits[b_idx, p_idx]


def infer_max_length(model: torch.nn.Module, tokenizer=None) -> int:
    """The longest input the model takes: its config's length, else the tokenizer's, else 2048."""
    config = getattr(model, "config", None)
    for attr in ("max_seq_len", "max_position_embeddings", "n_positions", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 1_000_000:
        return value
    return 2048
