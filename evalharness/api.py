"""evaluate() and run(): the one orchestration path the CLI (and later integrations) use."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from .cache import CachedBackend, RequestCache
from .config import RunConfig
from .data import resolve_data_dir
from .errors import ConfigError
from .models.hf_backend import HFCausalLM
from .requests import GenerateRequest, LoglikelihoodRequest
from .results import SCHEMA_VERSION, format_table, package_versions, write_results, write_samples
from .task import Task
from .taskspec import TaskRegistry

SCORING_VERSION = "3"
CACHE_FILE = "requests.sqlite"  # bump when a change to tokenisation or scoring can change numbers


def resolve_task_names(tasks: Sequence[str] | str | None, suite: str | None, registry: TaskRegistry) -> tuple[str, ...]:
    """Task names from a comma list and/or a suite, validated, duplicates removed (order kept)."""
    names: list[str] = []
    if suite:
        names += registry.suite(suite)
    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t.strip()]
    for t in tasks or []:
        t = t.strip()
        names += registry.suite(t) if t in registry.suites and t not in registry.specs else [t]
    for n in names:
        registry.get(n)
    return tuple(dict.fromkeys(names))


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {path} cannot be written: {exc.strerror or exc}") from exc
    return path


def evaluate(
    model: Any,
    tokenizer: Any,
    tasks: Sequence[str] | str,
    *,
    limit: int | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    show_progress: bool = False,
    registry: TaskRegistry | None = None,
    allow_code_execution: bool = False,
) -> dict[str, Any]:
    """Evaluate an in-memory transformers causal LM; returns the results.json structure.

    Files (results.json, samples_<task>.jsonl) are written only when `output_dir` is given. Code tasks
    (humaneval) run model-written code and need `allow_code_execution=True`.
    """
    registry = registry or TaskRegistry()
    names = resolve_task_names(tasks, None, registry)
    data = resolve_data_dir(data_dir)
    task_objs = {n: Task(registry.get(n), data) for n in names}
    _check_consent(task_objs, allow_code_execution)
    backend = HFCausalLM(model, tokenizer, batch_size=batch_size, max_length=max_length)
    return _evaluate(backend, names, registry, limit=limit, num_fewshot=num_fewshot, data_dir=data,
                     output_dir=Path(output_dir) if output_dir else None, show_progress=show_progress, header={},
                     tasks=task_objs, allow_code_execution=allow_code_execution)


def _check_consent(tasks: dict[str, Task], allow_code_execution: bool) -> None:
    """Before anything is generated: code tasks need explicit consent to run model-written code."""
    if any(t.needs_execution for t in tasks.values()):
        from .execution import ensure_code_execution_allowed

        ensure_code_execution_allowed(allow_code_execution)


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def _evaluate(
    backend: HFCausalLM,
    names: Sequence[str],
    registry: TaskRegistry,
    *,
    limit: int | None,
    num_fewshot: int | None,
    data_dir: Path | None,
    output_dir: Path | None,
    show_progress: bool,
    header: dict[str, Any],
    tasks: dict[str, Task] | None = None,
    allow_code_execution: bool = False,
) -> dict[str, Any]:
    tasks = tasks or {n: Task(registry.get(n), data_dir) for n in names}
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        **header,
        "results": {},
        "groups": {},
        "tasks": {},
        "data": {},
        "versions": package_versions(),
        "scoring_version": SCORING_VERSION,
    }
    out.setdefault("config", {}).update({"limit": limit, "num_fewshot": num_fewshot, "batch_size": backend.batch_size,
                                         "max_length": backend.max_length})
    with contextlib.ExitStack() as stack:  # the code sandbox, opened by the first task that runs code
        sandbox: Any = None
        for name in names:
            task = tasks[name]
            started = time.perf_counter()
            items = task.build_items(limit=limit, num_fewshot=num_fewshot)
            requests = [r for item in items for r in item.requests]
            runs: dict[int, list[Any]] = {}  # code tasks: item index -> futures of its programs' executions
            on_generated = None
            if task.needs_execution:  # one generation request per item: run its programs as soon as it is generated
                task.pass_at()
                if sandbox is None:
                    from .execution import Sandbox

                    sandbox = stack.enter_context(Sandbox(allow_code_execution=allow_code_execution))

                def on_generated(batch: list[tuple[int, Any]], items: list[Any] = items, task: Task = task) -> None:
                    for i, res in batch:
                        runs[i] = [sandbox.submit(task.program_for(items[i], text)) for text in res.texts]
            with tqdm(total=len(requests), desc=name, unit="req", disable=not show_progress, file=sys.stderr) as bar:
                answers = _answer(backend, requests, bar.update, on_generated)
            if on_generated is not None:
                on_generated([(i, a) for i, a in enumerate(answers) if i not in runs])  # answers from the cache
            scored, pos = [], 0
            for k, item in enumerate(items):
                n = len(item.requests)
                executions = [f.result() for f in runs[k]] if k in runs else None
                scored.append(task.score(item, tuple(answers[pos:pos + n]), executions))
                pos += n
            overall, groups = task.aggregate(scored)
            n_truncated = sum(1 for a in answers if getattr(a, "truncated", False))
            out["results"][name] = overall
            if groups:
                out["groups"][name] = groups
            extra: dict[str, Any] = {}
            if task.spec.generation is not None:
                extra["generation"] = dataclasses.asdict(task.spec.generation)
            if task.spec.protocol:
                extra["protocol"] = task.spec.protocol
            if task.needs_execution and sandbox is not None:
                extra["execution"] = {"isolation": sandbox.isolation.to_dict(), "limits": dataclasses.asdict(sandbox.limits),
                                      "statuses": _count(e["status"] for s in scored for e in s.details["executions"])}
            out["tasks"][name] = {
                "spec": task.spec.source_file.rsplit("/", 1)[-1],
                "output_type": task.spec.output_type,
                "headline": task.spec.headline if task.spec.group_by_subset else None,
                "fewshot": task.fewshot_info(num_fewshot),
                "num_items": len(items),
                "num_requests": len(requests),
                "num_truncated_requests": n_truncated,
                "seconds": round(time.perf_counter() - started, 3),
                **extra,
            }
            if n_truncated:
                print(f"warning: {name}: {n_truncated} request(s) longer than {backend.max_length} tokens were truncated on the left",
                      file=sys.stderr)
            out["data"][name] = task.documents.files
            if output_dir is not None:  # each finished task is on disk before the next starts
                write_samples(output_dir / f"samples_{name}.jsonl", (s.sample_record() for s in scored))
                write_results(output_dir / "results.json", out)
    return out


def _answer(backend: Any, requests: list[Any], progress: Any, on_generated: Any = None) -> list[Any]:
    """Send each kind of request to the backend method that answers it; answers in the requests' order.

    `on_generated([(request index, GenerateResult), ...])` is called as each generation batch finishes.
    """
    answers: list[Any] = [None] * len(requests)
    by_kind: dict[type, list[int]] = {}
    for i, r in enumerate(requests):
        by_kind.setdefault(type(r), []).append(i)
    for kind, indices in by_kind.items():
        sub = [requests[i] for i in indices]
        if kind is GenerateRequest:
            hook = None
            if on_generated is not None:
                def hook(batch: list[tuple[int, Any]], indices: list[int] = indices) -> None:
                    on_generated([(indices[j], res) for j, res in batch])
            results = backend.generate_until(sub, progress=progress, on_results=hook)
        else:
            results = backend.loglikelihood(sub, progress=progress)
        for i, a in zip(indices, results):
            answers[i] = a
    return answers


def _follow(backend: Any, names: Sequence[str], tasks: dict[str, Task], *, limit: int | None, num_fewshot: int | None) -> None:
    """What _evaluate sends the backend, in the same order, with nothing scored or written (ranks other than 0)."""
    for name in names:
        items = tasks[name].build_items(limit=limit, num_fewshot=num_fewshot)
        _answer(backend, [r for item in items for r in item.requests], None)


def _safe_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name or model).strip("_") or "model"


def default_output_dir(model: str) -> Path:
    return Path("results") / f"{_safe_name(model)}_{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def latest_output_dir(model: str) -> Path | None:
    """The most recent default output directory of this model that holds a request cache (for --resume)."""
    runs = sorted(p.parent for p in Path("results").glob(f"{_safe_name(model)}_*/{CACHE_FILE}"))
    return runs[-1] if runs else None


def run(config: RunConfig, *, show_progress: bool = True, registry: TaskRegistry | None = None) -> dict[str, Any]:
    """Load the model, evaluate every task, write results.json and samples files, print the table.

    Started by torchrun (several processes), every rank answers its share of the requests and rank 0 does
    the rest; the other ranks return an empty dict.
    """
    from .distributed import DistributedBackend, init_distributed, memory_report, shutdown
    from .models.loading import load_model

    registry = registry or TaskRegistry()
    names = resolve_task_names(config.tasks, None, registry)
    data_dir = resolve_data_dir(config.data_dir)
    tasks = {n: Task(registry.get(n), data_dir) for n in names}  # data errors surface before the model loads
    _check_consent(tasks, config.allow_code_execution)
    ctx = init_distributed(config.device, config.dist_timeout)
    output_dir = None  # only rank 0 writes
    if ctx.is_main:
        output_dir = _writable_dir(Path(config.output_dir) if config.output_dir else default_output_dir(config.model))
    if config.threads:
        torch.set_num_threads(config.threads)
    t0 = time.perf_counter()
    sharded = None
    if ctx.world_size > 1:
        from .models.fsdp import ShardedLoader

        sharded = ShardedLoader(config.fsdp, ctx.local_world_size, config.trust_remote_code)
    loaded = load_model(config.model, dtype=config.dtype, device=ctx.device, max_seq_len=config.max_seq_len,
                        trust_remote_code=config.trust_remote_code, build=sharded)
    fsdp = bool(sharded and sharded.used)
    load_seconds = time.perf_counter() - t0
    backend: Any = HFCausalLM(loaded.model, loaded.tokenizer, batch_size=config.batch_size, max_length=config.max_seq_len)
    if ctx.world_size > 1:
        backend = DistributedBackend(backend, ctx, loaded.model if fsdp else None)
    if config.use_cache and output_dir is not None:
        model_key = "|".join(str(x) for x in (loaded.info["fingerprint"], loaded.info["config_sha256"], loaded.dtype,
                                               backend.max_length, SCORING_VERSION))
        backend = CachedBackend(backend, RequestCache(output_dir / CACHE_FILE, model_key))
    header = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {**config.to_dict(), "dtype": loaded.dtype, "device": loaded.device, "world_size": ctx.world_size, "fsdp": fsdp,
                   "threads": torch.get_num_threads(), "data_dir": str(data_dir) if data_dir else None},
        "model": {**loaded.info, "load_seconds": round(load_seconds, 2)},
    }
    t1 = time.perf_counter()
    if output_dir is None:  # ranks other than 0: answer their share of the requests; rank 0 scores and writes
        _follow(backend, names, tasks, limit=config.limit, num_fewshot=config.num_fewshot)
        memory_report(ctx, loaded.model, fsdp)
        shutdown(ctx)
        return {}
    out = _evaluate(backend, names, registry, limit=config.limit, num_fewshot=config.num_fewshot, data_dir=data_dir,
                    output_dir=output_dir, show_progress=show_progress, header=header, tasks=tasks,
                    allow_code_execution=config.allow_code_execution)
    out["eval_seconds"] = round(time.perf_counter() - t1, 2)
    out["distributed"] = memory_report(ctx, loaded.model, fsdp)
    if isinstance(backend, CachedBackend):
        out["cache"] = {"file": CACHE_FILE, "hits": backend.hits, "computed": backend.misses}
        backend.cache.close()
    write_results(output_dir / "results.json", out)
    out["output_dir"] = str(output_dir)
    shutdown(ctx)
    return out


__all__ = ["evaluate", "run", "RunConfig", "format_table", "resolve_task_names"]
