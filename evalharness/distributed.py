"""Multi-process runs: joining the process group, collectives that fail with one clear line, the memory report.

Started by torchrun (or `evalharness run --nproc N`, see launch.py), every rank runs the same evaluation loop;
a DistributedBackend (evalharness.backends.distributed) deals the batches out across the ranks.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist

from .errors import EvalHarnessError
from .launch import under_torchrun


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
    from .lifetime import die_with_parent
    from .models.loading import default_device

    die_with_parent()  # torchrun puts workers in their own sessions: without this, killing it leaves them running

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


def joined_context(device: str | None) -> DistContext:
    """This process's place in a process group someone else started (a training job), or a single-process
    context when there is none; the timeout is the group's own (what errors report)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return DistContext(device=device)
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_WORLD_SIZE", "1")), device,
                       dist.get_backend(), group_timeout(device))


def group_timeout(device: str | None) -> float:
    """The default process group's collective timeout in seconds (torch's default if it cannot be read)."""
    try:
        backend = dist.distributed_c10d._get_default_group()._get_backend(torch.device(device or "cpu"))
        return float(backend.options._timeout.total_seconds())
    except (AttributeError, RuntimeError):  # private API: another torch release, or a backend without options
        return dist.distributed_c10d.default_pg_timeout.total_seconds()


class RankFailure(EvalHarnessError):
    """Another rank stopped, did not answer within the collective timeout, or holds different requests."""


STOP_GRACE_SECONDS = 2.0  # a rank whose collective fails waits this long for a stop signal of its own


@contextlib.contextmanager
def collective(ctx: DistContext, what: str) -> Iterator[None]:
    """Turn a failed collective into one clear line: the cause is the other rank's error, shown above.

    When the whole run is being stopped (Ctrl-C, SIGTERM to every machine, Slurm's scancel), another rank may stop
    a moment before this one's own signal arrives: the short wait lets that signal end this rank as interrupted
    rather than as failed."""
    try:
        yield
    except RuntimeError as exc:
        time.sleep(STOP_GRACE_SECONDS)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RankFailure(f"{what}: another rank stopped, or did not answer within {ctx.timeout_seconds:g} s "
                          f"(--dist-timeout); look for its error above [{first}]") from exc


def shutdown(ctx: DistContext) -> None:
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def memory_report(ctx: DistContext, usage: dict[str, Any], fsdp: bool) -> dict[str, Any] | None:
    """Each process's resource usage (its backend's `resource_usage()`) and peak memory, gathered on the main
    process (a collective: every process calls it); None elsewhere."""
    mine = {**usage, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    parts: list[Any] = [mine]
    if ctx.world_size > 1:
        parts = [None] * ctx.world_size if ctx.is_main else None  # type: ignore[assignment]
        with collective(ctx, "gathering the memory report"):
            dist.gather_object(mine, parts, dst=0)
    if not ctx.is_main:
        return None
    report: dict[str, Any] = {"world_size": ctx.world_size, "backend": ctx.backend, "fsdp": fsdp}
    for key in mine:
        report[f"{key}_per_rank"] = [p.get(key) for p in parts]
    return report
