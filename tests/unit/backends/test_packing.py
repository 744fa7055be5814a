"""Packed rows: hand-computed layouts, and packed scoring equal to separate rows on every packable family."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from evalharness.backends.hf.backend import _PACKABLE_TYPES, HFBackend
from evalharness.backends.hf.options import HFOptions
from evalharness.backends.hf.packing import Row, Scored, allowed_mask, plan_batches, plan_rows
from evalharness.requests import LoglikelihoodRequest as R
from support.tiny_models import assert_same_and_reference, tiny_causal_lm

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))


# --- layouts (hand-computed) --------------------------------------------------------------------

def test_shared_context_packs_choices_as_segments():
    # context [1, 2, 3]; choices [4, 5], [6, 7, 8], [9]
    (row,) = plan_rows([([1, 2, 3], [4, 5]), ([1, 2, 3], [6, 7, 8]), ([1, 2, 3], [9])], max_length=100, pack=True)
    assert row.tokens == (1, 2, 3, 4, 6, 7)  # each choice's last token is only a target, never an input
    assert row.positions == (0, 1, 2, 3, 3, 4)  # every segment restarts right after the context
    assert row.segments == (0, 0, 0, 1, 2, 2)
    assert row.scored == (
        Scored(0, (4, 5), (2, 3), False),  # 4 is predicted at the context's last token, 5 at token 4
        Scored(1, (6, 7, 8), (2, 4, 5), False),
        Scored(2, (9,), (2,), False),  # a one-token choice reads the context's last position only
    )


def test_one_token_choices_share_the_context_row():
    (row,) = plan_rows([([5, 6], [1]), ([5, 6], [2]), ([5, 6], [3]), ([5, 6], [4])], max_length=10, pack=True)
    assert (row.tokens, row.positions, row.segments) == ((5, 6), None, None)
    assert [s.reads for s in row.scored] == [(1,)] * 4
    assert [s.targets for s in row.scored] == [(1,), (2,), (3,), (4,)]


def test_single_segment_is_a_plain_row_and_duplicates_share_it():
    rows = plan_rows([([1, 2], [3, 4]), ([1, 2], [3, 4]), ([7], [8])], max_length=10, pack=True)
    assert [(r.tokens, r.packed) for r in rows] == [((1, 2, 3), False), ((7,), False)]
    assert [s.index for s in rows[0].scored] == [0, 1]
    assert rows[0].scored[0].reads == (1, 2)


def test_without_packing_every_distinct_input_is_its_own_row():
    rows = plan_rows([([1, 2, 3], [4, 5]), ([1, 2, 3], [6, 7, 8]), ([1, 2, 3], [9])], max_length=100, pack=False)
    assert [r.tokens for r in rows] == [(1, 2, 3, 4), (1, 2, 3, 6, 7), (1, 2, 3)]
    assert [r.scored[0].reads for r in rows] == [(2, 3), (2, 3, 4), (2,)]
    assert not any(r.packed for r in rows)


def test_truncated_requests_get_plain_rows_and_long_packs_are_split():
    # the second choice needs left truncation at max_length 4: a plain, cut row; the first still fits alone
    rows = plan_rows([([1, 2, 3], [4, 5]), ([1, 2, 3], [6, 7, 8])], max_length=4, pack=True)
    assert sorted(r.tokens for r in rows) == [(1, 2, 3, 4), (2, 3, 6, 7)]
    assert {r.tokens: r.scored[0].truncated for r in rows} == {(1, 2, 3, 4): False, (2, 3, 6, 7): True}
    # each choice fits, but one packed row (3 + 1 + 2 = 6 tokens) would exceed max_length 5: two rows
    rows = plan_rows([([1, 2, 3], [4, 5]), ([1, 2, 3], [6, 7, 8]), ([1, 2, 3], [9])], max_length=5, pack=True)
    assert [(r.tokens, [s.index for s in r.scored]) for r in rows] == [((1, 2, 3, 4), [0]), ((1, 2, 3, 6, 7), [1, 2])]


def test_allowed_mask_blocks_other_segments_and_padding():
    segments = torch.tensor([[0, 0, 1, 2, 2, -1]])
    got = allowed_mask(segments)[0, 0].int().tolist()
    assert got == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],  # segment 1 sees the context and itself
        [1, 1, 0, 1, 0, 0],  # segment 2 does not see segment 1
        [1, 1, 0, 1, 1, 0],
        [1, 1, 0, 0, 0, 1],  # padding: never an empty row (its outputs are never read)
    ]


def _plan_of(lm, rows):
    """The backend's batches of pre-made rows (batching only: plan_rows is bypassed)."""
    import evalharness.backends.hf.backend as hb

    original = hb.plan_rows
    hb.plan_rows = lambda *a, **k: rows
    try:
        return lm._loglikelihood_plan([R("x", " y")] * len(rows))
    finally:
        hb.plan_rows = original


def test_backend_batches_minimise_padding_plus_overhead(mpt_model):
    model, tok = mpt_model
    rows = [Row(tuple(range(n)), (Scored(i, (1,), (n - 1,), False),)) for i, n in enumerate((100, 60, 58, 57, 10, 9))]
    lm = HFBackend(model, tok, batch_size=3, options=HFOptions(share_prefix=False, batch_overhead_tokens=50))
    # [100] [60 58 57] [10 9] costs 3 x 50 + 100 + 180 + 20 = 450, the least of all cuts into batches of <= 3
    assert [[len(r.tokens) for r in b] for b in _plan_of(lm, rows)] == [[100], [60, 58, 57], [10, 9]]
    # batch_overhead_tokens None: plain consecutive batches of batch_size
    lm = HFBackend(model, tok, batch_size=3, options=HFOptions(share_prefix=False, batch_overhead_tokens=None))
    assert [[len(r.tokens) for r in b] for b in _plan_of(lm, rows)] == [[100, 60, 58], [57, 10, 9]]


@pytest.mark.parametrize("lengths, max_rows, overhead, expected", [
    # each row alone: 5 x 10 + 50; one batch: 10 + 5 x 10 = 60 (same length, no padding: fewest batches win)
    ([10, 10, 10, 10, 10], 8, 10, [(0, 5)]),
    # at most 2 rows per batch: the short row alone, 30 + 20 + 20 + 9 = 79 (any other cut pads it: 80)
    ([10, 10, 10, 10, 9], 2, 10, [(0, 2), (2, 4), (4, 5)]),
    # overhead 0: padding is all that counts, so rows of different lengths never share a batch
    ([9, 5, 5, 2], 4, 0, [(0, 1), (1, 3), (3, 4)]),
    # a long row stays apart when its own batch costs less than the padding it would add:
    # [20] [12 12] = 5 + 20 + 5 + 24 = 54 < [20 12 12] = 5 + 3 x 20 = 65
    ([20, 12, 12], 3, 5, [(0, 1), (1, 3)]),
    # ... and joins them when a batch costs more: [20 12 12] = 30 + 60 = 90 < [20] [12 12] = 60 + 44 = 104
    ([20, 12, 12], 3, 30, [(0, 3)]),
    ([], 4, 10, []),
])
def test_plan_batches_hand_computed(lengths, max_rows, overhead, expected):
    assert plan_batches(lengths, max_rows, overhead) == expected


def test_plan_batches_is_optimal_against_brute_force():
    import itertools
    import random

    rng = random.Random(0)
    for _ in range(200):
        lengths = sorted((rng.randint(1, 60) for _ in range(rng.randint(1, 8))), reverse=True)
        max_rows, overhead = rng.randint(1, 4), rng.choice([0, 7, 25, 100])

        def cost(bounds):
            return sum(overhead + (j - i) * lengths[i] for i, j in bounds)

        best = min(
            cost(list(zip((0,) + cuts, cuts + (len(lengths),))))
            for k in range(len(lengths))
            for cuts in itertools.combinations(range(1, len(lengths)), k)
            if all(j - i <= max_rows for i, j in zip((0,) + cuts, cuts + (len(lengths),)))
        )
        bounds = plan_batches(lengths, max_rows, overhead)
        assert [i for i, _ in bounds][1:] == [j for _, j in bounds][:-1] and bounds[0][0] == 0
        assert bounds[-1][1] == len(lengths) and all(j - i <= max_rows for i, j in bounds)
        assert cost(bounds) == best


# --- packed scoring equals separate rows ---------------------------------------------------------

REQUESTS = [
    R("Question: which is a fruit?\nAnswer:", " an apple from the tree"),
    R("Question: which is a fruit?\nAnswer:", " a granite stone"),
    R("Question: which is a fruit?\nAnswer:", " the river"),
    R("Question: which is a fruit?\nAnswer:", " x"),
    R("The capital of France is", " Paris, of course"),
    R("The capital of France is", " a long and winding road to the sea"),
    R("Alone", " here and now"),
    R("MMLU-like header\n\nQ?\nA. a\nB. b\nAnswer:", " A"),
    R("MMLU-like header\n\nQ?\nA. a\nB. b\nAnswer:", " B"),
]


@pytest.fixture(scope="module")
def neox_tok(neox_tokenizer_dir):
    return AutoTokenizer.from_pretrained(neox_tokenizer_dir)


@pytest.fixture(scope="module")
def mpt_model(tiny_mpt_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(tiny_mpt_dir)


def _check_packed_equals_plain(model, tok, attn: str | None = None):
    if attn:
        model.config._attn_implementation = attn
    packed = HFBackend(model, tok, batch_size=4)
    assert packed.pack, "this family should pack"
    plan = packed._loglikelihood_plan(REQUESTS)
    assert any(r.packed for b in plan for r in b)
    plain = HFBackend(model, tok, batch_size=4, options=HFOptions(pack=False))
    assert_same_and_reference(model, tok, REQUESTS, packed, plain)


@pytest.mark.parametrize("model_type", sorted(_PACKABLE_TYPES))
def test_packed_rows_score_like_separate_rows(model_type, neox_tok):
    _check_packed_equals_plain(tiny_causal_lm(model_type, len(neox_tok)), neox_tok)


def test_packed_rows_with_eager_attention(neox_tok):
    _check_packed_equals_plain(tiny_causal_lm("llama", len(neox_tok)), neox_tok, attn="eager")


def test_packed_rows_on_mpt_fast_path(mpt_model):
    model, tok = mpt_model
    lm = HFBackend(model, tok)
    assert lm._fast_mpt
    _check_packed_equals_plain(model, tok)


def test_families_without_4d_mask_support_do_not_pack(neox_tok):
    model = tiny_causal_lm("llama", len(neox_tok))
    model.config.model_type = "gpt2"  # not in the checked list
    assert not HFBackend(model, neox_tok).pack
    assert not HFBackend(model, neox_tok, options=HFOptions(pack=True)).pack


# --- the speed benchmark's work count ------------------------------------------------------------

def test_least_work_counts_each_distinct_prefix_once():
    from speed import distinct_prefixes

    # rows ctx+choice inputs: [1,2,3,4], [1,2,3,6,7], [1,2,3]: prefixes 1,12,123,1234,1236,12367 -> 6
    assert distinct_prefixes([(1, 2, 3, 4), (1, 2, 3, 6, 7), (1, 2, 3)]) == 6
    assert distinct_prefixes([(5, 6), (5, 6), (5, 6)]) == 2
    assert distinct_prefixes([(1,), (2,)]) == 2


def test_batched_encoding_equals_one_pair_at_a_time(neox_tok):
    model = tiny_causal_lm("llama", len(neox_tok))
    lm = HFBackend(model, neox_tok)
    reqs = REQUESTS + [R("", " starts empty"), R("Trailing spaces  ", "x"), R("Question:\n\n", "Answer")]
    assert lm.encode_pairs(reqs) == [lm.encode_pair(r.context, r.continuation) for r in reqs]
