"""Two scoring levers: log-probs read from logits in blocks (read_logprobs), and a batch's shared prefix run once."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from evalharness.backends.hf import backend as hf_backend
from evalharness.backends.hf.backend import _PACKABLE_TYPES, HFBackend
from evalharness.backends.hf.logprobs import read_logprobs
from evalharness.backends.hf.options import HFOptions
from evalharness.backends.hf.packing import Row, Scored, prefix_groups
from evalharness.requests import LoglikelihoodRequest as R
from support.reference_scoring import reference_loglikelihood
from support.tiny_models import assert_same_and_reference, tiny_causal_lm

# --- read_logprobs: hand-computed values ------------------------------------------------------------

def _kernels():
    from evalharness.backends.hf_cpu.fused_ops import load_fused_ops

    ops = load_fused_ops()
    assert ops is not None, "the fused kernels must build here (the machine has a C++ compiler and ninja)"
    return ops


def read(logits: torch.Tensor, targets: torch.Tensor, chunk: int = 32, kernel: bool = False):
    """The core's blocked reduction, or the CPU plugin's one-kernel read (log_softmax_at) of the same values."""
    if kernel:
        return tuple(_kernels().log_softmax_at(logits.contiguous(), targets.to(torch.long).contiguous()))
    return read_logprobs(logits, targets, chunk)


# each test runs the torch reduction in blocks (no ops) and the fused kernel (log_softmax_at)
READERS = [pytest.param(False, id="torch-blocks"), pytest.param(True, id="kernel")]


@pytest.mark.parametrize("kernel", READERS)
def test_read_logprobs_hand_computed(kernel):
    # row 0: logits [0, ln 3] -> softmax [1/4, 3/4]; target 1 -> ln(3/4), the argmax
    # row 1: logits [2, 2, 2, 2] -> each 1/4; target 3 -> ln(1/4); a tie: argmax is the first, so not greedy
    # row 2: the same tie read at its first index (0): greedy
    logits = torch.tensor([[0.0, math.log(3.0), -math.inf, -math.inf], [2.0, 2.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]])
    lp, greedy = read(logits, torch.tensor([1, 3, 0]), 1, kernel)
    assert lp.dtype == torch.float32
    assert lp.tolist() == pytest.approx([math.log(0.75), math.log(0.25), math.log(0.25)], abs=1e-6)
    assert greedy.tolist() == [True, False, True]


@pytest.mark.parametrize("kernel", READERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk", [1, 7, 32, 1000])
def test_read_logprobs_equals_log_softmax(dtype, chunk, kernel):
    torch.manual_seed(0)
    logits = (torch.randn(70, 500) * 4).to(dtype)
    targets = torch.randint(0, 500, (70,))
    targets[:5] = logits[:5].float().argmax(-1)  # some greedy rows
    before = logits.clone()
    lp, greedy = read(logits, targets, chunk, kernel)
    ref = F.log_softmax(logits.float(), dim=-1)
    assert torch.allclose(lp, ref[torch.arange(70), targets], atol=1e-5)
    assert torch.equal(greedy, ref.argmax(-1) == targets)
    assert greedy[:5].all()
    assert torch.equal(logits, before)  # the caller's logits are never written


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_read_logprobs_kernel_on_a_real_vocabulary(dtype):
    """The kernel against float64 on GPT-NeoX-sized rows (50,432 logits; a length that is no multiple of 64), as
    close as torch's own float32 log-softmax comes (2e-6 here; 4e-6 allowed)."""
    torch.manual_seed(1)
    logits = (torch.randn(40, 50_431) * 4).to(dtype)
    targets = torch.randint(0, 50_431, (40,))
    targets[:3] = logits[:3].float().argmax(-1)
    want = torch.log_softmax(logits.double(), -1)[torch.arange(40), targets]
    lp, greedy = read(logits, targets, kernel=True)
    assert (lp.double() - want).abs().max() < 4e-6
    assert torch.equal(greedy, logits.float().argmax(-1) == targets) and greedy[:3].all()


@pytest.mark.parametrize("kernel", READERS)
def test_read_logprobs_greedy_is_the_first_maximum(kernel):
    """Ties between lanes of a vector and between the vector part and the tail (100 logits: 6 vectors of 16,
    then 4): only the first index of the maximum is greedy."""
    logits = torch.zeros(3, 100)
    logits[0, [37, 70]] = 5.0  # a tie inside the vector part
    logits[1, [20, 98]] = 5.0  # a tie between the vector part and the tail
    logits[2, 97] = 5.0        # the maximum only in the tail
    targets = torch.tensor([37, 98, 97])
    _, greedy = read(logits, targets, kernel=kernel)
    assert greedy.tolist() == [True, False, True]
    _, greedy = read(logits, torch.tensor([70, 20, 0]), kernel=kernel)
    assert greedy.tolist() == [False, True, False]


def test_read_logprobs_kernel_refuses_out_of_range_targets():
    with pytest.raises(RuntimeError, match="out of range"):
        _kernels().log_softmax_at(torch.zeros(2, 5), torch.tensor([1, 5]))


# --- prefix groups and the shared prefix ---------------------------------------------------------

def _row(tokens, read):
    return Row(tuple(tokens), (Scored(0, (1,), (read,), False),))


def test_prefix_groups_join_rows_sharing_a_large_part():
    shot_a = list(range(100, 140))  # 40 shared tokens
    a1, a2 = _row(shot_a + [1, 2], 41), _row(shot_a + [3], 40)
    b1, b2 = _row([7] * 40 + [1], 40), _row([7] * 40 + [2, 2], 40)
    lone1, lone2 = _row([1, 2, 3], 2), _row([9, 9], 1)
    groups = prefix_groups([lone1, a1, b1, lone2, a2, b2], fraction=0.25, min_tokens=32)
    as_sets = [{r.tokens for r in g} for g in groups]
    assert {a1.tokens, a2.tokens} in as_sets and {b1.tokens, b2.tokens} in as_sets
    assert {lone1.tokens, lone2.tokens} in as_sets and len(groups) == 3
    # 40 shared tokens of 41-42 is above 25%, but below a 32-token minimum nothing joins
    assert len(prefix_groups([a1, a2], fraction=0.25, min_tokens=41)) == 1
    assert len(prefix_groups([a1, a2], fraction=0.99, min_tokens=1)[0]) == 2  # one loose group of both


def test_prefix_groups_that_save_little_join_the_loose_rows():
    shot = list(range(100, 140))  # 40 shared tokens
    a1, a2, a3 = _row(shot + [1, 2], 41), _row(shot + [3], 40), _row(shot + [4, 4, 4], 40)
    lone = _row([1, 2, 3], 2)
    # two rows sharing 40 tokens save 40 by running them once; three save 80
    assert len(prefix_groups([a1, a2, lone], 0.25, 32, min_saved=40)) == 2
    assert [len(g) for g in prefix_groups([a1, a2, lone], 0.25, 32, min_saved=41)] == [3]
    groups = prefix_groups([a1, a2, a3, lone], 0.25, 32, min_saved=80)
    assert sorted(len(g) for g in groups) == [1, 3]
    # the saving counts the prefix *all* rows of the group share: here 2 tokens, twice
    b1, b2, b3 = _row([5] * 40 + [1], 40), _row([5] * 40 + [2], 40), _row([5, 5] + [6] * 39, 40)
    assert sorted(len(g) for g in prefix_groups([b1, b2, b3], 0.0, 2, min_saved=5)) == [3]


def test_shared_prefix_is_capped_at_the_first_read_and_needs_enough_tokens(neox_tok):
    lm = HFBackend(tiny_causal_lm("llama", len(neox_tok)), neox_tok)
    assert lm.share_prefix
    common = list(range(10, 60))  # 50 tokens
    # every row shares 50 tokens, but one row reads at position 45: only 45 may run as the prefix
    batch = [_row(common + [1, 2], 50), _row(common + [3], 45), _row(common + [4, 5, 6], 51)]
    assert lm._shared_prefix(batch) == 45
    assert lm._shared_prefix(batch[:1]) == 0  # one row: nothing to share
    short = [_row(common[:7] + [i], 7) for i in range(20)]
    assert lm._shared_prefix(short) == 0  # 7 < MIN_SHARED_PREFIX (8)
    assert lm._shared_prefix([_row(common[:8] + [i], 8) for i in range(20)]) == 8  # 8, saving 19 x 8 tokens
    narrow = [_row(common[:12] + [i] * 250, 12) for i in range(20)]
    assert lm._shared_prefix(narrow) == 0  # 12 of 262 tokens: below SHARED_FRACTION (5%)
    assert lm._shared_prefix([_row(common[:14] + [i] * 250, 14) for i in range(20)]) == 14  # 14 of 264
    few = [_row(common[:30] + [i], 30) for i in range(3)]
    assert lm._shared_prefix(few) == 0  # saves 2 x 30 = 60 < MIN_SAVED_PREFIX_TOKENS (64)
    assert lm._shared_prefix([_row(common[:32] + [i], 32) for i in range(3)]) == 32  # saves 64


def test_families_without_a_checked_cache_path_do_not_share(neox_tok):
    model = tiny_causal_lm("llama", len(neox_tok))
    model.config.model_type = "gpt2"
    assert not HFBackend(model, neox_tok).share_prefix


# --- sharing scores exactly like not sharing --------------------------------------------------------

SHOTS = "".join(f"Question: what is {a} plus {b}?\nAnswer: {a + b}\n\n" for a, b in ((1, 2), (3, 4), (5, 6), (7, 8)))
FEWSHOT = [
    R(SHOTS + "Question: what is 2 plus 2?\nAnswer:", " 4"),
    R(SHOTS + "Question: what is 2 plus 2?\nAnswer:", " five hundred"),
    R(SHOTS + "Question: what is 9 plus 1?\nAnswer:", " 10"),
    R(SHOTS + "Question: what is 9 plus 1?\nAnswer:", " ten, or so"),
    R(SHOTS + "Question: name a colour.\nAnswer:", " blue"),
    R(SHOTS + "Q?\nA. a\nB. b\nAnswer:", " A"),
    R(SHOTS + "Q?\nA. a\nB. b\nAnswer:", " B"),
    R("Unrelated short context", " here"),
]


@pytest.fixture(scope="module")
def neox_tok(neox_tokenizer_dir):
    return AutoTokenizer.from_pretrained(neox_tokenizer_dir)


@pytest.mark.parametrize("pack", [True, False])
@pytest.mark.parametrize("model_type", sorted(_PACKABLE_TYPES))
def test_sharing_the_prefix_scores_like_whole_rows(model_type, pack, neox_tok):
    model = tiny_causal_lm(model_type, len(neox_tok))
    _check_shared_equals_whole(model, neox_tok, pack)


@pytest.mark.parametrize("pack", [True, False])
def test_sharing_the_prefix_with_eager_attention(pack, neox_tok):
    model = tiny_causal_lm("llama", len(neox_tok))
    model.config._attn_implementation = "eager"
    _check_shared_equals_whole(model, neox_tok, pack)


@pytest.mark.parametrize("pack", [True, False])
def test_sharing_the_prefix_on_the_mpt_fast_path(pack, tiny_mpt_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_mpt_dir)
    assert HFBackend(model, tok)._fast_mpt
    _check_shared_equals_whole(model, tok, pack)


def test_mpt_prefix_in_query_chunks_equals_one_chunk(tiny_mpt_dir, monkeypatch):
    """A bias budget small enough to split the queries after the prefix into several chunks."""
    from transformers import AutoModelForCausalLM

    from evalharness.backends.hf import mpt_attention

    model = AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_mpt_dir)
    want = HFBackend(model, tok, batch_size=4).loglikelihood(FEWSHOT)
    monkeypatch.setattr(mpt_attention, "BIAS_BUDGET_ELEMENTS", 4 * 4 * 100 * 3)
    got = HFBackend(model, tok, batch_size=4).loglikelihood(FEWSHOT)
    assert [r.logprob for r in got] == pytest.approx([r.logprob for r in want], abs=1e-4)


def _check_shared_equals_whole(model, tok, pack):
    shared = HFBackend(model, tok, batch_size=4, options=HFOptions(pack=pack))
    assert shared.share_prefix
    prefixes = [shared._shared_prefix(b) for b in shared._loglikelihood_plan(FEWSHOT)]
    assert any(p >= hf_backend.MIN_SHARED_PREFIX for p in prefixes), prefixes
    whole = HFBackend(model, tok, batch_size=4, options=HFOptions(pack=pack, share_prefix=False))
    assert not whole.share_prefix
    assert_same_and_reference(model, tok, FEWSHOT, shared, whole)


# --- long contexts: a row per choice and the context through the KV cache, instead of packing --------------

def test_contexts_longer_than_the_cap_are_not_packed():
    from evalharness.backends.hf.packing import plan_rows

    encoded = [([1, 2, 3], [4, 5]), ([1, 2, 3], [6, 7]), ([9] * 6, [4, 5]), ([9] * 6, [6, 7])]
    rows = plan_rows(encoded, max_length=100, pack=True, max_packed_context=5)
    # the 3-token context packs both choices into one row; the 6-token one gets a plain row per choice
    assert sorted((r.tokens, r.packed) for r in rows) == [
        ((1, 2, 3, 4, 6), True), ((9, 9, 9, 9, 9, 9, 4), False), ((9, 9, 9, 9, 9, 9, 6), False)]


def test_long_context_choices_share_the_context_through_the_cache(neox_tok, monkeypatch):
    monkeypatch.setattr(hf_backend, "PACK_MAX_CONTEXT", 40)
    model = tiny_causal_lm("llama", len(neox_tok))
    lm = HFBackend(model, neox_tok, batch_size=16)
    reqs = FEWSHOT[:4]  # two contexts of ~80 tokens, two choices each
    plan = lm._loglikelihood_plan(reqs)
    assert not any(r.packed for b in plan for r in b)
    assert all(lm._shared_prefix(b) >= hf_backend.MIN_SHARED_PREFIX for b in plan)
    for req, res in zip(reqs, lm.loglikelihood(reqs)):
        ref, greedy, n = reference_loglikelihood(model, neox_tok, req.context, req.continuation, lm.max_length)
        assert res.logprob == pytest.approx(ref, abs=2e-4)
        assert (res.num_tokens, res.is_greedy) == (n, greedy)
