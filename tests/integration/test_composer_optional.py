"""Composer stays optional: the core never imports it, the callback module says how to install it, and
`--model composer:PATH.pt` reads a checkpoint in Composer's layout without Composer. (The callback itself and
checkpoints written by Composer's Trainer are tested in tests/composer, in the second environment.)
"""

from __future__ import annotations

import datetime
import fractions
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from evalharness.errors import ModelLoadError
from evalharness.integrations.rng_state import preserved_rng_state
from evalharness.models.loading import load_model, resolve_source


@pytest.fixture
def no_composer(monkeypatch):
    """`import composer` fails, whether or not it is installed here."""
    monkeypatch.setitem(sys.modules, "composer", None)
    monkeypatch.delitem(sys.modules, "evalharness.integrations.composer", raising=False)


def test_core_does_not_import_composer():
    code = ("import sys, evalharness, evalharness.api, evalharness.cli, evalharness.integrations, "
            "evalharness.integrations.rng_state, evalharness.models.loading, evalharness.models.composer_checkpoint; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'composer'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_callback_module_without_composer_says_how_to_install(no_composer):
    with pytest.raises(ImportError) as err:
        import evalharness.integrations.composer  # noqa: F401
    assert "pip install 'evalharness[composer]'" in str(err.value)


def test_preserved_rng_state_restores_every_generator():
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    expected = (random.random(), np.random.rand(), torch.rand(2))
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    with preserved_rng_state():
        random.random(), np.random.rand(5), torch.rand(7)
        torch.manual_seed(99)  # evaluation code may even reseed
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(2), expected[2])
    with pytest.raises(ValueError), preserved_rng_state():  # also when the block fails
        torch.rand(3)
        raise ValueError
    assert not torch.equal(torch.rand(2), expected[2])  # the generators moved on from where they were


# ---- --model composer:PATH.pt ----------------------------------------------------------------------------

def _composer_layout(model, tokenizer_dir, **extra_state) -> dict:
    """A checkpoint laid out as Composer's Trainer saves a HuggingFaceModel (see tests/composer for the real one)."""
    tokenizer = {p.name: {"file_extension": ".json", "content": json.loads(p.read_text())}
                 for p in tokenizer_dir.glob("tokenizer*.json")}
    state = {
        "model": {f"model.{k}": v for k, v in model.state_dict().items()},
        "optimizers": {"AdamW": {"state": {}}},
        "timestamp": {"Timestamp": {"epoch": 0, "batch": 4, "total_wct": datetime.timedelta(seconds=1.5)}},
        "run_name": "tiny-run",
        "integrations": {"huggingface": {"model": {"config": {"file_extension": ".json", "content": model.config.to_dict(),
                                                              "class": "transformers.models.mpt.modeling_mpt.MptForCausalLM"}},
                                         "tokenizer": tokenizer}},
        "metadata": {"torch_version": torch.__version__},
        **extra_state,
    }
    return {"state": state, "rng": [{"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}]}


@pytest.fixture(scope="module")
def tiny_model(tiny_mpt_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32)


def test_composer_checkpoint_loads_without_composer(no_composer, tmp_path, tiny_model, tiny_mpt_dir):
    path = tmp_path / "ep0-ba4-rank0.pt"
    torch.save(_composer_layout(tiny_model, tiny_mpt_dir), path)
    loaded = load_model(f"composer:{path}", dtype="float32", device="cpu")
    assert type(loaded.model).__name__ == "MptForCausalLM" and not loaded.model.training
    reference = tiny_model.state_dict()
    assert loaded.model.state_dict().keys() == reference.keys()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.model.state_dict().items())
    assert len(loaded.tokenizer) == 50277 and loaded.tokenizer("Hello world")["input_ids"] == [12092, 1533]
    assert loaded.info["kind"] == "composer" and loaded.info["composer"] == {"run_name": "tiny-run", "epoch": 0, "batch": 4,
                                                                         "sample": None, "token": None}
    assert load_model(f"composer:{path}", dtype="bfloat16", device="cpu", max_seq_len=512).model.config.max_seq_len == 512


def test_composer_checkpoint_errors(tmp_path, tiny_model, tiny_mpt_dir):
    with pytest.raises(ModelLoadError, match="not found"):
        resolve_source(f"composer:{tmp_path / 'missing.pt'}")
    with pytest.raises(ModelLoadError, match="only single-file Composer checkpoints"):
        resolve_source(f"composer:{tmp_path}")
    plain = tmp_path / "plain.pt"
    torch.save(tiny_model.state_dict(), plain)
    with pytest.raises(ModelLoadError, match="is not a Composer checkpoint"):
        load_model(f"composer:{plain}", dtype="float32", device="cpu")
    ckpt = _composer_layout(tiny_model, tiny_mpt_dir)
    del ckpt["state"]["integrations"]
    torch.save(ckpt, tmp_path / "no_hf.pt")
    with pytest.raises(ModelLoadError, match="holds no Hugging Face config"):
        load_model(f"composer:{tmp_path / 'no_hf.pt'}", dtype="float32", device="cpu")
    ckpt = _composer_layout(tiny_model, tiny_mpt_dir)
    ckpt["state"]["model"].pop("model.transformer.norm_f.weight")
    torch.save(ckpt, tmp_path / "missing_weight.pt")
    with pytest.raises(ModelLoadError, match="do not fit.*norm_f"):
        load_model(f"composer:{tmp_path / 'missing_weight.pt'}", dtype="float32", device="cpu")


def test_other_pickled_objects_need_trust(tmp_path, tiny_model, tiny_mpt_dir):
    path = tmp_path / "odd.pt"
    torch.save(_composer_layout(tiny_model, tiny_mpt_dir, callbacks={"Mine": {"ratio": fractions.Fraction(1, 3)}}), path)
    with pytest.raises(ModelLoadError, match=r"not loaded by default \(fractions.Fraction\).*--trust-remote-code"):
        load_model(f"composer:{path}", dtype="float32", device="cpu")
    loaded = load_model(f"composer:{path}", dtype="float32", device="cpu", trust_remote_code=True)
    assert torch.equal(loaded.model.transformer.wte.weight, tiny_model.transformer.wte.weight)
