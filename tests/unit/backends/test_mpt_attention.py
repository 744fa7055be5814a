"""evalharness.backends.hf.mpt_attention against HF's own eager MPT forward (tiny random models, CPU)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MptConfig, MptForCausalLM

from evalharness.backends.hf import mpt_attention
from evalharness.backends.hf.mpt_attention import alibi_slopes, mpt_hidden_states, supports_fast_mpt

VOCAB = 97


def tiny_mpt(*, n_heads: int = 4, d_model: int = 64, n_layers: int = 3, seed: int = 0,
             dtype: torch.dtype = torch.float32, **attn_config) -> MptForCausalLM:
    """A random MPT like conftest.build_tiny_mpt (weights N(0, 0.2)), with random norm scales too."""
    config = MptConfig(d_model=d_model, n_heads=n_heads, n_layers=n_layers, expansion_ratio=2, max_seq_len=128,
                       vocab_size=VOCAB, attn_config={"alibi": True, **attn_config})
    torch.manual_seed(seed)
    model = MptForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
            else:  # LayerNorm scales
                p.uniform_(0.5, 1.5)
    return model.to(dtype).eval()


CONFIGS = {
    "4 heads": {},
    "6 heads": {"n_heads": 6, "d_model": 96},  # not a power of 2: HF's interleaved slope rule
    "12 heads": {"n_heads": 12, "d_model": 96, "n_layers": 2},
    "clip_qkv": {"clip_qkv": 0.3},
    "softmax_scale": {"softmax_scale": 0.6, "n_heads": 6, "d_model": 96},
}


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def model(request: pytest.FixtureRequest) -> MptForCausalLM:
    return tiny_mpt(**CONFIGS[request.param])


@torch.inference_mode()
def hf_hidden(model: MptForCausalLM, ids: list[int]) -> torch.Tensor:
    """HF eager final hidden states [T, C] of one unpadded row."""
    return model.transformer(torch.tensor([ids])).last_hidden_state[0]


def random_ids(generator: torch.Generator, length: int) -> list[int]:
    return torch.randint(0, VOCAB, (length,), generator=generator).tolist()


def pack(context: list[int], choices: list[list[int]], length: int) -> tuple[list[int], list[int], list[int]]:
    """(input_ids, position_ids, segment_ids) of one packed row, right-padded to `length`."""
    ids, positions, segments = list(context), list(range(len(context))), [0] * len(context)
    for k, choice in enumerate(choices, start=1):
        ids += choice
        positions += range(len(context), len(context) + len(choice))
        segments += [k] * len(choice)
    pad = length - len(ids)
    return ids + [0] * pad, positions + [0] * pad, segments + [-1] * pad


def packed_batch(rows: list[tuple[list[int], list[list[int]]]]) -> tuple[torch.Tensor, ...]:
    length = max(len(c) + sum(map(len, xs)) for c, xs in rows)
    packed = [pack(c, xs, length) for c, xs in rows]
    return tuple(torch.tensor([p[i] for p in packed]) for i in range(3))


def assert_packed_matches_hf(model: MptForCausalLM, rows, hidden: torch.Tensor, atol: float) -> None:
    """Each row's context positions equal HF on the context alone, each segment HF on context + choice."""
    for b, (context, choices) in enumerate(rows):
        torch.testing.assert_close(hidden[b, :len(context)], hf_hidden(model, context), atol=atol, rtol=0)
        start = len(context)
        for choice in choices:
            expected = hf_hidden(model, context + choice)[len(context):]
            torch.testing.assert_close(hidden[b, start:start + len(choice)], expected, atol=atol, rtol=0)
            start += len(choice)


def test_slopes_are_hf_alibi(model: MptForCausalLM) -> None:
    from transformers.models.mpt.modeling_mpt import build_mpt_alibi_tensor

    length = 9
    hf = build_mpt_alibi_tensor(model.config.n_heads, length)  # [H, 1, T]: slope * (s - (T-1))
    slopes = alibi_slopes(model)
    torch.testing.assert_close(hf[:, 0, :], slopes[:, None] * torch.arange(1 - length, 1).float())
    assert len(set(slopes.tolist())) == model.config.n_heads


def test_plain_rows_right_padded_match_hf(model: MptForCausalLM) -> None:
    generator = torch.Generator().manual_seed(1)
    rows = [random_ids(generator, n) for n in (23, 9, 16, 1)]
    length = max(map(len, rows))
    ids = torch.tensor([r + [5] * (length - len(r)) for r in rows])
    with torch.inference_mode():
        hidden = mpt_hidden_states(model, ids)
    assert hidden.shape == (len(rows), length, model.config.d_model) and hidden.dtype == torch.float32
    for b, row in enumerate(rows):
        torch.testing.assert_close(hidden[b, :len(row)], hf_hidden(model, row), atol=1e-5, rtol=0)


def test_causal_lm_and_model_agree_with_hf_full_batch(model: MptForCausalLM) -> None:
    """Unpadded batch: equal to HF's whole forward, from MptForCausalLM and from its MptModel."""
    ids = torch.randint(0, VOCAB, (3, 20), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = model(ids, output_hidden_states=True).hidden_states[-1]
        torch.testing.assert_close(mpt_hidden_states(model, ids), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(mpt_hidden_states(model.transformer, ids), expected, atol=1e-5, rtol=0)
        # explicit 0..T-1 positions take the general path: same result
        positions = torch.arange(20).expand(3, 20)
        torch.testing.assert_close(mpt_hidden_states(model, ids, position_ids=positions), expected,
                                   atol=1e-5, rtol=0)


def test_packed_rows_match_separate_hf_rows(model: MptForCausalLM) -> None:
    generator = torch.Generator().manual_seed(3)
    rows = [
        (random_ids(generator, 11), [random_ids(generator, n) for n in (3, 6, 1, 4)]),
        (random_ids(generator, 5), [random_ids(generator, n) for n in (2, 7)]),  # shorter: right-padded
    ]
    ids, positions, segments = packed_batch(rows)
    assert (segments == -1).any()
    with torch.inference_mode():
        hidden = mpt_hidden_states(model, ids, position_ids=positions, segment_ids=segments)
    assert torch.isfinite(hidden).all()  # padding queries are never fully masked
    assert_packed_matches_hf(model, rows, hidden, atol=1e-5)


def test_packed_row_needs_its_position_ids() -> None:
    """Without the restarting positions the later choices see the wrong ALiBi distances to the context."""
    model = tiny_mpt()
    generator = torch.Generator().manual_seed(4)
    context, choices = random_ids(generator, 8), [random_ids(generator, 5), random_ids(generator, 5)]
    ids, positions, segments = packed_batch([(context, choices)])
    with torch.inference_mode():
        wrong = mpt_hidden_states(model, ids, segment_ids=segments)
        right = mpt_hidden_states(model, ids, position_ids=positions, segment_ids=segments)
    expected = hf_hidden(model, context + choices[1])[8:]
    torch.testing.assert_close(right[0, 13:], expected, atol=1e-5, rtol=0)
    assert (wrong[0, 13:] - expected).abs().max() > 1e-2
    torch.testing.assert_close(wrong[0, :13], right[0, :13], atol=1e-5, rtol=0)  # first choice: same positions


def test_clip_qkv_is_active_and_matched() -> None:
    clipped, unclipped = tiny_mpt(clip_qkv=0.3), tiny_mpt()
    ids = torch.randint(0, VOCAB, (2, 15), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        hf_clipped = clipped.transformer(ids).last_hidden_state
        assert (hf_clipped - unclipped.transformer(ids).last_hidden_state).abs().max() > 1e-2
        torch.testing.assert_close(mpt_hidden_states(clipped, ids), hf_clipped, atol=1e-5, rtol=0)


def test_softmax_scale_is_honoured() -> None:
    scaled, default = tiny_mpt(softmax_scale=0.6), tiny_mpt()
    assert scaled.transformer.blocks[0].attn.softmax_scale == 0.6
    assert default.transformer.blocks[0].attn.softmax_scale == pytest.approx(0.25)  # 1/sqrt(head_dim)
    ids = torch.randint(0, VOCAB, (2, 15), generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        hf_scaled = scaled.transformer(ids).last_hidden_state
        assert (hf_scaled - default.transformer(ids).last_hidden_state).abs().max() > 1e-2
        torch.testing.assert_close(mpt_hidden_states(scaled, ids), hf_scaled, atol=1e-5, rtol=0)


def test_chunked_bias_equals_whole_bias(monkeypatch: pytest.MonkeyPatch) -> None:
    """Over the bias budget the queries are attended in chunks (bias rebuilt per layer): same results."""
    model = tiny_mpt(n_heads=6, d_model=96)
    generator = torch.Generator().manual_seed(7)
    rows = [(random_ids(generator, 30), [random_ids(generator, n) for n in (9, 20, 5)]),
            (random_ids(generator, 12), [random_ids(generator, 4)])]
    ids, positions, segments = packed_batch(rows)
    plain = torch.randint(0, VOCAB, (2, 70), generator=generator)
    with torch.inference_mode():
        whole_packed = mpt_hidden_states(model, ids, positions, segments)
        whole_plain = mpt_hidden_states(model, plain)
        monkeypatch.setattr(mpt_attention, "BIAS_BUDGET_ELEMENTS", 6 * 70 * 20)  # chunks of 20 queries
        bias = mpt_attention._AlibiBias.build(alibi_slopes(model), model.transformer.wte(plain), None, None)
        assert bias.bounds == [(0, 20), (20, 40), (40, 60), (60, 70)] and bias.cached is None
        torch.testing.assert_close(mpt_hidden_states(model, ids, positions, segments), whole_packed,
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(mpt_hidden_states(model, plain), whole_plain, atol=1e-5, rtol=0)
    assert_packed_matches_hf(model, rows, whole_packed, atol=1e-5)


def test_plain_bias_is_shared_by_the_batch() -> None:
    """Plain rows: one [1, H, T, T] bias, ALiBi relative to the query and -inf above the diagonal."""
    model = tiny_mpt(n_heads=6, d_model=96)
    hidden = torch.zeros(8, 5, 96)
    bias = mpt_attention._AlibiBias.build(alibi_slopes(model), hidden, None, None)
    (q0, q1, whole), = bias.chunks()
    assert (q0, q1) == (0, 5) and whole.shape == (1, 6, 5, 5)
    slopes = alibi_slopes(model)
    assert whole[0, :, 4, 1].tolist() == pytest.approx((-3 * slopes).tolist())
    assert torch.isneginf(whole[0, :, 1, 2]).all() and (whole[0, :, 3, 3] == 0).all()


def bf16_error(model32: MptForCausalLM, model16: MptForCausalLM, rows: list[list[int]]) -> tuple[float, float]:
    """(ours, HF) bf16 max abs error against HF float32, relative to the largest float32 hidden value."""
    length = max(map(len, rows))
    ids = torch.tensor([r + [0] * (length - len(r)) for r in rows])
    with torch.inference_mode():
        ours = mpt_hidden_states(model16, ids)
    assert ours.dtype == torch.bfloat16
    ours_err = hf_err = scale = 0.0
    for b, row in enumerate(rows):
        reference = hf_hidden(model32, row)
        scale = max(scale, reference.abs().max().item())
        ours_err = max(ours_err, (ours[b, :len(row)].float() - reference).abs().max().item())
        hf_err = max(hf_err, (hf_hidden(model16, row).float() - reference).abs().max().item())
        assert (ours[b, :len(row)].float() - hf_hidden(model16, row).float()).norm() < 0.05 * reference.norm()
    return ours_err / scale, hf_err / scale


def test_bfloat16_plain_rows_close_to_hf() -> None:
    generator = torch.Generator().manual_seed(8)
    ours, hf = bf16_error(tiny_mpt(), tiny_mpt(dtype=torch.bfloat16), [random_ids(generator, n) for n in (40, 17, 29)])
    assert ours < 0.05 and ours < 2 * hf + 0.01, (ours, hf)


def test_bfloat16_packed_rows_close_to_hf() -> None:
    model32, model16 = tiny_mpt(), tiny_mpt(dtype=torch.bfloat16)
    generator = torch.Generator().manual_seed(9)
    rows = [(random_ids(generator, 20), [random_ids(generator, n) for n in (6, 3, 8)])]
    ids, positions, segments = packed_batch(rows)
    with torch.inference_mode():
        ours = mpt_hidden_states(model16, ids, positions, segments)[0].float()
    context, choices = rows[0]
    expected = torch.cat([hf_hidden(model32, context)] + [hf_hidden(model32, context + x)[20:] for x in choices])
    assert (ours - expected).norm() < 0.05 * expected.norm()


def test_supports_fast_mpt() -> None:
    model = tiny_mpt()
    assert supports_fast_mpt(model) and supports_fast_mpt(model.transformer)
    assert supports_fast_mpt(tiny_mpt(clip_qkv=1.0, softmax_scale=0.3))
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    assert not supports_fast_mpt(llama)
    assert not supports_fast_mpt(object())
    for unsupported in ({"qk_ln": True}, {"alibi": False}, {"alibi_bias_max": 16},
                        {"attn_type": "multiquery_attention"}, {"prefix_lm": True}):
        assert not supports_fast_mpt(tiny_mpt(n_layers=1, **unsupported)), unsupported
    dropout = tiny_mpt(n_layers=1, attn_pdrop=1)  # HF's strict config types attn_pdrop as int: 0.1 is refused
    assert supports_fast_mpt(dropout) and not supports_fast_mpt(dropout.train())


def test_alibi_bias_max_is_honoured_although_hf_ignores_it() -> None:
    """HF's forward always uses alibi_bias_max=8; we follow the config (so supports_fast_mpt says False)."""
    model8, model4 = tiny_mpt(), tiny_mpt(alibi_bias_max=4)
    torch.testing.assert_close(alibi_slopes(model4), alibi_slopes(model8) ** 0.5)  # 2^-(4h/H) vs 2^-(8h/H)
    ids = torch.randint(0, VOCAB, (1, 12), generator=torch.Generator().manual_seed(10))
    with torch.inference_mode():
        torch.testing.assert_close(model4.transformer(ids).last_hidden_state,
                                   model8.transformer(ids).last_hidden_state, atol=0, rtol=0)
        assert (mpt_hidden_states(model4, ids) - mpt_hidden_states(model8, ids)).abs().max() > 1e-3


def test_flash_path_not_taken_on_cpu() -> None:
    hidden = torch.zeros(1, 4, 8, dtype=torch.bfloat16)
    assert not mpt_attention._flash_applies(hidden, None, None)
