"""The pure helpers of benchmarks/parity_llm_foundry.py: per-item comparison, sequence length, records from
evalharness samples, and the transformers-4 copy of a checkpoint folder. Hand-checkable values only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "parity_llm_foundry.py"


@pytest.fixture(scope="module")
def parity():
    spec = importlib.util.spec_from_file_location("parity_llm_foundry", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rec(texts, prediction, correct, logprobs=None):
    return {"texts": texts, "prediction": prediction, "correct": correct, "logprobs": logprobs}


def test_compare_task_counts_each_kind_of_difference(parity):
    ours = [rec(["a b"], 0, 1, [-1.0]),           # identical
            rec(["c d"], 1, 0, [-2.0]),           # other prediction, same score
            rec(["e f"], 0, 1, [-3.0]),           # other text
            rec(["g h"], 1, 1, [-4.0])]           # other score
    theirs = [rec(["a b"], 0, 1, [-1.0005]),
              rec(["c d"], 0, 0, [-2.0]),
              rec(["e  f"], 0, 1, [-3.5]),
              rec(["g h"], 1, 0, [-4.0])]
    s = parity.compare_task(ours, theirs, tol=1e-3)
    assert (s["items"], s["identical"], s["same_text"], s["same_prediction"], s["same_correct"]) == (4, 1, 3, 3, 3)
    assert s["differ"] == [1, 2, 3]
    assert (s["ours_correct"], s["theirs_correct"]) == (3, 2)
    assert s["max_abs_dlogprob"] == pytest.approx(0.5)
    assert s["requests_over_tol"] == 1          # 0.0005 is within 1e-3, 0.5 is not
    assert parity.agreement(s) == 25.0


def test_compare_task_generation_and_missing_items(parity):
    ours = [rec(["Q: 1+1\nA:"], "2", 1), rec(["Q: 2+2\nA:"], "4", 1)]
    theirs = [rec(["Q: 1+1\nA:"], "2", 1)]
    s = parity.compare_task(ours, theirs)
    assert (s["items"], s["missing"], s["identical"], s["max_abs_dlogprob"]) == (1, 1, 1, None)
    assert parity.agreement(parity.compare_task([], [])) == 100.0


def test_min_seq_len(parity):
    assert parity.min_seq_len([10, 31]) == 32
    assert parity.min_seq_len([32]) == 32
    assert parity.min_seq_len([33]) == 64
    assert parity.min_seq_len([300], extra=46) == 352   # 346 rounded up to a multiple of 32
    assert parity.min_seq_len([5], multiple=8, extra=4) == 16


def test_evalharness_records(parity, tmp_path):
    mc = {"doc_id": 1, "requests": [{"context": "Q", "continuation": " a"}, {"context": "Q", "continuation": " b"}],
          "logprobs": [-1.0, -2.0], "is_greedy": [False, False], "predictions": {"acc": 0, "acc_token": 1},
          "metrics": {"acc_token": 0.0, "acc": 1.0}}
    first = dict(mc, doc_id=0, predictions={"acc": 0, "acc_token": 0}, metrics={"acc_token": 1.0, "acc": 1.0})
    path = tmp_path / "samples_mc.jsonl"
    path.write_text(json.dumps(mc) + "\n" + json.dumps(first) + "\n", encoding="utf-8")
    out = parity.evalharness_records(path, "multiple_choice")
    assert [r["doc_id"] for r in out] == [0, 1]                       # file order, whatever the write order
    assert out[1] == {"doc_id": 1, "texts": ["Q a", "Q b"], "logprobs": [-1.0, -2.0], "prediction": 1, "correct": 0}

    lm = {"doc_id": 0, "requests": [{"context": "x", "continuation": " y"}], "logprobs": [-0.5],
          "is_greedy": [True], "metrics": {"acc": 1.0}}
    path.write_text(json.dumps(lm) + "\n", encoding="utf-8")
    assert parity.evalharness_records(path, "language_modeling")[0]["prediction"] is True

    gen = {"doc_id": 0, "requests": [{"prompt": "Q:", "stop": ["\n"]}], "completions": [" 4\nQ"], "answer": "4",
           "metrics": {"exact_match": 1.0}}
    path.write_text(json.dumps(gen) + "\n", encoding="utf-8")
    assert parity.evalharness_records(path, "generation_task_with_answers")[0] == {
        "doc_id": 0, "texts": ["Q:"], "prediction": " 4\nQ", "correct": 1, "answer": "4"}


def test_transformers4_folder(parity, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "llama", "dtype": "float32",
                                                 "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}))
    (src / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "TokenizersBackend", "eos_token": "<e>",
                                                           "pad_token": "<e>", "backend": "tokenizers"}))
    (src / "tokenizer.json").write_text("{}")
    (src / "model.safetensors").write_bytes(b"weights")
    parity.transformers4_folder(src, dst)
    config = json.loads((dst / "config.json").read_text())
    assert config["rope_theta"] == 100000.0 and config["rope_scaling"] is None and "rope_parameters" not in config
    assert config["torch_dtype"] == "float32"
    tok = json.loads((dst / "tokenizer_config.json").read_text())
    assert tok == {"eos_token": "<e>", "pad_token": "<e>", "clean_up_tokenization_spaces": False,
                   "tokenizer_class": "PreTrainedTokenizerFast"}
    assert (dst / "model.safetensors").is_symlink() and (dst / "model.safetensors").read_bytes() == b"weights"
    assert (dst / "tokenizer.json").read_text() == "{}"
    parity.transformers4_folder(src, dst)  # again over an existing copy
    scaled = {"model_type": "llama", "rope_parameters": {"rope_theta": 5e5, "rope_type": "llama3", "factor": 8.0}}
    (src / "config.json").write_text(json.dumps(scaled))
    config = json.loads((parity.transformers4_folder(src, dst) / "config.json").read_text())
    assert config["rope_theta"] == 5e5 and config["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0}
