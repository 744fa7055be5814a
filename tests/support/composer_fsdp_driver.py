"""Composer trains a small MPT sharded with FSDP2 on 2 CPU ranks (gloo), once without and once with ICLEvaluator.

Usage: python -m torch.distributed.run --standalone --nproc-per-node 2 tests/support/composer_fsdp_driver.py \
    TASKS_DIR OUT_DIR
(tests/composer/test_composer_fsdp.py starts it; tests/ must be on PYTHONPATH). The runs happen in the same
processes one after the other, with the same seeds: without the callback, with it, and a control whose callback
moves the RNG on. Each writes `OUT_DIR/<run>-rank<r>.pt`: the training losses, the metrics this rank's logger
received, whether every module is back in training mode, the FSDP units, and on rank 0 the full weights gathered
after each evaluation's batch and at the end. The callback writes its run folders (`output_dir=`) to
`OUT_DIR/evals/`; each rank records the folders it wrote, with their results.json.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from composer import Trainer
from composer.core import Callback, State
from composer.loggers import InMemoryLogger, Logger
from composer.models import HuggingFaceModel
from composer.utils import FSDP2Config, dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from evalharness.distributed import joined_context
from evalharness.integrations.composer import ICLEvaluator
from evalharness.tasks import TaskRegistry
from support.composer_training import RandomTokens, tiny_mpt
from support.paths import SHARED

TASKS = "piqa,lambada_openai,jeopardy_sampled"
EVAL = {"limit": 5, "batch_size": 2}  # an odd number of batches: a rank runs a padding batch (lockstep)
BATCHES = 5  # the callback runs at batches 2 and 4 and at the end of training (5)
EVAL_BATCHES = (2, 4, 5)
PER_RANK_BATCH = 2


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The sharded model's full state dict on rank 0 (empty elsewhere); a collective: every rank calls it."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


class DrawsRandomNumbers(Callback):
    """A control: a callback that leaves the RNG moved on at batch 2."""

    def batch_checkpoint(self, state: State, logger: Logger) -> None:
        if int(state.timestamp.batch) == 2:
            torch.rand(1)


class GatheredWeights(Callback):
    """The full weights after each evaluation's batch (on rank 0)."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def batch_end(self, state: State, logger: Logger) -> None:
        batch = int(state.timestamp.batch)
        if batch in EVAL_BATCHES:
            self.weights[batch] = full_weights(state.model.model)


def train(tokenizer: Any, callbacks: list[Callback]) -> tuple[InMemoryLogger, HuggingFaceModel]:
    from transformers.models.mpt.modeling_mpt import MptBlock

    hf_model = tiny_mpt()
    hf_model.fsdp_wrap_fn = lambda module: isinstance(module, MptBlock)  # as LLM Foundry's MPT: one FSDP unit per block
    model = HuggingFaceModel(hf_model, tokenizer=tokenizer, use_logits=True)
    data = RandomTokens(dist.get_world_size() * PER_RANK_BATCH * BATCHES)
    logger = InMemoryLogger()
    trainer = Trainer(
        model=model, train_dataloader=DataLoader(data, batch_size=PER_RANK_BATCH, sampler=dist.get_sampler(data, shuffle=False)),
        max_duration=f"{BATCHES}ba", optimizers=torch.optim.AdamW(model.parameters(), lr=1e-3), callbacks=callbacks,
        loggers=[logger], seed=17, device="cpu", progress_bar=False, log_to_console=False,
        parallelism_config={"fsdp": FSDP2Config()},
    )
    trainer.fit()
    trainer.close()
    return logger, model


def record(logger: InMemoryLogger, model: HuggingFaceModel, weights: GatheredWeights,
           written: list[Path]) -> dict[str, Any]:
    """What the test compares; `weights` and `final` are empty dicts on ranks other than 0."""
    sharded = [type(m).__name__ for m in model.model.modules() if type(m).__name__.startswith("FSDP")]
    return {
        "losses": [float(v) for _, v in logger.data["loss/train/total"]],
        "icl": {key: [(int(ts.batch), value) for ts, value in values]
                for key, values in logger.data.items() if key.startswith("icl/")},
        "training": all(m.training for m in model.modules()),
        "sharded": sharded,
        "timeout": joined_context("cpu").timeout_seconds,  # what evalharness's errors would report
        "weights": weights.weights,
        "final": full_weights(model.model),
        "written": {p.name: json.loads((p / "results.json").read_text()) for p in written},
    }


def main(tasks_dir: str, out_dir: str) -> int:
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(SHARED / "tokenizers" / "gpt-neox-20b")
    rank = int(os.environ["RANK"])
    for run in ("without", "with", "control"):
        weights = GatheredWeights()
        callbacks: list[Callback] = [weights]
        icl = None
        if run == "with":
            icl = ICLEvaluator(TASKS, "2ba", registry=TaskRegistry(Path(tasks_dir)), output_dir=Path(out_dir) / "evals",
                               **EVAL)
            callbacks.append(icl)
        if run == "control":
            callbacks.append(DrawsRandomNumbers())
        logger, model = train(tokenizer, callbacks)
        written = icl.written if icl is not None else []
        torch.save(record(logger, model, weights, written), Path(out_dir) / f"{run}-rank{rank}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
