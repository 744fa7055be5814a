"""The fused CPU kernels (evalharness/models/fused_ops.*): hand-computed values, eager PyTorch's results element
by element, the swap in and out of a model, and the backend's scores with and without them."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from evalharness.models.fused_ops import fusable_modules, fused_llama_ops, load_fused_ops
from evalharness.models.hf_backend import HFCausalLM
from evalharness.requests import LoglikelihoodRequest as R


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


def test_kernels_refuse_bad_operands(ops):
    with pytest.raises(RuntimeError, match="dtype"):
        ops.rms_norm(torch.ones(2, 4), torch.ones(4, dtype=torch.bfloat16), 1e-5)
    with pytest.raises(RuntimeError, match="contiguous"):
        ops.rms_norm(torch.ones(4, 4).t(), torch.ones(4), 1e-5)
    with pytest.raises(RuntimeError, match="B or 1"):
        ops.rope(torch.ones(2, 3, 1, 4), torch.ones(2, 5, 4), torch.ones(2, 5, 4))
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        ops.rms_norm(torch.ones(2, 4, dtype=torch.float64), torch.ones(4, dtype=torch.float64), 1e-5)


def _tiny_llama(dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
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


def test_swap_in_and_out(ops):
    model = _tiny_llama()
    kinds = [kind for _, kind in fusable_modules(model)]
    assert kinds.count("rms_norm") == 2 * 2 + 1 and kinds.count("attention") == 2  # two norms per layer + the final
    ids = torch.randint(0, 50432, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        eager = model.model(input_ids=ids).last_hidden_state
        with fused_llama_ops(model, ops) as swapped:
            assert swapped == 7
            assert isinstance(model.model.layers[0].self_attn.forward, functools.partial)
            assert all("forward" in m.__dict__ for m, _ in fusable_modules(model))
            fused = model.model(input_ids=ids).last_hidden_state
    assert not any("forward" in m.__dict__ for m, _ in fusable_modules(model))  # restored
    assert torch.allclose(fused, eager, atol=2e-5, rtol=1e-5)


def test_autograd_falls_back_to_eager(ops):
    model = _tiny_llama()
    ids = torch.randint(0, 50432, (2, 12), generator=torch.Generator().manual_seed(2))
    with fused_llama_ops(model, ops):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()  # the kernels have no backward: with grad on, the eager forwards ran
    assert model.model.norm.weight.grad is not None and model.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_backend_scores_the_same_with_and_without_kernels(neox_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(neox_tokenizer_dir)
    requests = [R("The capital of France is", " Paris"), R("The capital of France is", " Rome"),
                R("One plus one equals", " two, of course"), R("A", " b c d e f g")]
    # float32: the same to 1e-4; bfloat16: a norm output one unit in the last place away (2^-8 relative) may
    # propagate, so within 1%
    for dtype, rel, abs_ in ((torch.float32, 0, 1e-4), (torch.bfloat16, 1e-2, 1e-3)):
        model = _tiny_llama(dtype)
        fused = HFCausalLM(model, tok)
        assert fused.fused_ops
        eager = HFCausalLM(model, tok)
        eager.fused_ops = False
        for a, b in zip(fused.loglikelihood(requests), eager.loglikelihood(requests)):
            assert a.logprob == pytest.approx(b.logprob, rel=rel, abs=abs_)
            assert a.num_tokens == b.num_tokens


def test_other_families_are_not_swapped():
    from transformers import MptConfig, MptForCausalLM

    mpt = MptForCausalLM(MptConfig(d_model=32, n_heads=4, n_layers=1, vocab_size=100, max_seq_len=32))
    assert fusable_modules(mpt) == []
    assert not HFCausalLM(mpt, _Tok()).fused_ops


class _Tok:
    """Just enough of a tokenizer for HFCausalLM's constructor."""

    pad_token_id = 0
    eos_token_id = 0
    bos_token_id = None
    model_max_length = 32
