"""The Hugging Face causal-LM backend (`--backend hf`): answers log-likelihood and generation requests.

Knows nothing about tasks. The levers here help on every device: packed rows for multiple choice, shared
prefixes run once through a KV cache, the LM head only at the read positions, batch planning, MPT's attention
through scaled-dot-product attention with ALiBi. Hardware-specific speed work comes from an accelerator plugin
(accelerator.py) through three hooks; this module never imports one.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Sequence

import torch

from ...errors import InputTooLong
from ...requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult, cut_at_stop
from ..base import Backend, Capabilities, OnResults, Progress, deliver, deliver_known
from .accelerator import Accelerator, AcceleratorStatus, find_accelerator
from .generation import StopTable, decoded_text, greedy_generate, stop_in_new_tokens
from .logprobs import read_logprobs
from .mpt_attention import mpt_hidden_states, supports_fast_mpt
from .options import MIN_SAVED_PREFIX_TOKENS, MIN_SHARED_PREFIX, PACK_MAX_CONTEXT, SHARED_FRACTION, HFOptions
from .packing import (
    Row,
    allowed_mask,
    check_continuations_fit,
    plan_batches,
    plan_rows,
    prefix_groups,
    prefix_saving_pays,
    shared_prefix_length,
)
from .sharding import is_sharded, root_gathered

log = logging.getLogger("evalharness")

# Model types whose logits are exactly `output_embeddings(last_hidden_state)`: for these the head runs
# only at the positions whose log-probs are read (no logit scaling or soft-capping to reproduce).
_PLAIN_HEAD_TYPES = frozenset({
    "llama", "mistral", "mpt", "falcon", "gpt_neox", "qwen2", "qwen3", "gpt2", "olmo", "olmo2", "phi3",
    "starcoder2", "gptj", "smollm3",
})

# Model types whose transformers forward takes a custom 4D attention mask and explicit position ids, so that
# packed rows (one context, several choice segments behind a block mask) score exactly like separate rows.
# Each is checked against separate rows on a small random model in the packing tests.
_PACKABLE_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2", "phi3", "smollm3", "gpt_neox"})


class HFBackend(Backend):
    """Answers requests with a transformers causal LM (`model`, `tokenizer`), settings in `options` (HFOptions).

    Tokenisation follows lm-evaluation-harness: trailing whitespace of the context moves to the
    continuation; the context is encoded alone, context+continuation is encoded whole, and the
    continuation is the whole encoding's tokens past the context's length. No special tokens are added;
    an empty context is replaced by the BOS (else EOS) token. Inputs longer than `max_length` lose tokens
    on the left.

    Requests with the same context share one input row: with `pack` (the default where the model allows
    it) the choices' tokens follow the context as separate segments behind a block mask, so the context
    runs once (packing.py). Rows are batched longest first, padded on the right to the batch's longest row;
    rows that share a long prefix (few-shot examples: MMLU's five dev questions per subject) are batched
    together and the batch runs that prefix once, attending its KV cache. The LM head runs only at the
    positions whose log-probs are read, and its log-softmax is reduced in cache-sized blocks (logprobs.py).
    HF MPT runs through our own scaled-dot-product attention with ALiBi (mpt_attention.py) instead of
    transformers' eager attention. An FSDP-sharded model's root parameters are gathered once per batch.
    """

    name = "hf"

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, batch_size: int = 16, max_length: int | None = None,
                 options: HFOptions | None = None, identity: str | None = None, model_info: dict[str, Any] | None = None,
                 process_wide: bool = False, accelerator: Accelerator | None = None,
                 default_chat_template: str | None = None) -> None:
        """`identity`: what the request cache keys this model by (default: the model's class, config and dtype;
        `load_hf_backend` passes the weights' fingerprint). `model_info`: what results.json says about the model.
        `process_wide`: an accelerator may change process-wide settings (the command line's own process only).
        `accelerator`: one already bound to `model`, instead of the one `options.accelerator` finds.
        `default_chat_template`: the built-in chat template `--apply-chat-template` uses for this model (a preset's)."""
        self.options = options = options or HFOptions()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        self._max_length = int(max_length or infer_max_length(model, tokenizer))
        self.device = next(model.parameters()).device
        self._sharded = is_sharded(model)
        if accelerator is not None:
            self.accelerator = accelerator
            self.accelerator_status = AcceleratorStatus("given", accelerator.name, "given by the caller",
                                                        accelerator.describe())
        else:
            self.accelerator, self.accelerator_status = find_accelerator(options.accelerator, model, process_wide)
        log.info(self.accelerator_status.message())
        self._model_info = dict(model_info or {})
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        self._split_head = (
            model_type in _PLAIN_HEAD_TYPES
            and getattr(model, "base_model_prefix", None) is not None
            and hasattr(model, getattr(model, "base_model_prefix", ""))
            and model.get_output_embeddings() is not None
        )
        self._fast_mpt = supports_fast_mpt(model)
        self._attn_implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
        packable = self._fast_mpt or (model_type in _PACKABLE_TYPES and self._attn_implementation in ("sdpa", "eager"))
        self.pack = packable if options.pack is None else (options.pack and packable)
        # a batch whose rows start with the same long prefix runs it once, through a KV cache. Not with FSDP:
        # the extra pass would gather the shards on some ranks and not others, so their collectives would not pair.
        can_share = not self._sharded and (
            self._fast_mpt or (model_type in _PACKABLE_TYPES and self._split_head
                               and self._attn_implementation in ("sdpa", "eager")))
        self.share_prefix = can_share if options.share_prefix is None else (options.share_prefix and can_share)
        # greedy generation through generation.py: models taking position ids, a padding mask with holes and a
        # DynamicCache; not under FSDP (rows leaving the batch would make the ranks' forward passes differ)
        self.own_generation = options.gen_loop and not self._sharded and not self._fast_mpt and (
            model_type in _PACKABLE_TYPES and self._attn_implementation in ("sdpa", "eager"))
        self.gen_share_prefix = self.own_generation and options.gen_share_prefix is not False
        self._stop_tables: dict[tuple[str, ...], StopTable] = {}
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_token_id = int(pad if pad is not None else 0)
        prefix = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        self.prefix_token_id = prefix
        self.default_chat_template = default_chat_template
        self.special_prefix, self.special_suffix = special_tokens(tokenizer, options.add_bos_token)
        # lm-eval adds no special tokens to a text that already starts with the BOS text (a chat template's
        # "<bos>"): the text of the empty-context token for log-likelihoods, the tokenizer's BOS for generation
        self._bos_texts = (tokenizer.decode([prefix]) if prefix is not None else None,
                           getattr(tokenizer, "bos_token", None))
        self._identity = identity or _default_identity(model)

    # ---- the Backend interface ---------------------------------------------------------------
    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(plans_batches=True, lockstep=self._sharded)

    @property
    def max_length(self) -> int:
        return self._max_length

    def identity(self) -> str:
        special = (f"|special_tokens={self.special_prefix}+{self.special_suffix}"
                   if self.special_prefix or self.special_suffix else "")  # no change to plain-text identities
        return f"hf|{self._identity}|max_length={self._max_length}{special}"

    def batches(self, kind: str, requests: Sequence[Any]) -> list[list[int]]:
        if kind == "loglikelihood":
            return [[s.index for row in batch for s in row.scored] for batch in self._loglikelihood_plan(requests)]
        return [batch for batch, _, _ in self._generate_plan(requests)]

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"name": self.name, "batch_size": self.batch_size, "max_length": self._max_length,
                "options": {"pack": self.pack, "share_prefix": self.share_prefix,
                            "batch_overhead_tokens": o.batch_overhead_tokens, "mask_free": o.mask_free,
                            "read_chunk": o.read_chunk, "accelerator": o.accelerator,
                            "add_bos_token": o.add_bos_token, "gen_loop": self.own_generation,
                            "gen_sort": o.gen_sort, "gen_share_prefix": self.gen_share_prefix,
                            "gen_drop_finished": o.gen_drop_finished, "gen_stop_table": o.gen_stop_table,
                            "gen_reserve_cache": o.gen_reserve_cache, "gen_accelerate": o.gen_accelerate},
                "special_tokens": {"add_bos_token": o.add_bos_token, "prefix": self.special_prefix,
                                   "suffix": self.special_suffix,
                                   "rule": "lm-eval 0.4.13: the tokenizer's own special tokens unless add_bos_token "
                                           "says otherwise; none for a text starting with the BOS text"},
                "accelerator": self.accelerator_status.to_dict()}

    def model_info(self) -> dict[str, Any]:
        dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        return {"dtype": dtype, "device": str(self.device), **self._model_info}

    def resource_usage(self) -> dict[str, Any]:
        from ...models.fsdp import parameter_bytes

        usage: dict[str, Any] = {"param_bytes": parameter_bytes(self.model)}
        if self.device.type == "cuda":
            usage["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return usage

    def chat_template(self, name: str) -> Any:
        """The chat template NAME selects for this model's tokenizer (evalharness.chat.resolve_chat_template)."""
        from ...chat import resolve_chat_template

        return resolve_chat_template(self.tokenizer, name, self.default_chat_template)

    def _batch_scope(self) -> contextlib.AbstractContextManager[Any]:
        """Around each batch: an FSDP model's root parameters gathered (see _root_gathered)."""
        return root_gathered(self.model) if self._sharded else contextlib.nullcontext()

    # ---- tokenisation ------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """A generation prompt's tokens, with the special tokens lm-eval's generate_until adds."""
        return self._encode_many([text], self._bos_texts[1])[text]

    def _encode_many(self, texts: Sequence[str], bos_text: str | None) -> dict[str, list[int]]:
        """Each text's tokens: the special prefix and suffix around its plain tokens, or none for a text that
        starts with `bos_text` (lm-eval's has_bos_prefix rule)."""
        texts = list(dict.fromkeys(texts))
        plain = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        out = {}
        for text, ids in zip(texts, plain):
            bare = bool(bos_text) and text.startswith(bos_text)
            out[text] = list(ids) if bare else [*self.special_prefix, *ids, *self.special_suffix]
        return out

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens) at the lm-eval boundary."""
        return self.encode_pairs([LoglikelihoodRequest(context, continuation)])[0]

    def encode_pairs(self, requests: Sequence[LoglikelihoodRequest]) -> list[tuple[list[int], list[int]]]:
        """(context tokens, continuation tokens) of every request at the lm-eval boundary (see the class
        docstring), each distinct text tokenised once, in one batched call."""
        split = []
        for r in requests:
            context, continuation = r.context, r.continuation
            n_space = len(context) - len(context.rstrip())
            if n_space:
                context, continuation = context[:-n_space], context[-n_space:] + continuation
            split.append((context, continuation))
        ids = self._encode_many([t for c, x in split if c for t in (c, c + x)], self._bos_texts[0])
        bare = [x for c, x in split if not c]
        bare_ids = dict(zip(bare, self.tokenizer(bare, add_special_tokens=False)["input_ids"])) if bare else {}
        out = []
        for context, continuation in split:
            if not context:  # the BOS (else EOS) token as context, unless the continuation starts with it (lm-eval)
                if self.prefix_token_id is None:
                    raise ValueError("empty context and the tokenizer has neither a BOS nor an EOS token")
                cont = list(bare_ids[continuation])
                prefix = int(self.prefix_token_id)
                out.append(([prefix], cont) if not cont or cont[0] != prefix else (cont[:1], cont[1:]))
                continue
            context_ids = ids[context]
            out.append((context_ids, ids[context + continuation][len(context_ids):]))
        return out

    # ---- scoring -----------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: Progress | None = None,
                      on_results: OnResults | None = None,
                      known: Sequence[LoglikelihoodResult | None] | None = None) -> list[LoglikelihoodResult]:
        """Answer every request; results come back in the requests' order.

        After each batch: `on_results([(request index, result), ...])`, then `progress(number of requests)`.
        `known` (e.g. from a cache): results already available; a batch whose requests are all known is
        skipped. Batches are formed from all requests either way, so a resumed run computes every batch
        exactly as an uninterrupted run does.

        Requests that feed the model the same input row (e.g. the choices of a multiple-choice question
        whose answers are one token each) share one row of the batch.
        """
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        for batch in self._loglikelihood_plan(requests):
            if not deliver_known([s.index for row in batch for s in row.scored], known, results, progress):
                with self._batch_scope():
                    done = self._score_batch(batch)
                deliver(done, results, on_results, progress)
        return results  # type: ignore[return-value]

    def _loglikelihood_plan(self, requests: Sequence[LoglikelihoodRequest]) -> list[list[Row]]:
        """Input rows (shared or packed per context, see packing.plan_rows), longest first, cut into batches."""
        encoded = self.encode_pairs(requests)
        check_continuations_fit(encoded, self.max_length)
        rows = plan_rows(encoded, self.max_length, pack=self.pack,
                         max_packed_context=PACK_MAX_CONTEXT if self.share_prefix else None)
        groups = (prefix_groups(rows, SHARED_FRACTION, MIN_SHARED_PREFIX, MIN_SAVED_PREFIX_TOKENS)
                  if self.share_prefix else [rows])
        batches: list[list[Row]] = []
        ordered = [sorted(group, key=lambda row: -len(row.tokens)) for group in groups]  # each longest first
        for group in sorted(ordered, key=lambda g: -len(g[0].tokens)):  # the group with the longest row first
            bounds = plan_batches([len(row.tokens) for row in group], self.batch_size,
                                  self.options.batch_overhead_tokens)
            batches += [group[i:j] for i, j in bounds]
        return batches

    def _score_batch(self, batch: Sequence[Row]) -> list[tuple[int, LoglikelihoodResult]]:
        width = max(len(row.tokens) for row in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        packed = any(row.packed for row in batch)
        positions = segments = None
        if packed:
            positions = torch.zeros((len(batch), width), dtype=torch.long)
            segments = torch.full((len(batch), width), -1, dtype=torch.long)
        b_idx: list[int] = []
        p_idx: list[int] = []
        targets: list[int] = []
        members = []
        for i, row in enumerate(batch):
            n = len(row.tokens)
            input_ids[i, :n] = torch.tensor(row.tokens, dtype=torch.long)
            attention_mask[i, :n] = 1
            if packed:
                positions[i, :n] = torch.tensor(row.positions if row.positions is not None else range(n))
                segments[i, :n] = torch.tensor(row.segments) if row.segments is not None else 0
            for s in row.scored:
                b_idx += [i] * len(s.reads)
                p_idx += s.reads
                targets += s.targets
                members.append(s)
        targets_t = torch.tensor(targets, dtype=torch.long)
        with torch.inference_mode(), self._accelerated():
            logits = self._logits_at(input_ids.to(self.device), attention_mask.to(self.device),
                                     torch.tensor(b_idx, dtype=torch.long), torch.tensor(p_idx, dtype=torch.long),
                                     positions, segments, prefix=self._shared_prefix(batch))
            targets_t = targets_t.to(logits.device)
            fast = self.accelerator.log_probs(logits, targets_t) if self.accelerator is not None else None
            token_lp, greedy = fast if fast is not None else read_logprobs(logits, targets_t, self.options.read_chunk)
        token_lp, greedy = token_lp.cpu(), greedy.cpu()
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

    def _shared_prefix(self, batch: Sequence[Row]) -> int:
        """How many leading tokens every row of the batch shares and may run once (0: none).

        Capped below every row's first read position, so that each hidden state read lies after the prefix
        (in packed rows that keeps the prefix inside the shared context, whose positions are 0..n-1).
        """
        if not self.share_prefix or len(batch) < 2:
            return 0
        n = shared_prefix_length([row.tokens for row in batch], min(min(s.reads[0] for s in row.scored) for row in batch))
        if n < MIN_SHARED_PREFIX:
            return 0
        width = max(len(row.tokens) for row in batch)
        return n if n >= SHARED_FRACTION * width and prefix_saving_pays(len(batch), n, MIN_SAVED_PREFIX_TOKENS) else 0

    # ---- generation --------------------------------------------------------------------------
    def generate_until(self, requests: Sequence[GenerateRequest], *, progress: Progress | None = None,
                       on_results: OnResults | None = None,
                       known: Sequence[GenerateResult | None] | None = None) -> list[GenerateResult]:
        """Complete every prompt; results in the requests' order. After each batch, `on_results` and
        `progress` as for `loglikelihood`.

        Greedy requests with the same settings are batched (sorted by length, left-padded, KV cache);
        a row stops at its stop sequence or EOS. Where the model allows it they run through the backend's own
        loop (generation.py: the batch's shared prefix once, finished rows leaving the batch), else through
        transformers' `generate`. Sampled requests run one at a time, all their samples in one batch, with
        the RNG seeded from the request's seed, so they do not depend on batching.
        """
        results: list[GenerateResult | None] = [None] * len(requests)
        for batch, rows, settings in self._generate_plan(requests):
            if not deliver_known(batch, known, results, progress):
                with self._batch_scope():
                    done = list(zip(batch, self._generate_batch(rows, settings)))
                deliver(done, results, on_results, progress)
        return results  # type: ignore[return-value]

    def _generate_plan(self, requests: Sequence[GenerateRequest]) -> list[tuple[list[int], list[list[int]], GenerateRequest]]:
        """(request indices, their prompt tokens, the group's settings) of each batch: greedy requests with the
        same settings together, longest prompt first; sampled requests one per batch."""
        groups: dict[tuple, list[int]] = {}
        longest = max(range(len(requests)), key=lambda i: requests[i].max_new_tokens, default=None)
        if longest is not None and requests[longest].max_new_tokens >= self.max_length:  # no room for the prompt
            raise InputTooLong(longest, requests[longest].max_new_tokens + 1, self.max_length,
                               f"{requests[longest].max_new_tokens} generated tokens after at least one prompt token")
        for i, r in enumerate(requests):
            key = (r.stop, r.max_new_tokens, r.temperature, r.top_p, r.num_samples, r.seed if r.temperature > 0 else None)
            groups.setdefault(key, []).append(i)
        plan = []
        for indices in groups.values():
            first = requests[indices[0]]
            encoded = {i: self._encode_prompt(requests[i].prompt, first.max_new_tokens) for i in indices}
            order = sorted(indices, key=lambda i: -len(encoded[i])) if self.options.gen_sort else indices
            step = self.batch_size if first.temperature <= 0 else 1
            for start in range(0, len(order), step):
                batch = order[start:start + step]
                plan.append((batch, [encoded[i] for i in batch], first))
        return plan

    def _encode_prompt(self, prompt: str, max_new_tokens: int) -> list[int]:
        ids = self.encode(prompt) if prompt else [int(self.prefix_token_id)]
        keep = max(1, self.max_length - max_new_tokens)
        return ids[-keep:]

    def _generate_batch(self, rows: list[list[int]], req: GenerateRequest) -> list[GenerateResult]:
        if self.own_generation and req.temperature <= 0 and req.num_samples == 1:
            return self._greedy_batch(rows, req)
        return self._hf_generate_batch(rows, req)

    def _accelerated(self, wanted: bool = True) -> contextlib.AbstractContextManager[Any]:
        """The accelerator's forward swaps (its `scoring()` hook) if one is bound and `wanted`, else nothing."""
        return self.accelerator.scoring() if self.accelerator is not None and wanted else contextlib.nullcontext()

    def _greedy_batch(self, rows: list[list[int]], req: GenerateRequest) -> list[GenerateResult]:
        """Greedy completions through generation.py, the batch's shared prefix run once when that pays."""
        prefix = 0
        if self.gen_share_prefix and len(rows) > 1:
            # every row keeps at least one token after the prefix
            prefix = shared_prefix_length(rows, min(len(r) for r in rows) - 1)
            if prefix < MIN_SHARED_PREFIX or not prefix_saving_pays(len(rows), prefix, MIN_SAVED_PREFIX_TOKENS):
                prefix = 0
        table = None
        if self.options.gen_stop_table and req.stop:
            if req.stop not in self._stop_tables:
                self._stop_tables[req.stop] = StopTable(self.tokenizer, req.stop,
                                                        int(getattr(self.model.config, "vocab_size", 0) or 0))
            table = self._stop_tables[req.stop]
        with torch.inference_mode(), self._accelerated(self.options.gen_accelerate):
            decoded = greedy_generate(self.model, rows, req.max_new_tokens, tokenizer=self.tokenizer, stop=req.stop,
                                      eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.pad_token_id,
                                      prefix=prefix, stop_table=table, drop_finished=self.options.gen_drop_finished,
                                      reserve_cache=self.options.gen_reserve_cache)
        results = []
        for d in decoded:
            text, hit = decoded_text(self.tokenizer, d, req.stop)
            results.append(GenerateResult((text,), (len(d.tokens),), (hit,)))
        return results

    def _hf_generate_batch(self, rows: list[list[int]], req: GenerateRequest) -> list[GenerateResult]:
        """Completions through transformers' `generate` (left-padded batch, stops looked for in the new tokens only;
        sampling seeded)."""
        from transformers import GenerationConfig, StoppingCriteriaList

        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # left padding: every row's last prompt token is at the same column
            input_ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            attention_mask[i, width - len(r):] = 1
        sample = req.temperature > 0
        config = GenerationConfig(
            max_new_tokens=req.max_new_tokens,
            do_sample=sample,
            temperature=req.temperature if sample else None,
            top_p=req.top_p if sample else None,
            top_k=None,
            num_return_sequences=req.num_samples,
            pad_token_id=self.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        stopping = StoppingCriteriaList([stop_in_new_tokens(self.tokenizer, req.stop, width)] if req.stop else [])
        if sample:
            torch.manual_seed(req.seed)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                generation_config=config, stopping_criteria=stopping,
            )
        new = out[:, width:].cpu()
        results = []
        for i in range(len(rows)):
            texts, counts, stopped = [], [], []
            for j in range(req.num_samples):
                tokens = new[i * req.num_samples + j].tolist()
                n = _generated_length(tokens, self.tokenizer.eos_token_id, self.pad_token_id)
                text, hit = cut_at_stop(self.tokenizer.decode(tokens[:n], skip_special_tokens=True), req.stop)
                if hit and n > 1 and tokens[n - 1] == self.pad_token_id and cut_at_stop(
                        self.tokenizer.decode(tokens[:n - 1], skip_special_tokens=True), req.stop)[1]:
                    n -= 1  # the padding (= EOS) transformers writes after a row its stop string ended
                texts.append(text)
                counts.append(n)
                stopped.append(hit)
            results.append(GenerateResult(tuple(texts), tuple(counts), tuple(stopped)))
        return results

    def _logits_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, b_idx: torch.Tensor, p_idx: torch.Tensor,
                   positions: torch.Tensor | None = None, segments: torch.Tensor | None = None,
                   prefix: int = 0) -> torch.Tensor:
        """Logits at the (row, position) pairs; the LM head runs only there when the model allows it.

        With `segments` (packed rows), attention follows the block mask and positions restart per segment.
        With `prefix`, the first `prefix` tokens (the same in every row) run once (see _prefix_hidden_states).
        """
        b_idx, p_idx = b_idx.to(input_ids.device), p_idx.to(input_ids.device)
        if self._fast_mpt:
            if segments is not None:
                positions, segments = positions.to(input_ids.device), segments.to(input_ids.device)
            hidden = mpt_hidden_states(self.model, input_ids, positions, segments, prefix)
            return self.model.get_output_embeddings()(hidden[b_idx, p_idx - prefix])
        # Rows are right-padded and causal: no real position ever sees a padding token, so plain batches need
        # no padding mask, and attention takes its fused causal path (padding positions are never read).
        kwargs: dict[str, Any] = {"attention_mask": None if self.options.mask_free else attention_mask,
                                  "use_cache": False}
        if segments is not None:
            allowed = allowed_mask(segments.to(input_ids.device))
            if self._attn_implementation == "eager":  # eager attention adds the mask to the scores
                dtype = next(self.model.parameters()).dtype
                allowed = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
                    ~allowed, torch.finfo(dtype).min)
            kwargs = {"attention_mask": allowed, "position_ids": positions.to(input_ids.device), "use_cache": False}
        if not (prefix or self._split_head):
            return self.model(input_ids=input_ids, **kwargs).logits[b_idx, p_idx]
        reads = inverse = None
        if self.accelerator is not None and self.accelerator.at_reads:  # the body's end only at the distinct reads
            width = input_ids.shape[1]
            flat, inverse = torch.unique(b_idx * width + p_idx, return_inverse=True)
            reads = (flat // width, flat % width - prefix)
        if prefix:
            hidden, at_reads = self._prefix_hidden_states(input_ids, prefix, kwargs, reads)
        else:
            hidden, at_reads = self._body(reads, input_ids=input_ids, **kwargs)
        return self.model.get_output_embeddings()(hidden[0, inverse] if at_reads else hidden[b_idx, p_idx - prefix])

    def _body(self, reads: tuple[torch.Tensor, torch.Tensor] | None, **kwargs: Any) -> tuple[torch.Tensor, bool]:
        """(the body's final hidden states, whether they are only those at `reads`).

        With `reads` (rows, positions among the tokens fed), the accelerator may compute the last layer only there;
        the hidden states then come back as [1, len(rows), hidden]; else, or if it declines, [B, T, hidden].
        """
        body = getattr(self.model, self.model.base_model_prefix)
        if reads is None or self.accelerator is None:
            return body(**kwargs)[0], False
        with self.accelerator.body_at_reads(*reads) as at_reads:
            return body(**kwargs)[0], at_reads

    def _prefix_hidden_states(self, input_ids: torch.Tensor, prefix: int, kwargs: dict[str, Any],
                              reads: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, bool]:
        """Final hidden states at positions prefix.. of every row, as `_body` returns them: the shared prefix
        runs once as one row, its KV cache is repeated over the batch, then the rest of each row runs attending
        that cache. With `reads` (positions counted from the prefix's end), the last layer runs only there, and
        in the prefix pass only its keys and values.

        `kwargs` are the whole rows' attention arguments (mask over all W positions, position ids, or none).
        """
        from transformers import DynamicCache

        batch, width = input_ids.shape
        device = input_ids.device
        cache = DynamicCache(config=self.model.config)
        none = torch.zeros(0, dtype=torch.long, device=device)
        self._body(None if reads is None else (none, none), input_ids=input_ids[:1, :prefix],
                   position_ids=torch.arange(prefix, device=device)[None], past_key_values=cache, use_cache=True)
        cache.batch_repeat_interleave(batch)
        mask, positions = kwargs.get("attention_mask"), kwargs.get("position_ids")
        if mask is not None and mask.dim() == 4:  # packed rows' block mask: the queries after the prefix
            mask = mask[:, :, prefix:, :]
        if positions is None:
            positions = torch.arange(prefix, width, device=device)[None].expand(batch, -1)
        else:
            positions = positions[:, prefix:]
        return self._body(reads, input_ids=input_ids[:, prefix:], attention_mask=mask, position_ids=positions,
                          past_key_values=cache, use_cache=True)


def special_tokens(tokenizer: Any, add_bos_token: bool | None) -> tuple[list[int], list[int]]:
    """(token ids before, token ids after) the plain tokens of a text, as lm-eval 0.4.13's HF backend encodes it.

    lm-eval encodes with the tokenizer's own special tokens (`add_special_tokens` left at its default) unless
    `add_bos_token` is given: True loads the tokenizer with `add_bos_token=True` (a BOS in front, whatever the
    tokenizer's default) and False encodes without any special token. lm-eval 0.4.13 has no rule per model type:
    Gemma's tokenizers add a BOS by default, and so do Llama's; GPT-2's, GPT-NeoX's and SmolLM2's add nothing.
    """
    if add_bos_token is False:
        return [], []
    probe = "a"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    at = next((i for i in range(len(full) - len(plain) + 1) if full[i:i + len(plain)] == plain), None)
    if at is None:  # a post-processor that changes the text's own tokens: not something lm-eval's rule covers
        raise ValueError(f"the tokenizer's special tokens do not wrap the plain tokens ({full} vs {plain})")
    prefix, suffix = full[:at], full[at + len(plain):]
    bos = getattr(tokenizer, "bos_token_id", None)
    if add_bos_token and bos is not None and bos not in prefix:
        prefix = [bos, *prefix]
    return [int(t) for t in prefix], [int(t) for t in suffix]


def _generated_length(tokens: list[int], eos: int | None, pad: int) -> int:
    """Tokens a row really generated: through its first EOS, else without the padding after it stopped."""
    if eos is not None and eos in tokens:
        return tokens.index(eos) + 1
    n = len(tokens)
    while n and tokens[n - 1] == pad:
        n -= 1
    return n


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


def _default_identity(model: torch.nn.Module) -> str:
    """A model's identity when the caller gives none: its class, config and parameter dtype (not its weights)."""
    import hashlib
    import json

    config = getattr(model, "config", None)
    as_dict = config.to_dict() if hasattr(config, "to_dict") else {}
    digest = hashlib.sha256(json.dumps(as_dict, sort_keys=True, default=str).encode()).hexdigest()[:16]
    dtype = next(model.parameters()).dtype
    return f"{type(model).__name__}|config={digest}|{str(dtype).replace('torch.', '')}"
