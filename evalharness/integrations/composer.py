"""ICL evaluation during Composer training: the `ICLEvaluator` callback.

Needs Composer (`pip install 'evalharness[composer]'`, which pins mosaicml==0.32.1 and so torch<2.7.1).
The evaluation is `evalharness.evaluate` itself, so the numbers equal `evalharness run` on the same weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

try:
    from composer.core import Callback, Event, State, Time
    from composer.loggers import Logger
    from composer.models import HuggingFaceModel
    from composer.utils import create_interval_scheduler
except ImportError as exc:  # the core never imports this module; only users of the callback need Composer
    raise ImportError(
        "evalharness.integrations.composer needs Composer: pip install 'evalharness[composer]' "
        f"(mosaicml==0.32.1; it pins torch<2.7.1, so use a separate environment). Import failed with: {exc}"
    ) from exc

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..api import evaluate
from ..backends.hf.sharding import is_sharded
from ..data import resolve_data_dir
from ..distributed import collective, joined_context
from ..results import EvalResults
from ..tasks import Task, TaskRegistry
from .rng_state import preserved_rng_state

LOG_PREFIX = "icl"


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside Composer's wrappers: DDP's `.module`, then HuggingFaceModel's `.model`.

    A model Composer sharded with FSDP2 is returned as it is (sharded); FSDP1's wrappers are refused.
    """
    if isinstance(model, DistributedDataParallel):
        model = model.module
    if isinstance(model, HuggingFaceModel):
        model = model.model
    from torch.distributed.fsdp import FullyShardedDataParallel

    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        raise ValueError("ICLEvaluator evaluates models sharded with FSDP2, not FSDP1's FullyShardedDataParallel: "
                         "train with parallelism_config={'fsdp': FSDP2Config(...)} (composer.utils) or FSDP_VERSION=2")
    return model


def training_position(state: State) -> dict[str, Any]:
    """Where training is: the run's name and its epoch, batch, sample and token counts (as results.json's
    `model.composer`, which `composer:PATH.pt` checkpoints record too)."""
    stamp = state.timestamp
    return {"run_name": state.run_name, "epoch": int(stamp.epoch), "batch": int(stamp.batch),
            "sample": int(stamp.sample), "token": int(stamp.token)}


def run_folder_name(position: dict[str, Any]) -> str:
    """`ep<epoch>-ba<batch>`, as Composer names its checkpoints."""
    return f"ep{position['epoch']}-ba{position['batch']}"


def metrics_to_log(results: EvalResults, prefix: str = LOG_PREFIX) -> dict[str, float]:
    """`{prefix}/<task>/<metric>` for every metric and defined standard error (counts such as `n` are left out)."""
    return {
        f"{prefix}/{task}/{metric}": value
        for task, metrics in results.results.items()
        for metric, value in metrics.items()
        if isinstance(value, float)
    }


class ICLEvaluator(Callback):
    """Evaluate ICL tasks on the model being trained, every `interval` and at the end of training.

    Args:
        tasks: task names or suites, as `evalharness run --tasks` (a list or a comma-separated string).
        interval: a Composer time string or `Time` ("500ba", "1ep", "10000tok", ...); an int means epochs.
        limit, num_fewshot, batch_size, max_length, data_dir: as in `evalharness.evaluate`.
        tokenizer: defaults to the tokenizer of Composer's `HuggingFaceModel`.
        registry: the task registry (default: the shipped tasks and $EVALHARNESS_TASKS_PATH).
        task_paths: folders of your own task YAMLs, as `evaluate(task_paths=...)`.
        backend_options: HFOptions for the evaluation (evalharness.backends.hf).
        output_dir: when given, each evaluation is also written as a run folder `output_dir/ep<E>-ba<B>/`
            (results.json, samples_<task>.jsonl, report.html; on the first rank only), recording the training
            position under `model.composer`, so `evalharness report` draws curves and `evalharness compare` pairs them.

    Each evaluation runs the unwrapped transformers model (DDP `.module`, HuggingFaceModel `.model`) in eval
    mode under `torch.no_grad`, in the parameters' own dtype (no autocast), then puts every module back in the
    train/eval mode it had and restores the torch (CPU and CUDA), Python and NumPy random states, so the rest
    of training is bit-for-bit what it would be without the callback. Nothing process-wide changes (the CPU
    plugin's allocator setting stays off in a training job). Metrics are logged as `icl/<task>/<metric>` (and
    `<metric>_stderr`) through `logger.log_metrics`; the EvalResults of the latest evaluation are kept on
    `self.latest` (its training batch on `self.latest_batch`).

    Under DDP every rank evaluates every item (identical results). Under FSDP2 (a model Composer sharded with
    `fully_shard`) every rank must reach the evaluation: the batches are dealt out across the ranks, which run
    their forward passes in step (each gathers the shards), rank 0 scores, and every rank gets its results.
    """

    def __init__(
        self,
        tasks: Sequence[str] | str,
        interval: str | int | Time = "500ba",
        *,
        limit: int | None = None,
        num_fewshot: int | None = None,
        batch_size: int = 16,
        max_length: int | None = None,
        data_dir: str | Path | None = None,
        tokenizer: Any = None,
        registry: TaskRegistry | None = None,
        task_paths: Sequence[str | Path] = (),
        backend_options: Any = None,
        output_dir: str | Path | None = None,
    ) -> None:
        self.registry = registry or TaskRegistry(include_paths=task_paths)
        self.tasks = self.registry.resolve(tasks)
        self.data_dir = resolve_data_dir(data_dir)
        for name in self.tasks:  # unknown tasks and missing or malformed data fail now, not after hours of training
            Task(self.registry.get(name), self.data_dir)
        self.interval = interval
        self.limit = limit
        self.num_fewshot = num_fewshot
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenizer = tokenizer
        self.backend_options = backend_options
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.written: list[Path] = []  # the run folders written, in order
        self.latest: EvalResults | None = None
        self.latest_batch: int | None = None
        self._due = create_interval_scheduler(interval, include_end_of_training=True)

    def _tokenizer(self, state: State) -> Any:
        model = state.model.module if isinstance(state.model, DistributedDataParallel) else state.model
        tokenizer = self.tokenizer if self.tokenizer is not None else getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ValueError("ICLEvaluator needs a tokenizer: pass tokenizer=..., or build HuggingFaceModel with tokenizer=...")
        return tokenizer

    def run_event(self, event: Event, state: State, logger: Logger) -> None:
        if event == Event.INIT:
            self._tokenizer(state)
            return
        if event == Event.BEFORE_LOAD:  # the model is wrapped for distributed training by now: check its wrappers
            unwrap_model(state.model)
            return
        if state.get_elapsed_duration() is None or not self._due(state, event):
            return
        batch = int(state.timestamp.batch)
        if batch == self.latest_batch:  # the last interval and the end of training can fall on one batch
            return
        self.latest = self.evaluate_now(state)
        self.latest_batch = batch
        logger.log_metrics(metrics_to_log(self.latest))

    def evaluate_now(self, state: State) -> EvalResults:
        """Evaluate the model as it is now; training state (modes, RNGs, weights, gradients) is left untouched."""
        model = unwrap_model(state.model)
        modes = [(m, m.training) for m in model.modules()]
        position = training_position(state)
        info = self._model_info(model, position)
        first_rank = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
        folder = self.output_dir / run_folder_name(position) if self.output_dir is not None and first_rank else None
        started = time.perf_counter()
        try:
            with preserved_rng_state(), torch.no_grad():
                if is_sharded(model):
                    out = self._evaluate_sharded(model, self._tokenizer(state), folder, info)
                else:
                    out = evaluate(model, self._tokenizer(state), self.tasks, limit=self.limit,
                                   num_fewshot=self.num_fewshot, batch_size=self.batch_size, max_length=self.max_length,
                                   data_dir=self.data_dir, registry=self.registry, backend_options=self.backend_options,
                                   output_dir=folder, model_info=info)
        finally:
            for module, training in modes:
                module.train(training)
        out.eval_seconds = round(time.perf_counter() - started, 2)
        if folder is not None:
            self.written.append(folder)
        return out

    def _evaluate_sharded(self, model: torch.nn.Module, tokenizer: Any, folder: Path | None,
                          info: dict[str, Any]) -> EvalResults:
        """Every rank answers its share of the batches of the FSDP2-sharded `model`; rank 0's results, on every rank
        (rank 0 writes the run folder)."""
        from ..backends.distributed import DistributedBackend
        from ..backends.hf import HFBackend

        ctx = joined_context(str(next(model.parameters()).device))
        backend = HFBackend(model, tokenizer, batch_size=self.batch_size, max_length=self.max_length,
                            options=self.backend_options)
        if ctx.world_size > 1:
            backend = DistributedBackend(backend, ctx)
        out = evaluate(backend=backend, tasks=self.tasks, limit=self.limit, num_fewshot=self.num_fewshot,
                       data_dir=self.data_dir, registry=self.registry, output_dir=folder, model_info=info)
        if ctx.world_size == 1:
            return out
        shared = [out if ctx.is_main else None]
        with collective(ctx, "sharing the evaluation's results"):
            dist.broadcast_object_list(shared, src=0)
        return shared[0]

    @staticmethod
    def _model_info(model: torch.nn.Module, position: dict[str, Any]) -> dict[str, Any]:
        """What results.json records about the model: the training run's name, family, size and position."""
        return {"name": position["run_name"], "kind": "composer-callback",
                "model_type": getattr(getattr(model, "config", None), "model_type", None),
                "num_parameters": sum(p.numel() for p in model.parameters()), "composer": position}
