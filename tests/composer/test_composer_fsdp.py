"""ICLEvaluator inside Composer training sharded with FSDP2: 2 CPU ranks (gloo), started with torchrun.

tests/support/composer_fsdp_driver.py trains a small random MPT with dropout for 5 batches with
`parallelism_config={"fsdp": FSDP2Config()}` (one FSDP unit per MPT block, as LLM Foundry's MPT), three times in
the same two processes: without the callback, with it every 2 batches (piqa, lambada_openai and a sampled
generation task, an odd number of batches each, so one rank also runs padding batches), and a control whose
callback moves the RNG on. The reference is `evaluate()` in this single process on the full weights gathered at
each evaluation's batch.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import evalharness
from evalharness.backends.hf import HFOptions
from evalharness.integrations.composer import metrics_to_log
from evalharness.tasks import TaskRegistry
from support.composer_fsdp_driver import EVAL, EVAL_BATCHES, TASKS
from support.composer_training import tiny_mpt

TESTS = Path(__file__).resolve().parents[1]
DRIVER = TESTS / "support" / "composer_fsdp_driver.py"
RUNS = ("without", "with", "control")


@pytest.fixture(scope="module")
def runs(icl_tasks_dir, data_dir, tmp_path_factory) -> dict[str, dict[str, Any]]:
    """`<run>-rank<r>` -> what the driver recorded."""
    out = tmp_path_factory.mktemp("fsdp-training")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(EVALHARNESS_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(DRIVER),
                           str(icl_tasks_dir), str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return {f"{run}-rank{rank}": torch.load(out / f"{run}-rank{rank}.pt", weights_only=False)
            for run in RUNS for rank in (0, 1)}


def test_composer_trains_the_model_sharded_with_fsdp2_on_cpu(runs):
    for name, run in runs.items():
        assert run["sharded"] == ["FSDPMptForCausalLM", "FSDPMptBlock", "FSDPMptBlock"], name
    assert sorted(runs["with-rank0"]["weights"]) == list(EVAL_BATCHES)
    assert runs["with-rank0"]["final"] and not runs["with-rank1"]["final"]  # gathered on rank 0 only
    assert runs["with-rank1"]["timeout"] == 300.0  # the process group's own: Composer's dist_timeout


def test_every_rank_logs_the_same_metrics_at_each_interval(runs):
    logged = runs["with-rank0"]["icl"]
    for key in ["icl/piqa/acc", "icl/piqa/acc_norm", "icl/lambada_openai/acc", "icl/lambada_openai/perplexity",
                "icl/jeopardy_sampled/exact_match"]:
        assert [b for b, _ in logged[key]] == list(EVAL_BATCHES), key
    assert runs["with-rank1"]["icl"] == logged
    perplexities = [v for _, v in logged["icl/lambada_openai/perplexity"]]
    assert len(set(perplexities)) == len(EVAL_BATCHES)  # each evaluation saw that moment's weights


def test_the_first_rank_writes_a_run_folder_per_evaluation(runs):
    assert runs["with-rank1"]["written"] == {}
    written = runs["with-rank0"]["written"]
    assert list(written) == [f"ep0-ba{b}" for b in EVAL_BATCHES]
    logged = runs["with-rank0"]["icl"]
    for batch in EVAL_BATCHES:
        out = written[f"ep0-ba{batch}"]
        assert out["model"]["kind"] == "composer-callback" and out["model"]["composer"]["batch"] == batch
        assert out["model"]["composer"]["sample"] == 4 * batch  # 2 sequences per rank and batch, 2 ranks
        assert out["results"]["piqa"]["acc"] == dict(logged["icl/piqa/acc"])[batch]


def test_logged_values_equal_evaluate_on_the_gathered_weights(runs, icl_tasks_dir, neox_tokenizer_dir, data_dir):
    """Bit for bit with the same kernels: the CPU plugin's packed weight copies, on by default for a model in one
    piece, are never made for a sharded one; with them the float32 rounding differs (relative 1e-6 here)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(neox_tokenizer_dir)
    registry = TaskRegistry(icl_tasks_dir)
    logged = runs["with-rank0"]["icl"]
    model = tiny_mpt()
    for batch in EVAL_BATCHES:
        model.load_state_dict(runs["with-rank0"]["weights"][batch])
        out = evalharness.evaluate(model, tokenizer, TASKS, data_dir=data_dir, registry=registry,
                                   backend_options=HFOptions(accelerator="none"), **EVAL)
        expected = metrics_to_log(out)
        assert len(expected) >= 10
        assert {k: dict(logged[k])[batch] for k in expected} == expected, batch
    packed = metrics_to_log(evalharness.evaluate(model, tokenizer, TASKS, data_dir=data_dir, registry=registry, **EVAL))
    assert packed.keys() == expected.keys()
    assert {k: dict(logged[k])[EVAL_BATCHES[-1]] for k in packed} == pytest.approx(packed, rel=1e-5, abs=0)
    assert {k: v for k, v in packed.items() if "/acc" in k} == {k: v for k, v in expected.items() if "/acc" in k}


def test_training_is_bit_for_bit_unaffected(runs):
    for rank in (0, 1):
        plain, evaluated, control = (runs[f"{run}-rank{rank}"] for run in RUNS)
        assert len(plain["losses"]) == 5 and evaluated["losses"] == plain["losses"]
        assert evaluated["training"] and plain["training"]  # every module back in training mode
        # the control: moving the RNG on at batch 2 (dropout draws from it) changes the losses after it
        assert control["losses"][:2] == plain["losses"][:2] and control["losses"][2:] != plain["losses"][2:]
    plain, evaluated = runs["without-rank0"], runs["with-rank0"]
    for batch in EVAL_BATCHES:
        assert all(torch.equal(evaluated["weights"][batch][k], w) for k, w in plain["weights"][batch].items()), batch
    assert plain["final"].keys() == evaluated["final"].keys()
    assert all(torch.equal(evaluated["final"][k], w) for k, w in plain["final"].items())
