"""benchmarks/gpu_check.py where it can run without a GPU: the one line on a machine without one, the item-by-item
agreement and its verdicts, and the MPT attention check's comparisons (on the CPU)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
_spec = importlib.util.spec_from_file_location("gpu_check", _PATH)
assert _spec is not None and _spec.loader is not None
gpu_check = importlib.util.module_from_spec(_spec)
sys.modules["gpu_check"] = gpu_check  # dataclasses look their module up
_spec.loader.exec_module(gpu_check)


def test_without_a_gpu_it_says_so_in_one_line(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    script = _PATH.parents[1] / "scripts" / "gpu_check.sh"
    proc = subprocess.run([str(script), "--work-dir", str(tmp_path / "w")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()
    assert line.startswith("gpu_check: no NVIDIA GPU on this machine (torch ") and line.endswith("; nothing to check")
    assert not (tmp_path / "w").exists()


def _choice(doc: int, logprobs: list[float], tokens: int = 4) -> dict:
    best = max(range(len(logprobs)), key=logprobs.__getitem__)
    return {"doc_id": doc, "subset": None, "logprobs": logprobs, "num_tokens": [tokens] * len(logprobs),
            "is_greedy": [False] * len(logprobs), "predictions": {"acc": best}}


def test_agreement_counts_items_deltas_and_clear_flips():
    reference = [_choice(0, [-1.0, -5.0]), _choice(1, [-2.0, -2.1]), _choice(2, [-3.0, -9.0])]
    other = [_choice(0, [-1.2, -5.0]), _choice(1, [-2.2, -2.1]), _choice(2, [-9.5, -9.0])]
    got = gpu_check.compare(reference, other)
    assert (got.items, got.same, got.clear_flips) == (3, 1, 1)  # item 1 was a near-tie; item 2 led by 6 nats
    assert got.max_delta == pytest.approx(6.5)
    assert got.mean_delta_per_token == pytest.approx((0.2 + 0 + 0.2 + 0 + 6.5 + 0) / 4 / 6)
    assert gpu_check.compare(reference, reference).fraction == 1.0


def test_generation_items_agree_on_their_completions():
    a = [{"doc_id": 0, "subset": "x", "completions": [" Paris"], "num_tokens": [2]}]
    b = [{"doc_id": 0, "subset": "x", "completions": [" Rome"], "num_tokens": [2]}]
    differ = gpu_check.compare(a, b)
    assert (differ.same, differ.clear_flips) == (0, 0)  # a changed completion is not a choice that flipped
    assert gpu_check.compare(a, a).same == 1


def test_tokens_per_second_from_a_run_folder(tmp_path):
    import json

    class Words:  # one token per word
        def __call__(self, text: str):
            return type("Encoded", (), {"input_ids": text.split()})()

    (tmp_path / "samples_piqa.jsonl").write_text(json.dumps({"requests": [
        {"context": "a b c", "continuation": " d"}, {"context": "a b c", "continuation": " e f"}]}) + "\n")
    (tmp_path / "samples_gen.jsonl").write_text(json.dumps({"num_tokens": [6]}) + "\n")
    results = {"tasks": {"piqa": {"seconds": 0.5}, "gen": {"seconds": 2.0}},
               "distributed": {"peak_cuda_mb_per_rank": [100.0, 90.5]}}
    run = gpu_check.Run(tmp_path, 10.0, results)
    assert gpu_check.tokens_per_second(run, ["piqa"], Words()) == 9 / 0.5
    assert gpu_check.tokens_per_second(run, ["gen"], Words(), generated=True) == 3.0
    assert run.peak_gpu_mb == [100.0, 90.5]


def test_runs_of_other_items_are_refused():
    with pytest.raises(ValueError, match="different items"):
        gpu_check.compare([_choice(0, [-1.0, -2.0])], [_choice(1, [-1.0, -2.0])])


def test_verdicts_apply_the_thresholds():
    agreement = gpu_check.Agreement(items=200, same=197, max_delta=0.3, deltas_per_token=[0.02] * 10)
    assert gpu_check.agreement_verdict("x", agreement, min_fraction=0.99).passed is False  # 98.5%
    assert gpu_check.agreement_verdict("x", agreement, min_fraction=0.98).passed is True
    late = gpu_check.agreement_verdict("x", agreement, min_fraction=0.98, max_mean_delta=0.01)
    assert late.passed is False and "mean |dlogp| per token 0.02 > 0.01" in late.why
    assert late.line().startswith("FAIL  x ")
    assert gpu_check.Verdict("nccl-dp", None, why="needs 2 or more GPUs").line().startswith("SKIP  nccl-dp")


def test_mpt_attention_check_on_the_cpu(tiny_mpt_dir):
    """The same comparisons as on cuda:0: evalharness's SDPA forward against transformers' eager one."""
    verdict = gpu_check.check_mpt_attention(tiny_mpt_dir, device="cpu", batch=2, length=64)
    assert verdict.figures["fp32_max_dlogp"] < 1e-3
    assert verdict.passed, verdict.line()
