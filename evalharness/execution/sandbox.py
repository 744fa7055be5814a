"""The sandbox: programs run in parallel, each in its own isolated process; submit them as they arrive."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from evalharness.errors import SandboxUnavailable

from .consent import ensure_code_execution_allowed
from .isolation import detect_isolation, ensure_supported
from .policy import DEFAULT_UID_BASE, Isolation, Limits
from .process import run_program
from .program import Program
from .result import ExecutionResult
from .uids import UidLease


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Sandbox:
    """Runs programs (model-written code) in fresh isolated processes, up to `max_workers` at once.

    Needs `allow_code_execution=True`. `isolation` defaults to the strongest that works here (see
    `detect_isolation`); pass one to choose. Running as root, each worker has a dedicated uid of its
    own (`uids`, leased from `uid_base` up). `submit` returns at once, so programs can run while the
    model is still generating. Use as a context manager, or call `close`.
    """

    def __init__(self, *, allow_code_execution: bool = False, limits: Limits | None = None,
                 max_workers: int | None = None, isolation: Isolation | None = None,
                 uid_base: int = DEFAULT_UID_BASE) -> None:
        ensure_code_execution_allowed(allow_code_execution)
        ensure_supported()
        self.limits = limits or Limits()
        self.max_workers = max_workers or available_cores()
        if self.max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if isolation is not None and isolation.dedicated_uids and os.geteuid() != 0:
            raise SandboxUnavailable("dedicated uids need the harness to run as root")
        self._lease = UidLease(uid_base, self.max_workers) if os.geteuid() == 0 else None
        try:
            self.isolation = isolation or detect_isolation(self._lease.uids[0] if self._lease else None)
        except BaseException:
            self._release()
            raise
        self.uids: list[int] = list(self._lease.uids) if self._lease and self.isolation.dedicated_uids else []
        if not self.uids:
            self._release()
        self._slots: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        for slot in range(self.max_workers):
            self._slots.put(self.uids[slot] if self.uids else None)
        self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="evalharness-sandbox")
        self._busy_lock = threading.Lock()
        self.busy_seconds = 0.0  # wall time of all programs run so far, summed (they overlap each other)

    def submit(self, program: Program) -> Future[ExecutionResult]:
        """Queue `program`; the future resolves to its `ExecutionResult`."""
        return self._pool.submit(self._run, program)

    def run(self, programs: Iterable[Program]) -> list[ExecutionResult]:
        """Run all `programs` (in parallel) and return their results in order."""
        futures = [self.submit(p) for p in programs]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Wait for running programs (each ends within its wall-clock limit); drop queued ones."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._release()

    def _release(self) -> None:
        if self._lease is not None:
            self._lease.release()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _run(self, program: Program) -> ExecutionResult:
        uid = self._slots.get()  # a uid per concurrent run: process limits never interfere
        started = time.perf_counter()
        try:
            return run_program(program, self.limits, self.isolation, uid)
        finally:
            with self._busy_lock:
                self.busy_seconds += time.perf_counter() - started
            self._slots.put(uid)
