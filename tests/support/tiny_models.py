"""Small random models for tests: an MPT checkpoint with the real GPT-NeoX tokenizer, Llama and other families."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from support.reference_scoring import reference_loglikelihood


def build_tiny_mpt(folder: Path, tokenizer_dir: Path, *, n_layers: int = 2, d_model: int = 64, max_seq_len: int = 256,
                   seed: int = 0) -> Path:
    """A small random MptForCausalLM (ALiBi, eager attention) with the real GPT-NeoX tokenizer, saved to `folder`."""
    import torch
    from transformers import AutoTokenizer, MptConfig, MptForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = MptConfig(
        d_model=d_model, n_heads=4, n_layers=n_layers, expansion_ratio=2, max_seq_len=max_seq_len,
        vocab_size=len(tokenizer), attn_config={"alibi": True},
    )
    torch.manual_seed(seed)
    model = MptForCausalLM(config)
    with torch.no_grad():  # larger random weights so log-probs differ clearly between choices
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_llama(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A 2-layer random LlamaForCausalLM (GQA, the GPT-NeoX vocabulary size), norm weights away from 1."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=50432, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.15)
            else:
                p.uniform_(0.5, 1.5)  # norm weights away from 1, so that the weight product is exercised
    return model.to(dtype)


def tiny_causal_lm(model_type: str, vocab: int) -> torch.nn.Module:
    """A small random model of a transformers family, float32, in eval mode."""
    from transformers import AutoConfig, AutoModelForCausalLM

    common = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0)
    if model_type == "gpt_neox":
        common.pop("num_key_value_heads")
    config = AutoConfig.for_model(model_type, **common)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # larger weights so that choices differ clearly
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.15)
    return model


def assert_same_and_reference(model, tok, requests, lm, other) -> None:
    """`lm` scores every request like `other` and like the one-request reference scorer (2e-4)."""
    got, want = lm.loglikelihood(requests), other.loglikelihood(requests)
    for req, a, b in zip(requests, got, want):
        ref, greedy, n = reference_loglikelihood(model, tok, req.context, req.continuation, lm.max_length)
        assert a.logprob == pytest.approx(b.logprob, abs=2e-4)
        assert a.logprob == pytest.approx(ref, abs=2e-4)
        assert (a.num_tokens, a.is_greedy) == (n, greedy)
