"""evaluate() and run(): the one orchestration path the CLI (and later integrations) use."""

from __future__ import annotations

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

SCORING_VERSION = "2"
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
) -> dict[str, Any]:
    """Evaluate an in-memory transformers causal LM; returns the results.json structure.

    Files (results.json, samples_<task>.jsonl) are written only when `output_dir` is given.
    """
    registry = registry or TaskRegistry()
    names = resolve_task_names(tasks, None, registry)
    backend = HFCausalLM(model, tokenizer, batch_size=batch_size, max_length=max_length)
    return _evaluate(backend, names, registry, limit=limit, num_fewshot=num_fewshot,
                     data_dir=resolve_data_dir(data_dir), output_dir=Path(output_dir) if output_dir else None,
                     show_progress=show_progress, header={})


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
    for name in names:
        task = tasks[name]
        started = time.perf_counter()
        items = task.build_items(limit=limit, num_fewshot=num_fewshot)
        requests = [r for item in items for r in item.requests]
        with tqdm(total=len(requests), desc=name, unit="req", disable=not show_progress, file=sys.stderr) as bar:
            answers = _answer(backend, requests, bar.update)
        scored, pos = [], 0
        for item in items:
            n = len(item.requests)
            scored.append(task.score(item, tuple(answers[pos:pos + n])))
            pos += n
        overall, groups = task.aggregate(scored)
        n_truncated = sum(1 for a in answers if getattr(a, "truncated", False))
        out["results"][name] = overall
        if groups:
            out["groups"][name] = groups
        out["tasks"][name] = {
            "spec": task.spec.source_file.rsplit("/", 1)[-1],
            "output_type": task.spec.output_type,
            "headline": task.spec.headline if task.spec.group_by_subset else None,
            "fewshot": task.fewshot_info(num_fewshot),
            "num_items": len(items),
            "num_requests": len(requests),
            "num_truncated_requests": n_truncated,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if n_truncated:
            print(f"warning: {name}: {n_truncated} request(s) longer than {backend.max_length} tokens were truncated on the left",
                  file=sys.stderr)
        out["data"][name] = task.documents.files
        if output_dir is not None:  # each finished task is on disk before the next starts
            write_samples(output_dir / f"samples_{name}.jsonl", (s.sample_record() for s in scored))
            write_results(output_dir / "results.json", out)
    return out


def _answer(backend: HFCausalLM, requests: list[Any], progress: Any) -> list[Any]:
    """Send each kind of request to the backend method that answers it; answers in the requests' order."""
    answers: list[Any] = [None] * len(requests)
    by_kind: dict[type, list[int]] = {}
    for i, r in enumerate(requests):
        by_kind.setdefault(type(r), []).append(i)
    methods = {LoglikelihoodRequest: backend.loglikelihood, GenerateRequest: backend.generate_until}
    for kind, indices in by_kind.items():
        for i, a in zip(indices, methods[kind]([requests[i] for i in indices], progress=progress)):
            answers[i] = a
    return answers


def _safe_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name or model).strip("_") or "model"


def default_output_dir(model: str) -> Path:
    return Path("results") / f"{_safe_name(model)}_{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def latest_output_dir(model: str) -> Path | None:
    """The most recent default output directory of this model that holds a request cache (for --resume)."""
    runs = sorted(p.parent for p in Path("results").glob(f"{_safe_name(model)}_*/{CACHE_FILE}"))
    return runs[-1] if runs else None


def run(config: RunConfig, *, show_progress: bool = True, registry: TaskRegistry | None = None) -> dict[str, Any]:
    """Load the model, evaluate every task, write results.json and samples files, print the table."""
    from .models.loading import load_model

    registry = registry or TaskRegistry()
    names = resolve_task_names(config.tasks, None, registry)
    data_dir = resolve_data_dir(config.data_dir)
    tasks = {n: Task(registry.get(n), data_dir) for n in names}  # data errors surface before the model loads
    output_dir = _writable_dir(Path(config.output_dir) if config.output_dir else default_output_dir(config.model))
    if config.threads:
        torch.set_num_threads(config.threads)
    t0 = time.perf_counter()
    loaded = load_model(config.model, dtype=config.dtype, device=config.device, max_seq_len=config.max_seq_len,
                        trust_remote_code=config.trust_remote_code)
    load_seconds = time.perf_counter() - t0
    backend: Any = HFCausalLM(loaded.model, loaded.tokenizer, batch_size=config.batch_size, max_length=config.max_seq_len)
    if config.use_cache:
        model_key = "|".join(str(x) for x in (loaded.info["fingerprint"], loaded.info["config_sha256"], loaded.dtype,
                                               backend.max_length, SCORING_VERSION))
        backend = CachedBackend(backend, RequestCache(output_dir / CACHE_FILE, model_key))
    header = {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": {**config.to_dict(), "dtype": loaded.dtype, "device": loaded.device,
                   "threads": torch.get_num_threads(), "data_dir": str(data_dir) if data_dir else None},
        "model": {**loaded.info, "load_seconds": round(load_seconds, 2)},
    }
    t1 = time.perf_counter()
    out = _evaluate(backend, names, registry, limit=config.limit, num_fewshot=config.num_fewshot, data_dir=data_dir,
                    output_dir=output_dir, show_progress=show_progress, header=header, tasks=tasks)
    out["eval_seconds"] = round(time.perf_counter() - t1, 2)
    if isinstance(backend, CachedBackend):
        out["cache"] = {"file": CACHE_FILE, "hits": backend.hits, "computed": backend.misses}
        backend.cache.close()
    write_results(output_dir / "results.json", out)
    out["output_dir"] = str(output_dir)
    return out


__all__ = ["evaluate", "run", "RunConfig", "format_table", "resolve_task_names"]
