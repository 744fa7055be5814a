"""ICLEvaluator inside Composer's Trainer, and `--model composer:PATH.pt` on checkpoints the Trainer saved.

Runs only in the Composer environment (.venv-composer, scripts/setup_composer.sh): a small random MPT with
dropout (so any stray draw from the RNGs would change the losses), trained on CPU for 7 batches of random
tokens, with the callback every 2 batches. Besides piqa and lambada_openai it evaluates a sampled generation
task, whose requests reseed torch's generator: the evaluation really does touch the RNG state.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from composer import Trainer
from composer.core import Callback, State
from composer.loggers import InMemoryLogger, Logger
from composer.models import HuggingFaceModel
from composer.utils import dist
from torch.utils.data import DataLoader

import evalharness
from evalharness.backends.hf_cpu import cpu_allocator
from evalharness.integrations.composer import ICLEvaluator, metrics_to_log, unwrap_model
from evalharness.results import EvalResults, TaskResult
from evalharness.tasks import TaskRegistry
from support.composer_training import RandomTokens, tiny_mpt

TASKS = "piqa,lambada_openai,jeopardy_sampled"
EVAL = {"limit": 4, "batch_size": 4}
BATCHES = 7  # one epoch of 14 sequences; the callback runs at batches 2, 4, 6 and at the end of training (7)


class Snapshots(Callback):
    """Copies of the weights at every batch end."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def batch_end(self, state: State, logger: Logger) -> None:
        self.weights[int(state.timestamp.batch)] = copy.deepcopy(state.model.model.state_dict())


class DrawsRandomNumbers(Callback):
    """A control: a callback that leaves the RNG moved on every 2 batches."""

    def batch_checkpoint(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) % 2 == 0:
            torch.rand(1)


@pytest.fixture(scope="module")
def registry(icl_tasks_dir) -> TaskRegistry:
    return TaskRegistry(icl_tasks_dir)


@pytest.fixture(scope="module")
def tokenizer(neox_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(neox_tokenizer_dir)


def train(tokenizer, callbacks: list[Callback], save_folder: Path | None = None) -> tuple[InMemoryLogger, HuggingFaceModel]:
    model = HuggingFaceModel(tiny_mpt(), tokenizer=tokenizer, use_logits=True)
    data = RandomTokens(2 * BATCHES)
    logger = InMemoryLogger()
    trainer = Trainer(
        model=model, train_dataloader=DataLoader(data, batch_size=2, sampler=dist.get_sampler(data, shuffle=False)),
        max_duration=f"{BATCHES}ba", optimizers=torch.optim.AdamW(model.parameters(), lr=1e-3), callbacks=callbacks,
        loggers=[logger], seed=17, device="cpu", progress_bar=False, log_to_console=False,
        save_folder=str(save_folder) if save_folder else None, save_interval="2ba",
    )
    trainer.fit()
    trainer.close()
    return logger, model


def logged(logger: InMemoryLogger, key: str) -> list[tuple[int, object]]:
    return [(int(ts.batch), value) for ts, value in logger.data.get(key, [])]


def losses(logger: InMemoryLogger) -> list[float]:
    return [float(v) for _, v in logged(logger, "loss/train/total")]


@pytest.fixture(scope="module")
def with_callback(tokenizer, registry, data_dir, tmp_path_factory):
    icl = ICLEvaluator(TASKS, "2ba", data_dir=data_dir, registry=registry, output_dir=tmp_path_factory.mktemp("evals"),
                       **EVAL)
    snapshots = Snapshots()
    folder = tmp_path_factory.mktemp("checkpoints")
    logger, model = train(tokenizer, [icl, snapshots], save_folder=folder)
    return icl, snapshots, logger, model, folder


@pytest.fixture(scope="module")
def without_callback(tokenizer):
    return train(tokenizer, [])


def test_metrics_logged_at_each_interval_and_at_fit_end(with_callback):
    icl, _, logger, _, _ = with_callback
    for key in ["icl/piqa/acc", "icl/piqa/acc_norm", "icl/piqa/acc_token", "icl/piqa/acc_stderr",
                "icl/lambada_openai/acc", "icl/lambada_openai/perplexity", "icl/jeopardy_sampled/exact_match"]:
        assert [b for b, _ in logged(logger, key)] == [2, 4, 6, 7], key
        assert all(isinstance(v, float) for _, v in logged(logger, key))
    assert not any(k.endswith("/n") for k in logger.data)  # counts are not metrics
    assert icl.latest_batch == 7 and icl.latest.results["piqa"]["n"] == 4
    # nothing process-wide changed: the CPU plugin's allocator setting is applied only when evalharness owns the process
    assert cpu_allocator._applied is None
    perplexities = [v for _, v in logged(logger, "icl/lambada_openai/perplexity")]
    assert len(set(perplexities)) == 4  # each evaluation saw that moment's weights


def test_logged_values_equal_evaluate_on_the_same_weights(with_callback, tokenizer, registry, data_dir):
    icl, snapshots, logger, _, _ = with_callback
    model = tiny_mpt()
    for batch in (2, 4, 6, 7):
        model.load_state_dict(snapshots.weights[batch])
        out = evalharness.evaluate(model, tokenizer, TASKS, data_dir=data_dir, registry=registry, **EVAL)
        expected = metrics_to_log(out)
        assert {k: dict(logged(logger, k))[batch] for k in expected} == expected, batch
    assert out.results == icl.latest.results and out.to_dict()["groups"] == icl.latest.to_dict()["groups"]


def test_each_evaluation_is_a_run_folder_recording_the_training_position(with_callback):
    icl, _, logger, _, _ = with_callback
    assert [p.name for p in icl.written] == ["ep0-ba2", "ep0-ba4", "ep0-ba6", "ep0-ba7"]
    for folder, batch in zip(icl.written, (2, 4, 6, 7)):
        out = json.loads((folder / "results.json").read_text())
        # 2 sequences of 32 tokens per batch
        assert out["model"]["composer"] == {"run_name": out["model"]["name"], "epoch": 0, "batch": batch,
                                            "sample": 2 * batch, "token": 64 * batch}
        assert out["model"]["kind"] == "composer-callback" and out["model"]["model_type"] == "mpt"
        assert sorted(p.name for p in folder.glob("samples_*.jsonl")) == [f"samples_{t}.jsonl" for t in sorted(TASKS.split(","))]
        expected = metrics_to_log(EvalResults({t: TaskResult(t, m) for t, m in out["results"].items()}, out["config"]))
        assert {k: dict(logged(logger, k))[batch] for k in expected} == expected


def test_training_is_bit_for_bit_unaffected(with_callback, without_callback, tokenizer, registry, data_dir):
    _, _, logger, model, _ = with_callback
    plain_logger, plain_model = without_callback
    assert len(losses(logger)) == BATCHES
    assert losses(logger) == losses(plain_logger)
    final, plain = model.model.state_dict(), plain_model.model.state_dict()
    assert all(torch.equal(final[k], plain[k]) for k in plain)
    assert model.model.training and all(m.training for m in model.model.modules())
    # the control: a callback that moves the RNG on (dropout draws from it) changes the curve, and the
    # callback at "1ep" runs once when the epoch's end and the end of training fall on the same batch
    icl = ICLEvaluator(TASKS, "1ep", data_dir=data_dir, registry=registry, **EVAL)
    control, _ = train(tokenizer, [DrawsRandomNumbers(), icl])
    assert losses(control)[:2] == losses(plain_logger)[:2] and losses(control)[2:] != losses(plain_logger)[2:]
    assert [b for b, _ in logged(control, "icl/piqa/acc")] == [7]


def test_cli_evaluates_a_trainer_checkpoint_without_composer(with_callback, data_dir, tmp_path):
    _, _, logger, _, folder = with_callback
    assert sorted(p.name for p in folder.glob("ep*.pt")) == [f"ep0-ba{b}-rank0.pt" for b in (2, 4, 6, 7)]
    block = "import sys; sys.modules['composer'] = None; from evalharness.cli import main; sys.exit(main())"
    env = {**os.environ, "EVALHARNESS_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", block, "run", "--model", f"composer:{folder / 'ep0-ba4-rank0.pt'}", "--tasks", "piqa,lambada_openai",
         "--limit", "4", "--batch-size", "4", "--dtype", "float32", "--device", "cpu", "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "out" / "results.json").read_text())
    assert out["model"]["kind"] == "composer"
    assert {k: out["model"]["composer"][k] for k in ("epoch", "batch", "sample", "token")} == {
        "epoch": 0, "batch": 4, "sample": 8, "token": 256}
    expected = metrics_to_log(EvalResults({t: TaskResult(t, m) for t, m in out["results"].items()}, out["config"]))
    assert len(expected) >= 8
    assert {k: dict(logged(logger, k))[4] for k in expected} == expected


def test_mistakes_fail_before_training(tmp_path, data_dir):
    from evalharness.errors import ConfigError, DataFileNotFound

    with pytest.raises(ConfigError, match="unknown task 'piqa2'"):
        ICLEvaluator("piqa2", "2ba", data_dir=data_dir)
    with pytest.raises(DataFileNotFound, match="llm-foundry/piqa.jsonl"):
        ICLEvaluator("piqa", "2ba", data_dir=tmp_path)
    model = HuggingFaceModel(tiny_mpt(), use_logits=True)  # no tokenizer anywhere
    data = RandomTokens(2 * BATCHES)
    with pytest.raises(ValueError, match="ICLEvaluator needs a tokenizer"):
        Trainer(model=model, train_dataloader=DataLoader(data, batch_size=2), max_duration="1ba", device="cpu",
                optimizers=torch.optim.SGD(model.parameters(), lr=0.1),
                callbacks=[ICLEvaluator("piqa", "2ba", data_dir=data_dir)], progress_bar=False, log_to_console=False)


def test_fsdp1_wrappers_are_refused():
    """FSDP1 needs an accelerator in torch 2.7 (and Composer's FSDP1 asks for CUDA), so the wrapper is a bare
    instance here: a model holding one is refused, naming FSDP2, before any evaluation."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = tiny_mpt()
    wrapper = FullyShardedDataParallel.__new__(FullyShardedDataParallel)
    torch.nn.Module.__init__(wrapper)
    model.transformer.blocks[0] = wrapper
    with pytest.raises(ValueError, match=r"FSDP2, not FSDP1.*FSDP2Config"):
        unwrap_model(HuggingFaceModel(model, use_logits=True))
    assert unwrap_model(HuggingFaceModel(tiny_mpt(), use_logits=True)).__class__.__name__ == "MptForCausalLM"
