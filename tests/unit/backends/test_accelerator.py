"""How the HF backend finds its accelerator: the CPU plugin's guard, its reasons, and what results.json records."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from evalharness.backends.hf import HFOptions
from evalharness.backends.hf.backend import HFBackend
from evalharness.backends.hf_cpu import guard
from evalharness.errors import ConfigError
from support.tiny_models import tiny_llama


@pytest.fixture(scope="module")
def tok(neox_tokenizer_dir):
    return AutoTokenizer.from_pretrained(neox_tokenizer_dir)


def test_on_by_default_on_the_cpu_with_every_part_it_can_use(tok):
    backend = HFBackend(tiny_llama(), tok)
    status = backend.describe()["accelerator"]
    assert status["enabled"] and status["name"] == "cpu" and status["requested"] == "auto"
    assert status["parts"]["fused_ops"] is True and status["parts"]["packed_linear"] is True
    assert status["parts"]["last_layer"] is True
    assert status["parts"]["keep_freed_memory"] == "off (evalharness does not own the process)"
    assert "transformers" in status["versions"]


def test_an_untested_transformers_release_turns_it_off_with_the_reason(tok, monkeypatch):
    monkeypatch.setattr(guard, "TESTED_TRANSFORMERS", ("0.0.1",))
    backend = HFBackend(tiny_llama(), tok)
    status = backend.describe()["accelerator"]
    assert backend.accelerator is None and not status["enabled"]
    assert "is not a release it was tested with (0.0.1)" in status["reason"]
    with pytest.raises(ConfigError, match="accelerator 'cpu' does not apply: transformers .* not a release"):
        HFBackend(tiny_llama(), tok, options=HFOptions(accelerator="cpu"))


def test_switched_off_by_option_or_environment(tok, monkeypatch):
    assert HFBackend(tiny_llama(), tok, options=HFOptions(accelerator="none")).accelerator is None
    monkeypatch.setenv(guard.ENV, "0")
    status = HFBackend(tiny_llama(), tok).describe()["accelerator"]
    assert not status["enabled"] and f"{guard.ENV}=0" in status["reason"]


def test_an_mpt_model_gets_only_the_parts_that_fit_it(tiny_mpt_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32)
    parts = HFBackend(model, AutoTokenizer.from_pretrained(tiny_mpt_dir)).accelerator.parts
    assert parts["packed_linear"] is True  # plain nn.Linear layers: any model on the CPU
    assert parts["fused_ops"] == "off (no Llama modules it replaces)"
    assert parts["last_layer"] == "off (not a plain Llama under sdpa)"


def test_unknown_accelerator_names_the_installed_ones(tok):
    with pytest.raises(ConfigError, match="unknown accelerator 'gpu'; installed: cpu"):
        HFBackend(tiny_llama(), tok, options=HFOptions(accelerator="gpu"))
