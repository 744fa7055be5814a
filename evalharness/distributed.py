"""Multi-process evaluation: the process group, splitting a backend's batches across ranks, gathering to rank 0.

Started by torchrun (or `evalharness run --nproc N`, see launch.py), every rank builds the same
requests and sends them through a DistributedBackend. The wrapped backend forms its batches exactly as in
one process; they are dealt out round-robin, longest first, one batch per rank per round, and each round's
results are gathered to rank 0, which reads and fills the request cache, scores, writes and prints.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import sys
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist

from .errors import EvalHarnessError
from .launch import under_torchrun
from .requests import GenerateRequest

FAIL_RANK_ENV = "EVALHARNESS_FAIL_RANK"  # test hook: this rank raises when it reaches its first request batch
HANG_RANK_ENV = "EVALHARNESS_HANG_RANK"  # test hook: this rank stops there without a word (the others time out)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run (world size 1: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    device: str | None = None
    backend: str | None = None  # nccl | gloo
    timeout_seconds: float = 1800.0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None, timeout_seconds: float) -> DistContext:
    """Join the process group when started by torchrun: NCCL on GPUs (one per local rank), gloo on CPU.

    Every collective times out after `timeout_seconds`, so a rank that stops answering ends the run with
    an error instead of a hang.
    """
    if not under_torchrun():
        return DistContext(device=device)
    from .models.loading import default_device

    device = device or default_device()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":  # one GPU per process
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_seconds),
                            device_id=torch.device(device) if backend == "nccl" else None)
    ctx = DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_WORLD_SIZE", "1")), device, backend,
                      timeout_seconds)
    if not ctx.is_main:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return ctx


class RankFailure(EvalHarnessError):
    """Another rank stopped, did not answer within the collective timeout, or holds different requests."""


@contextlib.contextmanager
def _collective(ctx: DistContext, what: str) -> Iterator[None]:
    """Turn a failed collective into one clear line: the cause is the other rank's error, shown above."""
    try:
        yield
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RankFailure(f"{what}: another rank stopped, or did not answer within {ctx.timeout_seconds:g} s "
                          f"(--dist-timeout); look for its error above [{first}]") from exc


def shutdown(ctx: DistContext) -> None:
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameter storage this process holds (its shards only, for FSDP-sharded parameters)."""
    total = 0
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        total += local.numel() * local.element_size()
    return total


def memory_report(ctx: DistContext, model: torch.nn.Module, fsdp: bool) -> dict[str, Any] | None:
    """Per-rank parameter bytes and peak memory, on rank 0 (a collective: every rank calls it)."""
    mine = {"param_bytes": parameter_bytes(model), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if ctx.device and ctx.device.startswith("cuda"):
        mine["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(ctx.device) / 2**20, 1)
    parts: list[Any] = [mine]
    if ctx.world_size > 1:
        parts = [None] * ctx.world_size if ctx.is_main else None  # type: ignore[assignment]
        with _collective(ctx, "gathering the memory report"):
            dist.gather_object(mine, parts, dst=0)
    if not ctx.is_main:
        return None
    report: dict[str, Any] = {"world_size": ctx.world_size, "backend": ctx.backend, "fsdp": fsdp}
    for key in mine:
        report[f"{key}_per_rank"] = [p[key] for p in parts]
    return report


@contextlib.contextmanager
def _root_gathered(model: Any) -> Iterator[None]:
    """Hold the FSDP root's own parameters (embeddings, final norm, head) gathered for one batch.

    The backend may run the model body and the head separately, outside the root's forward; the blocks
    gather and free their own shards in their forward hooks. Inference mode as the backend's forward passes:
    FSDP reuses the gathered tensors, first made there.
    """
    with torch.inference_mode():
        model.unshard()
    try:
        yield
    finally:
        with torch.inference_mode():
            model.reshard()


def _test_hooks(rank: int) -> None:
    if os.environ.get(FAIL_RANK_ENV) == str(rank):
        raise RuntimeError(f"rank {rank}: failure injected by {FAIL_RANK_ENV} (a test hook)")
    if os.environ.get(HANG_RANK_ENV) == str(rank):
        print(f"rank {rank}: stopping without a word ({HANG_RANK_ENV}, a test hook)", file=sys.stderr, flush=True)
        time.sleep(10**6)


def _padding(request: Any) -> Any:
    """A cheap request like `request`: generation stops after one token."""
    if isinstance(request, GenerateRequest):
        return replace(request, stop=(), max_new_tokens=1, temperature=0.0, num_samples=1)
    return request


def _digest(kind: str, requests: Sequence[Any]) -> str:
    h = hashlib.sha256(kind.encode())
    for r in requests:
        h.update(repr(r).encode())
    return h.hexdigest()


class DistributedBackend:
    """Splits a backend's batches across the ranks; same `loglikelihood`/`generate_until` as HFCausalLM.

    Every rank must call each method with the same requests, in the same order. Rank 0's `known` (its
    request cache) is broadcast; batches it fully answers are skipped everywhere. The remaining batches,
    formed exactly as in one process (so the numbers match it), go to ranks round-robin; after each round
    rank 0 gathers the round's results and passes them to `on_results` and `progress`. Rank 0 returns every
    result in the requests' order; other ranks return only their own (None elsewhere).

    With FSDP (`fsdp_model` given) every rank runs a forward in every round (a rank without a batch runs a
    one-row padding batch whose result is dropped), and generation keeps ranks stepping together until all
    have finished (transformers' synced generation), so the sharded parameters' collectives always pair up.
    """

    collective = True  # every rank must enter each call: a cache in front must not answer for rank 0 alone

    def __init__(self, backend: Any, ctx: DistContext, fsdp_model: torch.nn.Module | None = None) -> None:
        self.backend = backend
        self.ctx = ctx
        self.fsdp_model = fsdp_model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def loglikelihood(self, requests: Sequence[Any], progress: Callable[[int], None] | None = None,
                      on_results: Callable[[list[tuple[int, Any]]], None] | None = None,
                      known: Sequence[Any | None] | None = None) -> list[Any]:
        return self._run("loglikelihood", requests, progress, on_results, known)

    def generate_until(self, requests: Sequence[GenerateRequest], progress: Callable[[int], None] | None = None,
                       on_results: Callable[[list[tuple[int, Any]]], None] | None = None,
                       known: Sequence[Any | None] | None = None) -> list[Any]:
        return self._run("generate_until", requests, progress, on_results, known)

    def _run(self, kind: str, requests: Sequence[Any], progress: Callable[[int], None] | None,
             on_results: Callable[[list[tuple[int, Any]]], None] | None, known: Sequence[Any | None] | None) -> list[Any]:
        ctx = self.ctx
        _test_hooks(ctx.rank)
        known = self._agree(kind, requests, known)
        results: list[Any] = list(known) if known is not None else [None] * len(requests)
        plan = getattr(self.backend, f"{kind}_batches")(requests)
        todo = [b for b in plan if known is None or any(known[i] is None for i in b)]
        if progress is not None and len(todo) < len(plan):
            progress(len(requests) - sum(len(b) for b in todo))
        method = getattr(self.backend, kind)
        seen: list[int] = []
        for start in range(0, len(todo), ctx.world_size):
            mine: list[tuple[int, Any]] = []
            with _root_gathered(self.fsdp_model) if self.fsdp_model is not None else contextlib.nullcontext():
                if start + ctx.rank < len(todo):
                    batch = sorted(todo[start + ctx.rank])
                    mine = list(zip(batch, method([requests[i] for i in batch])))
                elif self.fsdp_model is not None:  # keeps the sharded parameters' collectives in step
                    method([_padding(requests[plan[-1][-1]])])  # a short request (the last batch's); result dropped
            parts: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
            with _collective(ctx, f"gathering {kind} results"):
                dist.gather_object(mine, parts, dst=0)
            if ctx.is_main:
                done = [pair for part in parts or [] for pair in part]
                seen += [i for i, _ in done]
                for i, res in done:
                    results[i] = res
                if on_results is not None:
                    on_results(done)
                if progress is not None:
                    progress(len(done))
            else:
                for i, res in mine:
                    results[i] = res
        if ctx.is_main and (sorted(seen) != sorted(i for b in todo for i in b) or any(r is None for r in results)):
            raise RuntimeError(f"distributed {kind}: the gathered results do not cover every request exactly once "
                               f"({len(seen)} gathered for {sum(len(b) for b in todo)} computed requests)")
        return results

    def _agree(self, kind: str, requests: Sequence[Any], known: Sequence[Any | None] | None) -> Sequence[Any | None] | None:
        """Broadcast rank 0's known results; every rank checks that it holds the same requests as rank 0."""
        digest = _digest(kind, requests)
        payload = [(kind, len(requests), digest, list(known) if known is not None else None) if self.ctx.is_main else None]
        with _collective(self.ctx, f"starting {kind}"):
            dist.broadcast_object_list(payload, src=0)
        main_kind, n, main_digest, main_known = payload[0]
        if (main_kind, n, main_digest) != (kind, len(requests), digest):
            raise RankFailure(
                f"rank {self.ctx.rank}: its {kind} requests ({len(requests)}) differ from rank 0's {main_kind} requests ({n}); "
                "every rank needs the same code, data and arguments"
            )
        return main_known
