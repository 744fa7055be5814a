"""Linear layers on oneDNN-packed weights (evalharness/models/packed_linear.py): the same products as F.linear,
packed once and again after a weight changes, swapped in and out, and the backend's scores with and without."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from evalharness.backends.hf.backend import HFBackend
from evalharness.backends.hf.options import HFOptions
from evalharness.backends.hf_cpu import accelerator_for, packed_linear
from evalharness.backends.hf_cpu.packed_linear import PackedWeights, body_linears, fits_in_memory, packed_linears
from evalharness.requests import LoglikelihoodRequest as R


@pytest.fixture(autouse=True)
def _onednn():
    assert packed_linear.available(), "the pinned torch has oneDNN: the packed path must run here"


def _linear(k: int, n: int, dtype: torch.dtype, bias: bool) -> torch.nn.Linear:
    torch.manual_seed(k * n)
    return torch.nn.Linear(k, n, bias=bias).to(dtype)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(7, 64), (3, 5, 64), (1, 64)])
def test_same_products_as_f_linear(shape, bias):
    """bfloat16: bit for bit (both run oneDNN; packing only moves the weight's re-layout out of the call); float32:
    oneDNN instead of MKL, equal up to the order of the float32 sums."""
    for dtype in (torch.bfloat16, torch.float32):
        layer = _linear(64, 48, dtype, bias)
        x = torch.randn(*shape).to(dtype)
        cache = PackedWeights()
        with torch.inference_mode(), _swapped(layer, cache):
            got = layer(x)
        want = F.linear(x, layer.weight, layer.bias)
        assert got.shape == want.shape and got.dtype == dtype
        if dtype == torch.bfloat16:
            assert torch.equal(got, want)
        else:
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


class _Wrapper(torch.nn.Module):
    """A minimal model: body `model` holding the layer, no LM head."""

    base_model_prefix = "model"

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.model = torch.nn.Sequential(layer)


def _swapped(layer: torch.nn.Linear, cache: PackedWeights):
    return packed_linears(_Wrapper(layer), cache)


def test_packed_once_and_again_when_the_weight_changes():
    layer = _linear(32, 16, torch.bfloat16, False)
    cache = PackedWeights()
    first = cache.get(layer)
    assert cache.get(layer) is first  # no new copy for the next call
    with torch.no_grad():
        layer.weight.add_(1.0)  # an in-place step (its version counter moves)
    second = cache.get(layer)
    assert second is not first
    x = torch.randn(4, 32).bfloat16()
    with torch.inference_mode(), _swapped(layer, cache):
        assert torch.equal(layer(x), F.linear(x, layer.weight))  # the stepped weight, not the old copy
    layer.weight = torch.nn.Parameter(torch.zeros(16, 32, dtype=torch.bfloat16))  # a new tensor
    assert cache.get(layer) is not second
    with torch.inference_mode(), _swapped(layer, cache):
        assert torch.count_nonzero(layer(x)) == 0
    assert len(cache) == 1


def tiny_llama(dtype: torch.dtype) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=50432, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval().to(dtype)


def test_swap_covers_body_and_head_and_is_undone():
    model = tiny_llama(torch.float32)
    found = body_linears(model)
    assert len(found) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer, and the LM head
    assert model.lm_head in found
    with packed_linears(model, PackedWeights()) as swapped:
        assert swapped == 15 and all("forward" in m.__dict__ for m in found)
    assert not any("forward" in m.__dict__ for m in found)


def test_autograd_and_other_dtypes_fall_back_to_f_linear():
    layer = _linear(16, 8, torch.float32, True)
    with _swapped(layer, PackedWeights()):
        x = torch.randn(3, 16, requires_grad=True)
        layer(x).sum().backward()  # the packed op has no backward: the eager linear ran
        assert x.grad is not None and layer.weight.grad is not None
        with torch.inference_mode():
            y = torch.randn(3, 16, dtype=torch.float64)
            with pytest.raises(RuntimeError):  # F.linear's own error for a dtype mismatch, not the packed op's
                layer(y)


def test_environment_switch(monkeypatch, neox_tokenizer_dir):
    monkeypatch.setenv("EVALHARNESS_PACKED_LINEAR", "0")
    assert not packed_linear.available()
    backend = HFBackend(tiny_llama(torch.float32), AutoTokenizer.from_pretrained(neox_tokenizer_dir))
    assert backend.accelerator.parts["packed_linear"] != True  # noqa: E712 (a reason string when off)
    monkeypatch.setenv("EVALHARNESS_PACKED_LINEAR", "1")
    assert packed_linear.available()


def test_memory_rule():
    layers = [_linear(64, 64, torch.float32, False)]
    assert not fits_in_memory(layers, share=0.0)
    assert fits_in_memory(layers, share=1.0)


def test_backend_scores_the_same_with_and_without(neox_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(neox_tokenizer_dir)
    requests = [R("The capital of France is", " Paris"), R("The capital of France is", " Rome"),
                R("One plus one equals", " two, of course"), R("A", " b c d e f g")]
    for dtype in (torch.bfloat16, torch.float32):
        model = tiny_llama(dtype)
        packed = HFBackend(model, tok, accelerator=accelerator_for(model, only=("packed_linear",)))
        assert packed.accelerator.parts["packed_linear"] is True
        plain = HFBackend(model, tok, options=HFOptions(accelerator="none"))
        got, want = packed.loglikelihood(requests), plain.loglikelihood(requests)
        assert len(packed.accelerator._packed) == 15
        for a, b in zip(got, want):
            if dtype == torch.bfloat16:
                assert a.logprob == b.logprob
            else:
                assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
            assert a.is_greedy == b.is_greedy and a.num_tokens == b.num_tokens
