"""The HF backend against an independent one-request-at-a-time reference, on a tiny random MPT."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from evalharness.backends.hf.backend import HFBackend
from evalharness.errors import InputTooLong
from evalharness.requests import GenerateRequest
from evalharness.requests import LoglikelihoodRequest as R
from support.reference_scoring import reference_loglikelihood


@pytest.fixture(scope="module")
def mpt(tiny_mpt_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_mpt_dir)


# --- tokenisation at the context/continuation boundary (GPT-NeoX tokenizer, as MPT) -------------

def test_trailing_space_moves_to_continuation(mpt):
    model, tok = mpt
    lm = HFBackend(model, tok)
    ctx, cont = lm.encode_pair("The cat sat on the ", "mat")
    assert ctx == tok("The cat sat on the", add_special_tokens=False)["input_ids"]
    assert tok.decode(cont) == " mat"
    assert lm.encode_pair("The cat sat on the ", "mat") == lm.encode_pair("The cat sat on the", " mat")


def test_several_trailing_whitespace_chars_move(mpt):
    lm = HFBackend(*mpt)
    ctx, cont = lm.encode_pair("Question: 2+2?\n\n", "Answer")
    assert lm.tokenizer.decode(ctx) == "Question: 2+2?"
    assert lm.tokenizer.decode(cont) == "\n\nAnswer"


def test_continuation_is_whole_encoding_past_context(mpt):
    model, tok = mpt
    lm = HFBackend(model, tok)
    # "hello wor" + "ld": the whole string tokenises as "hello"," world"; the context alone as "hello"," wor".
    whole = tok("hello world", add_special_tokens=False)["input_ids"]
    ctx = tok("hello wor", add_special_tokens=False)["input_ids"]
    assert lm.encode_pair("hello wor", "ld") == (ctx, whole[len(ctx):])


def test_empty_context_uses_prefix_token(mpt):
    model, tok = mpt
    lm = HFBackend(model, tok)
    ctx, cont = lm.encode_pair("", "Hello")
    assert ctx == [tok.eos_token_id]  # GPT-NeoX: BOS == EOS == <|endoftext|>
    assert cont == tok("Hello", add_special_tokens=False)["input_ids"]


# --- scores ---------------------------------------------------------------------------------------

REQUESTS = [
    R("The capital of France is", " Paris"),
    R("The capital of France is ", "Paris"),
    R("Question: Which is heavier, a kilo of feathers or a kilo of lead?\nAnswer:", " They weigh the same."),
    R("Question: Which is heavier, a kilo of feathers or a kilo of lead?\nAnswer:", " Lead"),
    R("1, 2, 3, 4,", " 5"),
    R("", "Hello there"),
    R("Answer:", " A"), R("Answer:", " B"), R("Answer:", " C"), R("Answer:", " D"),
]


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_scores_equal_reference(mpt, batch_size):
    model, tok = mpt
    lm = HFBackend(model, tok, batch_size=batch_size)
    got = lm.loglikelihood(REQUESTS)
    for req, res in zip(REQUESTS, got):
        lp, greedy, n = reference_loglikelihood(model, tok, req.context, req.continuation, lm.max_length)
        assert res.num_tokens == n
        assert res.logprob == pytest.approx(lp, abs=1e-4)
        assert res.is_greedy == greedy
        assert not res.truncated


def test_full_head_path_equals_split_head_path(mpt):
    model, tok = mpt
    lm = HFBackend(model, tok, batch_size=4)
    assert lm._split_head  # MPT: the head runs only where log-probs are read
    fast = lm.loglikelihood(REQUESTS)
    lm._split_head = False
    slow = lm.loglikelihood(REQUESTS)
    for a, b in zip(fast, slow):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.is_greedy == b.is_greedy


def test_results_keep_request_order_and_progress_counts_requests(mpt):
    lm = HFBackend(*mpt, batch_size=2)
    seen = []
    forward = lm.loglikelihood(REQUESTS, progress=seen.append)
    backward = lm.loglikelihood(REQUESTS[::-1])
    assert [r.logprob for r in forward] == pytest.approx([r.logprob for r in backward[::-1]], abs=1e-5)
    assert sum(seen) == len(REQUESTS)


def test_shared_rows_for_single_token_choices(mpt):
    """The four ' A'..' D' requests share one input row, and still score as four separate requests."""
    model, tok = mpt
    lm = HFBackend(model, tok, batch_size=16)
    calls = []
    original = lm._score_batch
    lm._score_batch = lambda batch: calls.append(len(batch)) or original(batch)
    reqs = REQUESTS[6:]
    res = lm.loglikelihood(reqs)
    assert calls == [1]
    assert len({r.logprob for r in res}) == 4
    for req, r in zip(reqs, res):
        assert r.logprob == pytest.approx(reference_loglikelihood(model, tok, req.context, req.continuation, lm.max_length)[0], abs=1e-4)


def test_left_truncation(mpt):
    model, tok = mpt
    lm = HFBackend(model, tok, max_length=12)
    long_context = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    (res,) = lm.loglikelihood([R(long_context, " fifteen")])
    assert res.truncated
    lp, greedy, n = reference_loglikelihood(model, tok, long_context, " fifteen", 12)
    assert (res.num_tokens, res.is_greedy) == (n, greedy)
    assert res.logprob == pytest.approx(lp, abs=1e-4)
    (short,) = lm.loglikelihood([R("one two", " three")])
    assert not short.truncated


def test_a_continuation_longer_than_max_length_is_refused_not_cut(mpt):
    """A context may be cut on the left; a continuation cut would score only part of itself."""
    model, tok = mpt
    lm = HFBackend(model, tok, max_length=4)
    fits, too_long = R("one two three", " four five six seven"), R("one", " two three four five six")
    assert len(tok(" two three four five six")["input_ids"]) == 5
    assert lm.loglikelihood([fits])[0].num_tokens == 4
    with pytest.raises(InputTooLong) as caught:
        lm.loglikelihood([fits, too_long])
    assert (caught.value.index, caught.value.needed, caught.value.max_length) == (1, 5, 4)
    with pytest.raises(InputTooLong) as caught:
        lm.generate_until([GenerateRequest("one two", ("\n",), 2), GenerateRequest("one two", ("\n",), 4)])
    assert (caught.value.index, caught.value.needed) == (1, 5)  # 4 new tokens and at least one prompt token


def test_bfloat16_close_to_float32(tiny_mpt_dir, mpt):
    model, tok = mpt
    bf16 = AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.bfloat16).eval()
    a = HFBackend(model, tok).loglikelihood(REQUESTS[:5])
    b = HFBackend(bf16, tok).loglikelihood(REQUESTS[:5])
    for x, y in zip(a, b):
        assert y.logprob == pytest.approx(x.logprob, rel=0.05, abs=0.5)
