"""The BOS token as lm-eval 0.4.13 adds it: the tokenizer's own special tokens, overridable with add_bos_token.

lm-eval's token ids are recorded in tests/fixtures/lm_eval_0.4.13/bos_token_ids.json by
benchmarks/lm_eval_prompt_fixture.py (lm-eval's HFLM on a tiny random gemma3_text model with the small Gemma
tokenizer saved beside it); here the same tokenizer goes through evalharness's HF backend.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from evalharness.backends.hf import HFBackend, HFOptions
from evalharness.backends.hf.backend import special_tokens
from evalharness.requests import GenerateRequest, LoglikelihoodRequest
from support.paths import REPO

FIXTURES = REPO / "tests" / "fixtures" / "lm_eval_0.4.13"


@pytest.fixture(scope="module")
def gemma_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(FIXTURES / "tiny_gemma_tokenizer")


def tiny(model_type: str, vocab: int) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    extra = {"head_dim": 16} if model_type.startswith("gemma") else {}
    config = AutoConfig.for_model(model_type, vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                  max_position_embeddings=128, **extra)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.3)
    return model


@pytest.fixture(scope="module")
def gemma_model(gemma_tokenizer):
    return tiny("gemma3_text", len(gemma_tokenizer))


def backend(model, tokenizer, add_bos_token=None, **options) -> HFBackend:
    return HFBackend(model, tokenizer, batch_size=4, options=HFOptions(add_bos_token=add_bos_token, accelerator="none",
                                                                       **options))


def test_tiny_gemma_tokenizer_adds_bos_by_default(gemma_tokenizer):
    """The fixture's tokenizer behaves like a real Gemma tokenizer (and like the converted Gemma 3 GGUF's)."""
    ids = gemma_tokenizer("the cat")["input_ids"]
    assert ids[0] == gemma_tokenizer.bos_token_id == 2
    assert ids[1:] == gemma_tokenizer("the cat", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("add_bos_token", [None, True, False])
def test_request_token_ids_equal_lm_eval(gemma_model, gemma_tokenizer, add_bos_token):
    recorded = json.loads((FIXTURES / "bos_token_ids.json").read_text())
    assert recorded["made_with"]["lm_eval"] == "0.4.13"
    run = next(r for r in recorded["runs"] if r["add_bos_token"] == add_bos_token)
    assert run["model_type"] == "gemma3_text"
    lm = backend(gemma_model, gemma_tokenizer, add_bos_token)
    got = lm.encode_pairs([LoglikelihoodRequest(c, x) for c, x in run["pairs"]])
    assert [[list(c), list(x)] for c, x in got] == run["loglikelihood"]
    assert [lm._encode_prompt(p, 8) for p in run["prompts"]] == run["generation"]


def test_bos_by_hand(gemma_model, gemma_tokenizer):
    """With the default rule a Gemma tokenizer's BOS comes first; the continuation's tokens (the boundary) are
    those without BOS; a text already starting with "<bos>" gets no second one; an empty context is the BOS."""
    bos = gemma_tokenizer.bos_token_id
    with_bos = backend(gemma_model, gemma_tokenizer)
    without = backend(gemma_model, gemma_tokenizer, add_bos_token=False)
    requests = [LoglikelihoodRequest("the cat sat on the ", "mat"), LoglikelihoodRequest("the ca", "t")]
    for (ctx_b, cont_b), (ctx, cont) in zip(with_bos.encode_pairs(requests), without.encode_pairs(requests)):
        assert ctx_b == [bos, *ctx] and ctx[0] != bos
        assert cont_b == cont
    (ctx, cont), = with_bos.encode_pairs([LoglikelihoodRequest("<bos>the cat", " sat")])
    assert ctx.count(bos) == 1 and ctx[0] == bos
    (ctx, cont), = without.encode_pairs([LoglikelihoodRequest("", "the cat")])
    assert ctx == [bos]
    assert with_bos.special_prefix == [bos] and without.special_prefix == []


def test_rule_per_tokenizer_family(gemma_tokenizer, neox_tokenizer_dir):
    """lm-eval 0.4.13 has no list of model types: the tokenizer decides. Gemma's and Llama's tokenizers add a BOS,
    GPT-NeoX's (MPT's) adds nothing; add_bos_token=True puts one in front of any tokenizer's tokens."""
    from transformers import AutoTokenizer, LlamaTokenizer

    assert special_tokens(gemma_tokenizer, None) == ([gemma_tokenizer.bos_token_id], [])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{c: i + 3 for i, c in enumerate("▁abcdefghijklmnopqrstuvwxyz")}}
    llama = LlamaTokenizer(vocab=vocab, merges=[], add_bos_token=True)  # as Llama checkpoints configure it
    assert special_tokens(llama, None) == ([1], [])
    neox = AutoTokenizer.from_pretrained(neox_tokenizer_dir)
    assert special_tokens(neox, None) == ([], [])
    assert special_tokens(neox, True) == ([neox.bos_token_id], [])
    assert special_tokens(gemma_tokenizer, False) == ([], [])


def test_bos_changes_the_cache_identity_and_is_recorded(gemma_model, gemma_tokenizer):
    on, off = backend(gemma_model, gemma_tokenizer), backend(gemma_model, gemma_tokenizer, add_bos_token=False)
    assert on.identity() != off.identity()
    assert "special_tokens" not in off.identity()  # a tokenizer without special tokens keeps its old identity
    described = on.describe()
    assert described["options"]["add_bos_token"] is None
    assert described["special_tokens"]["prefix"] == [gemma_tokenizer.bos_token_id]


def _scored_alone(model, ids: list[int], n_cont: int) -> float:
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids[:-1]])).logits[0].float(), dim=-1)
    return sum(float(logp[len(ids) - 1 - n_cont + k, ids[len(ids) - n_cont + k]]) for k in range(n_cont))


@pytest.mark.parametrize("model_type", ["gemma3_text", "llama"])
def test_scores_with_bos_match_rows_scored_alone(gemma_tokenizer, model_type):
    """Log-probs with the BOS in front equal each request scored alone on [BOS] + tokens, with packing and shared
    prefixes on (llama packs and shares; gemma3_text takes plain rows) and off."""
    model = tiny(model_type, len(gemma_tokenizer))
    shots = "the cat sat on the mat. the cat ate. " * 3
    requests = [LoglikelihoodRequest(shots + "the cat", c) for c in (" sat", " ate", " at the mat")]
    requests += [LoglikelihoodRequest(shots + "a cat", " sat"), LoglikelihoodRequest("", "the cat")]
    fast = backend(model, gemma_tokenizer)
    plain = backend(model, gemma_tokenizer, pack=False, share_prefix=False)
    if model_type == "llama":
        assert fast.pack and fast.share_prefix
    got, other = fast.loglikelihood(requests), plain.loglikelihood(requests)
    for a, b, (ctx, cont) in zip(got, other, fast.encode_pairs(requests)):
        assert ctx[0] == gemma_tokenizer.bos_token_id
        want = _scored_alone(model, ctx + cont, len(cont))
        assert math.isclose(a.logprob, want, abs_tol=2e-4) and math.isclose(b.logprob, want, abs_tol=2e-4)


def test_generation_prompt_starts_with_bos(gemma_model, gemma_tokenizer):
    lm = backend(gemma_model, gemma_tokenizer)
    (result,) = lm.generate_until([GenerateRequest("the cat", stop=("\n",), max_new_tokens=3)])
    assert lm._encode_prompt("the cat", 3)[0] == gemma_tokenizer.bos_token_id
    assert result.num_tokens[0] >= 1
