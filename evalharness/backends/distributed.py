"""A backend that splits another backend's batches across the processes of a torchrun run.

The wrapped backend forms its batches exactly as in one process (so the numbers match it); they are dealt out
round-robin, longest first, one batch per process per round, and each round's results are gathered on the main
process, which passes them on (cache, scoring, progress). Every process runs the same evaluation loop and calls
this backend with the same requests, in the same order.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import replace
from typing import Any, Sequence

import torch.distributed as dist

from ..distributed import DistContext, RankFailure, collective
from ..requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult
from .base import Backend, Capabilities, OnResults, Progress, WrappingBackend, deliver

FAIL_RANK_ENV = "EVALHARNESS_FAIL_RANK"  # test hook: this rank raises when it reaches its first request batch
HANG_RANK_ENV = "EVALHARNESS_HANG_RANK"  # test hook: this rank stops there without a word (the others time out)


class DistributedBackend(WrappingBackend):
    """Splits `backend`'s batches across the ranks of `ctx`; same interface as any backend.

    The main process's `known` results (its request cache) are broadcast; batches it fully knows are skipped
    everywhere. The main process returns every result in the requests' order; the others return only their own
    (None elsewhere) and never call `on_results`.

    When the wrapped backend needs lockstep (a sharded model), every rank runs a forward in every round: a rank
    without a batch runs a one-row padding batch whose result is dropped, so the shards' collectives pair up.
    """

    def __init__(self, backend: Backend, ctx: DistContext) -> None:
        if not backend.capabilities.plans_batches:
            raise RankFailure(f"backend {backend.name!r} cannot split its work across processes (it plans no batches)")
        super().__init__(backend)
        self.ctx = ctx

    @property
    def capabilities(self) -> Capabilities:
        return replace(self.inner.capabilities, collective=True)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: Progress | None = None,
                      on_results: OnResults | None = None,
                      known: Sequence[LoglikelihoodResult | None] | None = None) -> list[LoglikelihoodResult]:
        return self._run("loglikelihood", requests, progress, on_results, known)

    def generate_until(self, requests: Sequence[GenerateRequest], *, progress: Progress | None = None,
                       on_results: OnResults | None = None,
                       known: Sequence[GenerateResult | None] | None = None) -> list[GenerateResult]:
        return self._run("generate_until", requests, progress, on_results, known)

    def _run(self, kind: str, requests: Sequence[Any], progress: Progress | None, on_results: OnResults | None,
             known: Sequence[Any | None] | None) -> list[Any]:
        ctx = self.ctx
        _test_hooks(ctx.rank)
        known = self._agree(kind, requests, known)
        results: list[Any] = list(known) if known is not None else [None] * len(requests)
        plan = self.inner.batches(kind, requests)
        todo = [b for b in plan if known is None or any(known[i] is None for i in b)]
        if progress is not None and len(todo) < len(plan):
            progress(len(requests) - sum(len(b) for b in todo))
        method = getattr(self.inner, kind)
        lockstep = self.inner.capabilities.lockstep
        seen: list[int] = []
        for start in range(0, len(todo), ctx.world_size):
            mine: list[tuple[int, Any]] = []
            if start + ctx.rank < len(todo):
                batch = sorted(todo[start + ctx.rank])
                mine = list(zip(batch, method([requests[i] for i in batch])))
            elif lockstep:  # keeps the sharded parameters' collectives in step
                method([_padding(requests[plan[-1][-1]])])  # a short request (the last batch's); result dropped
            parts: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
            with collective(ctx, f"gathering {kind} results"):
                dist.gather_object(mine, parts, dst=0)
            if ctx.is_main:
                done = [pair for part in parts or [] for pair in part]
                seen += [i for i, _ in done]
                deliver(done, results, on_results, progress)
            else:
                deliver(mine, results, None, None)
        if ctx.is_main and (sorted(seen) != sorted(i for b in todo for i in b) or any(r is None for r in results)):
            raise RuntimeError(f"distributed {kind}: the gathered results do not cover every request exactly once "
                               f"({len(seen)} gathered for {sum(len(b) for b in todo)} computed requests)")
        return results

    def _agree(self, kind: str, requests: Sequence[Any], known: Sequence[Any | None] | None) -> Sequence[Any | None] | None:
        """Broadcast the main process's known results; every rank checks that it holds the same requests."""
        digest = _digest(kind, requests)
        payload = [(kind, len(requests), digest, list(known) if known is not None else None) if self.ctx.is_main else None]
        with collective(self.ctx, f"starting {kind}"):
            dist.broadcast_object_list(payload, src=0)
        main_kind, n, main_digest, main_known = payload[0]
        if (main_kind, n, main_digest) != (kind, len(requests), digest):
            raise RankFailure(
                f"rank {self.ctx.rank}: its {kind} requests ({len(requests)}) differ from rank 0's {main_kind} requests ({n}); "
                "every rank needs the same code, data and arguments"
            )
        return main_known


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
