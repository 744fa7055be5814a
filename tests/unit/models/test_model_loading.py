"""--model resolution and loading: presets, folders, GGUF files, the embedded default, offline hub ids."""

from __future__ import annotations

import json

import pytest
import torch

from evalharness.backends.hf.backend import HFBackend
from evalharness.errors import ModelLoadError
from evalharness.models.embedded import gguf_path
from evalharness.models.loading import default_dtype, load_model, resolve_source
from evalharness.models.presets import PRESETS


def test_presets_map_to_hub_ids_and_mpt_uses_neox_tokenizer():
    for name in ["mpt-7b", "mpt-7b-instruct", "mpt-7b-8k", "mpt-30b", "mpt-30b-instruct"]:
        src = resolve_source(name)
        assert src.kind == "preset" and src.weights == f"mosaicml/{name}"
        assert src.tokenizer == "EleutherAI/gpt-neox-20b"
    for name in ["mpt-7b-chat", "mpt-30b-chat"]:  # their own tokenizer: GPT-NeoX's plus the ChatML tokens
        src = resolve_source(name)
        assert src.kind == "preset" and src.weights == src.tokenizer == f"mosaicml/{name}"
        assert PRESETS[name].chat_template == "mpt-chat"
    assert PRESETS["mpt-7b-instruct"].chat_template == PRESETS["mpt-30b-instruct"].chat_template == "mpt-instruct"
    assert resolve_source("llama-7b").weights == PRESETS["llama-7b"].hub_id
    assert resolve_source("falcon-40b").weights == "tiiuae/falcon-40b"
    assert resolve_source("falcon-7b").tokenizer == "tiiuae/falcon-7b"


def test_mistyped_preset_suggests_the_right_one():
    with pytest.raises(ModelLoadError, match="did you mean 'mpt-7b'"):
        resolve_source("mpt-7")
    assert resolve_source("gpt2").kind == "hub"  # a real hub id without an organisation


def test_source_kinds(tmp_path, tiny_mpt_dir):
    assert resolve_source("smollm2-135m").kind == "embedded"
    assert resolve_source(str(tiny_mpt_dir)).kind == "folder"
    assert resolve_source("someorg/some-model").kind == "hub"
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_source(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_source(str(tmp_path / "no" / "such" / "folder"))


@pytest.mark.parametrize("name", ["mpt-7b", "someorg/some-model"])
def test_offline_hub_model_gives_clear_message(monkeypatch, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_model(name, dtype="float32", device="cpu")
    msg = str(err.value)
    assert "offline" in msg and "--model DIR" in msg and "huggingface-cli download" in msg


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mpt"}))
    with pytest.raises(ModelLoadError, match="holds no weights"):
        load_model(str(tmp_path), dtype="float32", device="cpu")


def test_tokenizer_larger_than_vocabulary_is_refused(tmp_path, neox_tokenizer_dir):
    from transformers import AutoTokenizer, MptConfig, MptForCausalLM

    MptForCausalLM(MptConfig(d_model=32, n_heads=2, n_layers=1, vocab_size=1000)).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(neox_tokenizer_dir).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="do not belong together"):
        load_model(str(tmp_path), dtype="float32", device="cpu")


def test_local_mpt_folder_with_dtype_and_max_seq_len(tiny_mpt_dir):
    loaded = load_model(str(tiny_mpt_dir), dtype="bfloat16", device="cpu", max_seq_len=512)
    assert loaded.model.dtype == torch.bfloat16
    assert loaded.model.config.max_seq_len == 512  # ALiBi: the longer length is usable as is
    assert HFBackend(loaded.model, loaded.tokenizer).max_length == 512
    assert loaded.info["model_type"] == "mpt" and len(loaded.info["fingerprint"]) == 16
    default = load_model(str(tiny_mpt_dir), dtype="float32", device="cpu")
    assert default.model.config.max_seq_len == 256


def test_default_dtype_follows_hardware():
    flags = open("/proc/cpuinfo").read()
    fast_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    assert default_dtype("cpu") == ("bfloat16" if fast_bf16 else "float32")


@pytest.mark.slow
def test_embedded_default_and_its_gguf_file_load_the_same_cached_checkpoint():
    a = load_model("smollm2-135m", dtype="float32", device="cpu")
    b = load_model(str(gguf_path()), dtype="float32", device="cpu")
    assert a.source.weights == b.source.weights  # converted once, cached under the user cache directory
    assert a.info["model_type"] == "llama" and a.info["num_parameters"] > 100_000_000
    ids = torch.tensor([a.tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.equal(a.model(ids).logits, b.model(ids).logits)


def test_unreachable_hub_fails_fast_with_clear_message(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(ModelLoadError, match="--model DIR"):
        load_model("mpt-30b", dtype="float32", device="cpu")
