"""The fused CPU kernels (evalharness/backends/hf_cpu/fused_ops.*): hand-computed values, eager PyTorch's results element
by element, the swap in and out of a model, and the backend's scores with and without them."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from evalharness.backends.hf.backend import HFBackend
from evalharness.backends.hf.options import HFOptions
from evalharness.backends.hf_cpu import accelerator_for
from evalharness.backends.hf_cpu.fused_ops import fusable_modules, fused_llama_ops, load_fused_ops
from evalharness.requests import LoglikelihoodRequest as R
from support.tiny_models import tiny_llama


@pytest.fixture(scope="module")
def ops():
    built = load_fused_ops()
    assert built is not None, "the fused kernels must build here (the machine has a C++ compiler and ninja)"
    return built


def eager_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """LlamaRMSNorm.forward, as transformers writes it."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def test_rms_norm_hand_computed(ops):
    # x = [3, 4]: mean of squares 12.5, 1/sqrt(12.5) = 0.2828427; times [3, 4] and the weight [1, 2]
    x = torch.tensor([[3.0, 4.0]])
    out = ops.rms_norm(x, torch.tensor([1.0, 2.0]), 0.0)
    assert out.tolist()[0] == pytest.approx([3 / math.sqrt(12.5), 2 * 4 / math.sqrt(12.5)], rel=1e-6)
    # eps inside the root: x = [1, 1, 1], eps 1 -> 1/sqrt(2)
    out = ops.rms_norm(torch.ones(1, 3), torch.ones(3), 1.0)
    assert out.tolist()[0] == pytest.approx([1 / math.sqrt(2)] * 3, rel=1e-6)


def test_rope_hand_computed(ops):
    # one head of 4: x = [1, 2, 3, 4], rotate_half(x) = [-3, -4, 1, 2]; cos = [1, 0.5, 0, 2], sin = [0, 1, 1, -1]
    # x * cos + rotate_half(x) * sin = [1 + 0, 1 - 4, 0 + 1, 8 - 2]
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    cos = torch.tensor([1.0, 0.5, 0.0, 2.0]).view(1, 1, 4)
    sin = torch.tensor([0.0, 1.0, 1.0, -1.0]).view(1, 1, 4)
    assert ops.rope(x, cos, sin).flatten().tolist() == [1.0, -3.0, 1.0, 6.0]


@pytest.mark.parametrize("dim", [576, 37, 5])  # a multiple of 16, and rows with a short tail
def test_rms_norm_matches_eager(ops, dim):
    g = torch.Generator().manual_seed(dim)
    x = torch.randn(64, dim, generator=g) * 3
    w = 1 + 0.2 * torch.randn(dim, generator=g)
    want = eager_rms_norm(x, w, 1e-5)
    assert torch.allclose(ops.rms_norm(x, w, 1e-5), want, rtol=1e-6, atol=1e-6)
    xb, wb = x.bfloat16(), w.bfloat16()
    got, want = ops.rms_norm(xb, wb, 1e-5), eager_rms_norm(xb, wb, 1e-5)
    # the same roundings; only the float32 sum of squares is added in another order, so a result may land on
    # the neighbouring bfloat16 value
    assert (got == want).float().mean() > 0.999
    assert torch.allclose(got.float(), want.float(), rtol=2 ** -7, atol=0)


def eager_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """transformers' apply_rotary_pos_emb on x [B, T, H, D] laid out as the projection gives it."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    q = x.transpose(1, 2)  # [B, H, T, D], as LlamaAttention passes it
    return apply_rotary_pos_emb(q, q, cos, sin)[0].transpose(1, 2)


@pytest.mark.parametrize("batch_cos", [1, 3])  # cos/sin shared by the batch, or one per row (packed positions)
@pytest.mark.parametrize("dim", [64, 40, 6])  # halves of 32 (two vectors), 20 (a tail), 3 (tail only)
def test_rope_matches_eager_exactly(ops, dim, batch_cos):
    g = torch.Generator().manual_seed(dim + batch_cos)
    x = torch.randn(3, 11, 5, dim, generator=g)
    angles = torch.randn(batch_cos, 11, dim, generator=g) * 3
    for dtype in (torch.float32, torch.bfloat16):
        xd, cos, sin = x.to(dtype), angles.cos().to(dtype), angles.sin().to(dtype)
        assert torch.equal(ops.rope(xd, cos, sin), eager_rope(xd, cos, sin))  # same ops, same roundings


def test_silu_mul_hand_computed(ops):
    # silu(g) = g / (1 + exp(-g)): silu(0) = 0, silu(1) = 1 / (1 + 1/e) = 0.7310586, silu(-2) = -2 / (1 + e^2)
    # = -0.2384058; times up = [5, 2, -3]
    out = ops.silu_mul(torch.tensor([0.0, 1.0, -2.0]), torch.tensor([5.0, 2.0, -3.0]))
    assert out.tolist() == pytest.approx([0.0, 2 * 0.7310586, 3 * 0.2384058], rel=1e-6)
    # large |g|: silu(100) = 100; silu(-100) = -100 e^-100 ~ -4e-42, here -100 / (1 + e^88) ~ -6e-37 (exp's argument
    # is clamped at 88; torch gets -0.0 from an infinite exp); NaN stays NaN
    out = ops.silu_mul(torch.tensor([100.0, -100.0, float("nan")]), torch.ones(3))
    assert out[0].item() == 100.0 and -1e-36 < out[1].item() <= 0.0 and math.isnan(out[2].item())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(3, 7, 1536), (5, 37), (1, 5)])  # whole vectors; a 5-value tail; tail only
def test_silu_mul_matches_eager(ops, dtype, shape):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(3)) * 4
    u = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    g, u = g.to(dtype), u.to(dtype)
    eager = torch.nn.functional.silu(g) * u
    out = ops.silu_mul(g, u)
    assert out.dtype == dtype and out.shape == g.shape
    if dtype == torch.bfloat16:  # the same roundings; exp differs from torch's (Sleef) only in float32's last bits
        assert (out != eager).float().mean().item() < 1e-3
        assert torch.allclose(out.float(), eager.float(), rtol=2 ** -7, atol=0)
    else:
        assert torch.allclose(out, eager, rtol=1e-6, atol=1e-7)


def test_kernels_refuse_bad_operands(ops):
    with pytest.raises(RuntimeError, match="dtype"):
        ops.rms_norm(torch.ones(2, 4), torch.ones(4, dtype=torch.bfloat16), 1e-5)
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.rms_norm(torch.ones(4, 4).t(), torch.ones(4), 1e-5)
    with pytest.raises(RuntimeError, match="B or 1"):
        ops.rope(torch.ones(2, 3, 1, 4), torch.ones(2, 5, 4), torch.ones(2, 5, 4))
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        ops.rms_norm(torch.ones(2, 4, dtype=torch.float64), torch.ones(4, dtype=torch.float64), 1e-5)


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor,
                        scale: float) -> torch.Tensor:
    """softmax(scale q k^T over allowed keys) v in float64 with the key/value heads repeated; [B, Tq, H, D]."""
    group = q.shape[1] // k.shape[1]
    k, v = k.double().repeat_interleave(group, 1), v.double().repeat_interleave(group, 1)
    scores = (q.double() @ k.transpose(-1, -2) * scale).masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2)


def test_attention_hand_computed(ops):
    # one head, D = 16, two keys: q . k = [0, ln 3] (scale 1), so the weights are [1/4, 3/4]; values 4 and 8 -> 7
    q = torch.zeros(1, 1, 2, 16)
    q[0, 0, 1, 0] = math.log(3.0)
    k = torch.zeros(1, 1, 2, 16)
    k[0, 0, 1, 0] = 1.0
    v = torch.stack([torch.full((16,), 4.0), torch.full((16,), 8.0)])[None, None]
    out = ops.attention(q, k, v, None, 1.0)  # causal: query 0 sees key 0 only, query 1 both
    assert out.shape == (1, 2, 1, 16)
    assert out[0, 0, 0].tolist() == pytest.approx([4.0] * 16, abs=1e-6)
    assert out[0, 1, 0].tolist() == pytest.approx([0.25 * 4 + 0.75 * 8] * 16, rel=1e-6)
    # a mask that lets query 0 see only key 1 and query 1 nothing (a row that may attend nothing gets zeros)
    mask = torch.tensor([[False, True], [False, False]])[None, None]
    out = ops.attention(q, k, v, mask, 1.0)
    assert out[0, 0, 0].tolist() == pytest.approx([8.0] * 16) and out[0, 1, 0].tolist() == [0.0] * 16


@pytest.mark.parametrize("shape", [  # B, H, KV, Tq, Tk, D
    (3, 6, 2, 37, 37, 64),    # grouped heads, a key count that is not a multiple of 16
    (2, 4, 4, 70, 70, 32),    # one key/value head per query head, more than 64 keys (several score blocks)
    (2, 2, 1, 1, 23, 48),     # one query over all keys (decoding), D of three vectors
    (2, 4, 2, 9, 150, 128),   # few queries after a long cache (the shared-prefix pass), D of eight vectors
])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_reference(ops, shape, masked):
    b, h, kv, tq, tk, d = shape
    g = torch.Generator().manual_seed(tq * tk + d)
    # laid out as LlamaAttention makes them: [B, T, heads, D] transposed to [B, heads, T, D] (strided views)
    q = (torch.randn(b, tq, h, d, generator=g) * 2).transpose(1, 2)
    k = (torch.randn(b, tk, kv, d, generator=g) * 2).transpose(1, 2)
    v = torch.randn(b, tk, kv, d, generator=g).transpose(1, 2)
    causal = torch.arange(tq)[:, None] + (tk - tq) >= torch.arange(tk)[None, :]
    mask = None
    allowed = causal.expand(b, 1, tq, tk)
    if masked:  # a block mask as packed rows have: causal, and some keys hidden from some rows
        mask = (causal & (torch.rand(b, 1, tq, tk, generator=g) > 0.3)).clone()
        mask[..., 0] = True  # every query may see something
        allowed = mask
    want = reference_attention(q, k, v, allowed, d ** -0.5)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 2 ** -7)):
        got = ops.attention(q.to(dtype), k.to(dtype), v.to(dtype), mask, d ** -0.5)
        assert got.dtype == dtype and got.shape == (b, tq, h, d)
        exact = reference_attention(q.to(dtype), k.to(dtype), v.to(dtype), allowed, d ** -0.5)  # same inputs
        # float32 as close as torch's own sdpa kernel comes (3e-6 here); bfloat16: the float32 result rounded once
        assert torch.allclose(got.double(), exact, rtol=tol, atol=tol)
    assert torch.allclose(ops.attention(q, k, v, mask, d ** -0.5).double(), want, rtol=1e-5, atol=1e-5)


def test_attention_matches_torch_sdpa(ops):
    """The same as torch's scaled_dot_product_attention (what transformers' sdpa runs) on a causal batch."""
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(4, 9, 40, 64, generator=g), torch.randn(4, 3, 40, 64, generator=g),
               torch.randn(4, 3, 40, 64, generator=g))
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).transpose(1, 2)
    assert torch.allclose(ops.attention(q, k, v, None, 64 ** -0.5), want, rtol=1e-5, atol=1e-6)


def test_attention_refuses_bad_operands(ops):
    q, k = torch.ones(1, 4, 3, 16), torch.ones(1, 2, 3, 16)
    with pytest.raises(RuntimeError, match="multiple of the key/value heads"):
        ops.attention(q, torch.ones(1, 3, 3, 16), torch.ones(1, 3, 3, 16), None, 1.0)
    with pytest.raises(RuntimeError, match="multiple of 16"):
        ops.attention(torch.ones(1, 4, 3, 8), torch.ones(1, 2, 3, 8), torch.ones(1, 2, 3, 8), None, 1.0)
    with pytest.raises(RuntimeError, match="boolean"):
        ops.attention(q, k, k, torch.zeros(1, 1, 3, 3), 1.0)
    with pytest.raises(RuntimeError, match="at least as many keys"):
        ops.attention(q, k[:, :, :2], k[:, :, :2], None, 1.0)
    with pytest.raises(RuntimeError, match="one dtype"):
        ops.attention(q, k.bfloat16(), k, None, 1.0)


def test_swap_in_and_out(ops):
    model = tiny_llama()
    kinds = [kind for _, kind in fusable_modules(model)]
    # two norms per layer + the final one, an attention and an MLP per layer
    assert kinds.count("rms_norm") == 2 * 2 + 1 and kinds.count("attention") == 2 and kinds.count("mlp") == 2
    ids = torch.randint(0, 50432, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        eager = model.model(input_ids=ids).last_hidden_state
        with fused_llama_ops(model, ops) as swapped:
            assert swapped == 9
            assert isinstance(model.model.layers[0].self_attn.forward, functools.partial)
            assert all("forward" in m.__dict__ for m, _ in fusable_modules(model))
            fused = model.model(input_ids=ids).last_hidden_state
    assert not any("forward" in m.__dict__ for m, _ in fusable_modules(model))  # restored
    assert torch.allclose(fused, eager, atol=2e-5, rtol=1e-5)


def test_mlp_swap_matches_eager_in_bfloat16(ops):
    model = tiny_llama(torch.bfloat16)
    mlp = model.model.layers[0].mlp
    x = torch.randn(2, 9, model.config.hidden_size, generator=torch.Generator().manual_seed(5)).to(torch.bfloat16)
    with torch.inference_mode():
        eager = mlp(x)
        with fused_llama_ops(model, ops):
            assert isinstance(mlp.forward, functools.partial)
            fused = mlp(x)
    assert torch.equal(fused, eager)


def test_mlp_is_swapped_only_with_the_known_silu(ops):
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, hidden_act="gelu")
    model = LlamaForCausalLM(config).eval()
    assert "mlp" not in [kind for _, kind in fusable_modules(model)]  # act_fn is not SiLU: eager MLP


def test_autograd_falls_back_to_eager(ops):
    model = tiny_llama()
    ids = torch.randint(0, 50432, (2, 12), generator=torch.Generator().manual_seed(2))
    with fused_llama_ops(model, ops):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()  # the kernels have no backward: with grad on, the eager forwards ran
    assert model.model.norm.weight.grad is not None and model.model.layers[0].self_attn.q_proj.weight.grad is not None
    assert model.model.layers[0].mlp.gate_proj.weight.grad is not None


def test_backend_scores_the_same_with_and_without_kernels(neox_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(neox_tokenizer_dir)
    requests = [R("The capital of France is", " Paris"), R("The capital of France is", " Rome"),
                R("One plus one equals", " two, of course"), R("A", " b c d e f g")]
    # float32: the same to 1e-4; bfloat16: a norm output one unit in the last place away (2^-8 relative) may
    # propagate, so within 1%
    for dtype, rel, abs_ in ((torch.float32, 0, 1e-4), (torch.bfloat16, 1e-2, 1e-3)):
        model = tiny_llama(dtype)
        fused = HFBackend(model, tok, accelerator=accelerator_for(model, only=("fused_ops",)))
        assert fused.accelerator.parts["fused_ops"] is True
        eager = HFBackend(model, tok, options=HFOptions(accelerator="none"))
        assert eager.accelerator is None
        for a, b in zip(fused.loglikelihood(requests), eager.loglikelihood(requests)):
            assert a.logprob == pytest.approx(b.logprob, rel=rel, abs=abs_)
            assert a.num_tokens == b.num_tokens


def test_attention_kernel_runs_for_every_batch_layout(neox_tokenizer_dir, monkeypatch):
    """Plain causal batches, packed rows (block mask) and the shared-prefix pass (cache + mask) all reach the
    kernel under sdpa, and score as transformers' own sdpa attention does."""
    from evalharness.backends.hf_cpu import fused_ops

    calls = []
    real = fused_ops._attention_kernel_ok

    def spy(module, q, k, mask, kwargs):
        ok = real(module, q, k, mask, kwargs)
        calls.append((q.shape[2], k.shape[2], None if mask is None else mask.dtype, ok))
        return ok

    monkeypatch.setattr(fused_ops, "_attention_kernel_ok", spy)
    tok = AutoTokenizer.from_pretrained(neox_tokenizer_dir)
    shared = " ".join(["The quick brown fox jumps over the lazy dog."] * 8)
    requests = ([R("Question: what is two plus two? Answer:", c) for c in (" four of them", " five apples", " six")]
                + [R(shared + f" item {i}:", " yes sir") for i in range(4)] + [R("Hello world", " again and again")])
    model = tiny_llama()
    assert model.config._attn_implementation == "sdpa"
    fused = HFBackend(model, tok, batch_size=8, accelerator=accelerator_for(model, only=("fused_ops",)))
    got = fused.loglikelihood(requests)
    assert calls and all(ok for *_, ok in calls)
    assert {(tq == tk, mask) for tq, tk, mask, _ in calls} >= {(True, None), (False, torch.bool), (True, torch.bool)}
    eager = HFBackend(model, tok, batch_size=8, options=HFOptions(accelerator="none"))
    for a, b in zip(got, eager.loglikelihood(requests)):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_attention_kernel_falls_back_when_it_would_compute_something_else(ops):
    from evalharness.backends.hf_cpu.fused_ops import _attention_kernel_ok

    model = tiny_llama()
    attn = model.model.layers[0].self_attn
    q, k = torch.ones(2, 4, 5, 16), torch.ones(2, 2, 5, 16)
    assert _attention_kernel_ok(attn, q, k, None, {"position_ids": None})
    assert _attention_kernel_ok(attn, q, k, torch.ones(2, 1, 5, 5, dtype=torch.bool), {})
    assert not _attention_kernel_ok(attn, q, k, torch.zeros(2, 1, 5, 5), {})  # an additive float mask
    assert not _attention_kernel_ok(attn, q, torch.ones(2, 2, 7, 16), None, {})  # sdpa would align it top-left
    assert not _attention_kernel_ok(attn, q, k, None, {"position_bias": torch.zeros(1)})  # a bias it does not add
    assert not _attention_kernel_ok(attn, torch.ones(2, 4, 5, 8), torch.ones(2, 2, 5, 8), None, {})  # D of 8
    model.config._attn_implementation = "eager"
    assert not _attention_kernel_ok(attn, q, k, None, {})


def test_other_families_are_not_swapped(neox_tokenizer_dir):
    from transformers import MptConfig, MptForCausalLM

    mpt = MptForCausalLM(MptConfig(d_model=32, n_heads=4, n_layers=1, vocab_size=100, max_seq_len=32))
    assert fusable_modules(mpt) == []
    backend = HFBackend(mpt, AutoTokenizer.from_pretrained(str(neox_tokenizer_dir)))
    assert backend.accelerator is None or backend.accelerator.parts["fused_ops"] is not True



def test_greedy_loop_runs_through_the_kernels_with_the_same_output(neox_tokenizer_dir, monkeypatch):
    """gen_accelerate: the greedy loop's prefill (left-padded rows, after a shared prefix's cache) reaches the
    attention kernel, and every completion (rows leaving the batch at different steps) equals the loop's without
    the plugin's swaps (gen_accelerate=False) and without the plugin at all."""
    from evalharness.backends.hf_cpu import fused_ops
    from evalharness.requests import GenerateRequest as G

    calls = []
    real = fused_ops._attention_kernel_ok

    def spy(module, q, k, mask, kwargs):
        ok = real(module, q, k, mask, kwargs)
        calls.append((q.shape[2], k.shape[2], ok))
        return ok

    monkeypatch.setattr(fused_ops, "_attention_kernel_ok", spy)
    tok = AutoTokenizer.from_pretrained(neox_tokenizer_dir)
    shared = "Question: 1+1?\nAnswer: 2\n\nQuestion: 2+2?\nAnswer: 4\n\nQuestion: 3+3?\nAnswer: 6\n\n"
    prompts = ["The capital of France is", "Once", "A B C D E F G"] + [shared + q for q in ("Question: 5+5?", "Q: 7?", "Q: 8+8?", "Q: 9")]
    requests = [G(p, ("\n",), 12) for p in prompts]  # the longest four (one batch) share their first 30+ tokens
    model = tiny_llama()
    with_swaps = HFBackend(model, tok, batch_size=4, accelerator=accelerator_for(model, only=("fused_ops",)))
    got = with_swaps.generate_until(requests)
    # the prefill, also after a shared prefix, reaches the kernel; one-query steps run torch's sdpa (faster there)
    assert calls and all(ok for *_, ok in calls) and all(tq > 1 for tq, *_ in calls)
    assert any(tk > tq for tq, tk, _ in calls)
    calls.clear()
    unswapped = HFBackend(model, tok, batch_size=4, options=HFOptions(gen_accelerate=False),
                          accelerator=accelerator_for(model, only=("fused_ops",)))
    assert unswapped.generate_until(requests) == got and not calls
    assert HFBackend(model, tok, batch_size=4, options=HFOptions(accelerator="none")).generate_until(requests) == got
