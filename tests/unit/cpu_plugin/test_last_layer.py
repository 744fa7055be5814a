"""The last decoder layer at the read positions only (evalharness/models/last_layer.py): hand-computed query slots,
the layer's own output at those positions for every attention layout, its fallbacks, and the backend's scores."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, DynamicCache

from evalharness.backends.hf.backend import HFBackend
from evalharness.backends.hf.packing import allowed_mask
from evalharness.backends.hf_cpu import accelerator_for, fused_ops
from evalharness.backends.hf_cpu import last_layer as ll
from evalharness.backends.hf_cpu.fused_ops import load_fused_ops
from evalharness.requests import LoglikelihoodRequest as R
from support.reference_scoring import reference_loglikelihood
from support.tiny_models import tiny_llama


def test_slot_in_row_hand_computed():
    # rows 2, 0, 2, 1, 0, 2: row 2's entries are its slots 0, 1, 2 in order; row 0's 0, 1; row 1's 0
    rows = torch.tensor([2, 0, 2, 1, 0, 2])
    assert ll._slot_in_row(rows, 3).tolist() == [0, 0, 1, 0, 1, 2]
    assert ll._slot_in_row(torch.tensor([4]), 5).tolist() == [0]


def _layer_inputs(model, batch: int, length: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, length, model.config.hidden_size, generator=g)
    return hidden


def _full_and_read(model, hidden, rows, positions, ops, mask=None, position_ids=None, cache_pair=None,
                   read_mask="same"):
    """(the layer's own output at the pairs, the read-positions forward's), the same inputs to both (the same
    mask unless `read_mask` is given)."""
    layer = model.model.layers[-1]
    batch, length = hidden.shape[:2]
    if position_ids is None:
        start = 0 if cache_pair is None else cache_pair[0].get_seq_length()
        position_ids = torch.arange(start, start + length)[None].expand(batch, -1)
    pe = model.model.rotary_emb(hidden, position_ids)
    with torch.inference_mode():
        full_cache, read_cache = cache_pair if cache_pair is not None else (None, None)
        full = layer(hidden, attention_mask=mask, position_embeddings=pe, position_ids=position_ids,
                     past_key_values=full_cache)[rows, positions]
        with ll.last_layer_at(model, rows, positions, ops) as swapped:
            assert swapped
            got = layer(hidden, attention_mask=mask if read_mask == "same" else read_mask, position_embeddings=pe,
                        position_ids=position_ids, past_key_values=read_cache)
    assert "forward" not in layer.__dict__  # restored
    return full, got


@pytest.mark.parametrize("kernels", [True, False])
def test_causal_rows_give_the_layer_output_at_the_reads(kernels):
    model = tiny_llama()
    ops = load_fused_ops() if kernels else None
    hidden = _layer_inputs(model, 3, 11, 0)
    rows, positions = torch.tensor([0, 2, 2, 1, 2]), torch.tensor([10, 0, 7, 4, 10])  # rows out of order, 3 in row 2
    full, got = _full_and_read(model, hidden, rows, positions, ops)
    assert got.shape == (1, 5, model.config.hidden_size)
    assert torch.allclose(got[0], full, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("kernels", [True, False])
def test_block_mask_and_restarting_positions(kernels):
    """Packed rows: a context and two choice segments behind a block mask, positions restarting per segment."""
    model = tiny_llama()
    ops = load_fused_ops() if kernels else None
    segments = torch.tensor([[0, 0, 0, 0, 1, 1, 2, 2, 2, -1], [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]])
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 5, 4, 5, 6, 0], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    mask = allowed_mask(segments)
    hidden = _layer_inputs(model, 2, 10, 1)
    rows, positions = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([3, 5, 8, 6, 9])
    full, got = _full_and_read(model, hidden, rows, positions, ops, mask=mask, position_ids=position_ids)
    assert torch.allclose(got[0], full, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("kernels", [True, False])
def test_after_a_cached_prefix(kernels):
    """A prefix pass with no reads fills the last layer's cache exactly as the layer does; the rows then attend it."""
    model = tiny_llama()
    ops = load_fused_ops() if kernels else None
    layer_idx = model.config.num_hidden_layers - 1
    prefix_hidden = _layer_inputs(model, 1, 6, 2)
    caches = (DynamicCache(config=model.config), DynamicCache(config=model.config))
    for cache in caches:  # earlier layers' entries, so that the last layer's index is the one updated
        for i in range(layer_idx):
            cache.update(torch.zeros(1, 2, 6, 16), torch.zeros(1, 2, 6, 16), i)
    none = torch.zeros(0, dtype=torch.long)
    _, got = _full_and_read(model, prefix_hidden, none, none, ops, cache_pair=caches)
    assert got.shape == (1, 0, model.config.hidden_size)
    assert torch.allclose(caches[1].layers[layer_idx].keys, caches[0].layers[layer_idx].keys, atol=1e-6)
    assert torch.allclose(caches[1].layers[layer_idx].values, caches[0].layers[layer_idx].values, atol=1e-6)
    for cache in caches:
        cache.batch_repeat_interleave(2)
    # the rows' 5 queries are the last of 11 keys: query i sees keys 0 .. 6 + i. Without a mask, sdpa would align
    # the causal triangle top-left, so transformers always builds this mask after a cache; the read-positions
    # forward takes it, and takes no mask as meaning the same.
    causal_after_prefix = (torch.arange(11)[None] <= torch.arange(5)[:, None] + 6).expand(2, 1, 5, 11)
    hidden = _layer_inputs(model, 2, 5, 3)
    rows, positions = torch.tensor([1, 0, 1]), torch.tensor([4, 2, 0])
    for read_mask in ("same", None):
        pair = tuple(DynamicCache(config=model.config) for _ in range(2))
        for cache in pair:
            for i, layer in enumerate(caches[0].layers):
                cache.update(layer.keys.clone(), layer.values.clone(), i)
        full, got = _full_and_read(model, hidden, rows, positions, ops, mask=causal_after_prefix, cache_pair=pair,
                                   read_mask=read_mask)
        assert torch.allclose(got[0], full, atol=2e-5, rtol=1e-5)


def test_falls_back_to_the_layer_for_what_it_does_not_take():
    model = tiny_llama()
    hidden = _layer_inputs(model, 2, 6, 4)
    rows, positions = torch.tensor([0, 1]), torch.tensor([5, 3])
    additive = torch.zeros(2, 1, 6, 6).masked_fill_(~torch.ones(6, 6, dtype=torch.bool).tril(), -1e9)
    full, got = _full_and_read(model, hidden, rows, positions, None, mask=additive)  # an additive float mask
    assert torch.allclose(got[0], full, atol=2e-5)
    layer = model.model.layers[-1]
    pe = model.model.rotary_emb(hidden, torch.arange(6)[None])
    calls = []
    real = type(layer).forward
    with ll.last_layer_at(model, rows, positions):
        hidden.requires_grad_(True)  # autograd: the layer's own forward
        type(layer).forward = lambda *a, **k: calls.append(1) or real(*a, **k)
        try:
            out = layer(hidden, attention_mask=None, position_embeddings=pe)
        finally:
            type(layer).forward = real
    assert calls and out.shape == (1, 2, model.config.hidden_size) and out.requires_grad


def test_only_known_llama_layers_under_sdpa(monkeypatch):
    model = tiny_llama()
    assert ll.last_layer(model) is model.model.layers[-1]
    model.config._attn_implementation = "eager"
    assert ll.last_layer(model) is None
    model.config._attn_implementation = "sdpa"
    with ll.last_layer_at(model, torch.tensor([0]), torch.tensor([0])) as swapped:
        assert swapped
        with ll.last_layer_at(model, torch.tensor([0]), torch.tensor([0])) as again:  # already swapped: left alone
            assert not again
    monkeypatch.setitem(fused_ops.KNOWN_SOURCES, "LlamaDecoderLayer.forward", "0" * 16)  # transformers changed it
    fused_ops.llama_sources_known.cache_clear()
    try:
        assert ll.last_layer(model) is None
    finally:
        monkeypatch.undo()
        fused_ops.llama_sources_known.cache_clear()
    from transformers import MptConfig, MptForCausalLM

    assert ll.last_layer(MptForCausalLM(MptConfig(d_model=32, n_heads=4, n_layers=1, vocab_size=100))) is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backend_scores_every_layout_as_before(neox_tokenizer_dir, monkeypatch, dtype):
    """Plain causal rows, packed rows and a shared prefix: the read-positions layer ran in each, and the scores
    are those of the whole layer and of the one-request reference scorer."""
    calls = []
    real = ll._read_positions_forward

    def spy(layer, ops, rows, positions, hidden_states, **kwargs):
        mask = kwargs.get("attention_mask")
        calls.append((rows.numel(), kwargs.get("past_key_values") is not None, None if mask is None else mask.dtype))
        return real(layer, ops, rows, positions, hidden_states, **kwargs)

    monkeypatch.setattr(ll, "_read_positions_forward", spy)
    tok = AutoTokenizer.from_pretrained(neox_tokenizer_dir)
    shared = " ".join(["The quick brown fox jumps over the lazy dog."] * 8)
    requests = ([R("Question: what is two plus two? Answer:", c) for c in (" four of them", " five apples", " six")]
                + [R(shared + f" item {i}:", " yes sir") for i in range(4)]
                + [R("Q: pick one. A:", c) for c in (" A", " B", " C", " D")]
                + [R("Hello world", " again and again"), R("One more", " time")]
                + [R(f"Plain row {i}", " one") for i in range(4)])
    model = tiny_llama(dtype)
    on = HFBackend(model, tok, batch_size=4, accelerator=accelerator_for(model))
    assert on.accelerator.at_reads
    off = HFBackend(model, tok, batch_size=4, accelerator=accelerator_for(model, only=("fused_ops", "packed_linear")))
    assert not off.accelerator.at_reads
    got = on.loglikelihood(requests)
    assert {(has_cache, mask) for n, has_cache, mask in calls} >= {(False, None), (False, torch.bool), (True, torch.bool)}
    assert any(n == 0 for n, *_ in calls)  # the prefix pass: keys and values only
    calls.clear()
    want = off.loglikelihood(requests)
    assert not calls
    # float32: the same to 1e-4 and the reference's to 2e-4; bfloat16: other matmul shapes round differently
    tol = 1e-4 if dtype == torch.float32 else 0.1
    for req, a, b in zip(requests, got, want):
        assert a.logprob == pytest.approx(b.logprob, abs=tol)
        assert (a.num_tokens, a.truncated) == (b.num_tokens, b.truncated)
        if dtype == torch.float32:
            ref, greedy, n = reference_loglikelihood(model, tok, req.context, req.continuation, on.max_length)
            assert a.logprob == pytest.approx(ref, abs=2e-4)
            assert a.is_greedy == greedy == b.is_greedy
