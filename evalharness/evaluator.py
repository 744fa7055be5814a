"""The evaluation loop: tasks -> requests -> a backend's answers -> per-item scores -> task results.

Every process of a run executes this same loop with the same requests; the backend (a DistributedBackend in a
multi-process run) decides who computes what. Only the primary process (rank 0) holds every answer: it scores,
runs generated code, and writes each task's samples file as soon as the task is done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm import tqdm

from .backends.base import Backend
from .chat import PromptFormat
from .errors import InputTooLong
from .requests import GenerateRequest
from .results import TaskResult, write_samples
from .tasks import Task

log = logging.getLogger("evalharness")


def check_consent(tasks: dict[str, Task], allow_code_execution: bool) -> None:
    """Before anything is generated: code tasks need explicit consent to run model-written code."""
    if any(t.needs_execution for t in tasks.values()):
        from .execution import ensure_code_execution_allowed

        ensure_code_execution_allowed(allow_code_execution)


def check_capabilities(backend: Backend, tasks: dict[str, Task]) -> None:
    """Before anything runs: the backend answers every kind of request the tasks will send."""
    from .errors import ConfigError

    caps = backend.capabilities
    for name, task in tasks.items():
        generates = task.spec.generates
        if generates and not caps.generate or not generates and not caps.loglikelihood:
            kind = "generation" if generates else "log-likelihood"
            raise ConfigError(f"task {name!r} needs {kind} requests, which backend {backend.name!r} does not answer")
        gen = task.spec.generation
        if gen is not None and gen.temperature > 0 and not caps.sampling:
            raise ConfigError(f"task {name!r} samples (temperature {gen.temperature}); backend {backend.name!r} "
                              "only decodes greedily")


class Evaluator:
    """Runs tasks through a backend. `primary`: this process scores and writes (rank 0, or a single process).

    num_fewshot: shots for every task, or per task name (tasks not named keep their own); None: each task's own.
    """

    def __init__(self, backend: Backend, tasks: dict[str, Task], *, limit: int | None = None,
                 num_fewshot: int | Mapping[str, int] | None = None, primary: bool = True,
                 output_dir: Path | None = None, show_progress: bool = False, allow_code_execution: bool = False,
                 prompt_format: PromptFormat | None = None) -> None:
        self.backend = backend
        self.prompt_format = prompt_format or PromptFormat()
        self.tasks = tasks
        self.limit = limit
        self.num_fewshot = num_fewshot
        self.primary = primary
        self.output_dir = output_dir if primary else None
        self.show_progress = show_progress and primary
        self.allow_code_execution = allow_code_execution

    def shots_for(self, name: str) -> int | None:
        """The shots asked for task `name` (None: the task's own)."""
        if isinstance(self.num_fewshot, Mapping):
            return self.num_fewshot.get(name)
        return self.num_fewshot

    def shots(self) -> dict[str, int]:
        """The number of shots each task runs with."""
        out = {}
        for n, t in self.tasks.items():
            asked = self.shots_for(n)
            out[n] = t.spec.num_fewshot if asked is None else asked
        return out

    def run(self) -> dict[str, TaskResult]:
        """Evaluate every task in order; the primary process returns their results (the others an empty dict)."""
        out: dict[str, TaskResult] = {}
        with contextlib.ExitStack() as stack:  # the code sandbox, opened by the first task that runs code
            sandbox: list[Any] = []

            def open_sandbox() -> Any:
                if not sandbox:
                    from .execution import Sandbox

                    sandbox.append(stack.enter_context(Sandbox(allow_code_execution=self.allow_code_execution)))
                return sandbox[0]

            for name, task in self.tasks.items():
                result = self._run_task(name, task, open_sandbox)
                if result is not None:
                    out[name] = result
        return out

    def _run_task(self, name: str, task: Task, open_sandbox: Callable[[], Any]) -> TaskResult | None:
        started = time.perf_counter()
        items = task.build_items(limit=self.limit, num_fewshot=self.shots_for(name), prompt_format=self.prompt_format)
        requests = [r for item in items for r in item.requests]
        runs: dict[int, list[Any]] = {}  # code tasks: item index -> futures of its programs' executions
        on_generated = None
        execute = task.needs_execution and self.primary
        if execute:  # one generation request per item: run its programs as soon as it is generated
            box = open_sandbox()

            def on_generated(batch: list[tuple[int, Any]]) -> None:
                for i, res in batch:
                    runs[i] = [box.submit(task.program_for(items[i], text)) for text in res.texts]

        busy_before = open_sandbox().busy_seconds if execute else 0.0
        try:
            with tqdm(total=len(requests), desc=name, unit="req", disable=not self.show_progress, file=sys.stderr) as bar:
                answers = answer(self.backend, requests, bar.update, on_generated)
            answered = time.perf_counter()
        except InputTooLong as exc:  # --max-seq-len shorter than a continuation: name the task and the item
            item = items[_item_of(items, exc.index)]
            raise exc.for_item(name, item.doc_id, item.subset) from None
        if not self.primary:
            return None
        if on_generated is not None:
            on_generated([(i, a) for i, a in enumerate(answers) if i not in runs])  # answers from the cache
        scored, pos = [], 0
        for k, item in enumerate(items):
            n = len(item.requests)
            executions = [f.result() for f in runs[k]] if k in runs else None
            scored.append(task.score(item, tuple(answers[pos:pos + n]), executions))
            pos += n
        scored_at = time.perf_counter()
        overall, groups = task.aggregate(scored)
        n_truncated = sum(1 for a in answers if getattr(a, "truncated", False))
        if n_truncated:
            log.warning(f"{name}: {n_truncated} request(s) longer than {self.backend.max_length} tokens were "
                        "truncated on the left")
        if self.output_dir is not None:
            write_samples(self.output_dir / f"samples_{name}.jsonl", (s.sample_record() for s in scored))
        info: dict[str, Any] = {
            "spec": Path(task.spec.source_file).name,
            "origin": task.spec.origin,
            "output_type": task.spec.output_type,
            **task.spec.declarations(),
            "fewshot": task.fewshot_info(self.shots_for(name)),
            **({} if self.prompt_format.is_plain else {"prompt_format": self.prompt_format.to_dict()}),
            "num_items": len(items),
            "limit_per_subset": task.documents.limit_per_subset,  # how --limit took items (of each subset or the file)
            "num_requests": len(requests),
            "num_truncated_requests": n_truncated,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if task.spec.generation is not None:
            info["generation"] = dataclasses.asdict(task.spec.generation)
        if execute:
            box = open_sandbox()
            info["execution"] = {"isolation": box.isolation.to_dict(), "limits": dataclasses.asdict(box.limits),
                                 "statuses": _count(e["status"] for s in scored for e in s.details["executions"])}
            # where the time went: generation (programs already run beside it), the wait for the last programs
            # after it, and the programs' own wall time summed (they overlap generation and each other)
            info["timing"] = {"generation_seconds": round(answered - started, 3),
                              "execution_wait_seconds": round(scored_at - answered, 3),
                              "program_seconds_total": round(box.busy_seconds - busy_before, 3)}
        return TaskResult(name, overall, groups, info, task.documents.files)


def answer(backend: Backend, requests: Sequence[Any], progress: Callable[[int], None] | None,
           on_generated: Callable[[list[tuple[int, Any]]], None] | None = None) -> list[Any]:
    """Send each kind of request to the backend method that answers it; answers in the requests' order.

    `on_generated([(request index, GenerateResult), ...])` is called as each generation batch finishes.
    """
    answers: list[Any] = [None] * len(requests)
    by_kind: dict[type, list[int]] = {}
    for i, r in enumerate(requests):
        by_kind.setdefault(type(r), []).append(i)
    for kind, indices in by_kind.items():
        sub = [requests[i] for i in indices]
        try:
            if kind is GenerateRequest:
                hook = None
                if on_generated is not None:
                    def hook(batch: list[tuple[int, Any]], indices: list[int] = indices) -> None:
                        on_generated([(indices[j], res) for j, res in batch])
                results = backend.generate_until(sub, progress=progress, on_results=hook)
            else:
                results = backend.loglikelihood(sub, progress=progress)
        except InputTooLong as exc:
            raise exc.at(indices[exc.index]) from None
        for i, a in zip(indices, results):
            answers[i] = a
    return answers


def _item_of(items: Sequence[Any], request_index: int) -> int:
    """The index of the item whose requests include the `request_index`-th request of the task."""
    end = 0
    for k, item in enumerate(items):
        end += len(item.requests)
        if request_index < end:
            return k
    raise IndexError(request_index)


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts
