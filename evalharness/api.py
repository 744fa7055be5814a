"""evaluate() and run(): set up a backend and tasks, run the evaluation loop, write the run's files.

`evaluate` takes a model already in memory (or any Backend instance); `run` takes a RunConfig, loads the model
through the backend registry and is what the command line calls. Both write the same files when given a folder:
results.json, samples_<task>.jsonl and report.html.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

from .backends.base import Backend
from .chat import PromptFormat
from .config import RunConfig, check_numbers
from .data import resolve_data_dir
from .errors import ConfigError
from .evaluator import Evaluator, check_capabilities, check_consent
from .output_lock import OutputLock
from .results import EvalResults, TaskResult, package_versions
from .tasks import Task, TaskRegistry

SCORING_VERSION = "3"  # bump when a change to tokenisation or scoring can change numbers (keys the request cache)
CACHE_FILE = "requests.sqlite"

log = logging.getLogger("evalharness")


def evaluate(
    model: Any = None,
    tokenizer: Any = None,
    tasks: Sequence[str] | str = (),
    *,
    backend: Backend | None = None,
    backend_options: Any = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
    show_progress: bool = False,
    registry: TaskRegistry | None = None,
    task_paths: Sequence[str | Path] = (),
    allow_code_execution: bool = False,
    add_bos_token: bool | None = None,
    chat_template: str | None = None,
    system_instruction: str | None = None,
    fewshot_as_multiturn: bool | None = None,
    model_info: dict[str, Any] | None = None,
) -> EvalResults:
    """Evaluate an in-memory transformers causal LM (`model`, `tokenizer`), or any `backend` instance.

    `backend_options`: HFOptions for the in-memory model (evalharness.backends.hf). `task_paths`: task folders
    besides the shipped ones. `add_bos_token`: None (lm-eval's rule: the tokenizer's own special tokens), True or
    False (HFOptions.add_bos_token). `chat_template`: None (plain prompts), "default" (the model's own template) or
    a template's name or .jinja file; `system_instruction`, `fewshot_as_multiturn` (None: on with a template) as
    the command line's options. Files (results.json, samples_<task>.jsonl, report.html) are written only when
    `output_dir` is given. Code tasks (humaneval) run model-written code and need `allow_code_execution=True`.
    `model_info`: what results.json records about the model (`name`, `kind`, `model_type`, ...), over the backend's
    own (dtype, device). Nothing process-wide changes (no allocator settings, no thread counts).

    With a DistributedBackend (evalharness.backends.distributed) every rank calls evaluate(): the main rank
    scores and returns the results (and writes the files), the others return results without tasks.
    """
    if registry is not None and task_paths:
        raise ConfigError("evaluate(): pass task_paths or a registry (built with include_paths=...), not both")
    check_numbers(limit=limit, num_fewshot=num_fewshot, batch_size=batch_size, max_seq_len=max_length)
    registry = registry or TaskRegistry(include_paths=task_paths)
    names = registry.resolve(tasks)
    data = resolve_data_dir(data_dir)
    task_objs = {n: Task(registry.get(n), data) for n in names}
    check_consent(task_objs, allow_code_execution)
    if backend is None:
        if model is None or tokenizer is None:
            raise ConfigError("evaluate() needs a model and its tokenizer, or backend=...")
        from .backends.hf import HFBackend, HFOptions

        options = with_bos_option("hf", backend_options if backend_options is not None else HFOptions(), add_bos_token)
        backend = HFBackend(model, tokenizer, batch_size=batch_size, max_length=max_length, options=options)
    elif model is not None:
        raise ConfigError("evaluate(): pass either a model and tokenizer or backend=..., not both")
    elif add_bos_token is not None:
        raise ConfigError("evaluate(): add_bos_token is a setting of the backend; pass it in its options")
    check_capabilities(backend, task_objs)
    fmt = prompt_format(backend, chat_template, system_instruction, fewshot_as_multiturn)
    out_dir = Path(output_dir) if output_dir is not None else None
    config = {"tasks": list(names), "limit": limit, "num_fewshot": num_fewshot, "data_dir": str(data) if data else None,
              "add_bos_token": add_bos_token, "chat_template": chat_template, "system_instruction": system_instruction,
              "fewshot_as_multiturn": fmt.fewshot_as_multiturn, "prompt_format": fmt.to_dict()}
    primary = scores_here(backend)
    out_dir = out_dir if primary else None
    evaluator = Evaluator(backend, task_objs, limit=limit, num_fewshot=num_fewshot, output_dir=out_dir,
                          primary=primary, show_progress=show_progress, allow_code_execution=allow_code_execution,
                          prompt_format=fmt)
    started = time.perf_counter()
    if out_dir is None:
        return _results(evaluator.run(), evaluator, backend, config, started, model_info)
    with OutputLock(make_output_dir(out_dir)):
        results = _results(evaluator.run(), evaluator, backend, config, started, model_info)
        write_run_files(results, out_dir)
    return results


def run(config: RunConfig, *, show_progress: bool = True, registry: TaskRegistry | None = None,
        owns_process: bool = False) -> EvalResults | None:
    """Load the model through the backend registry, evaluate every task, write results.json, the samples files
    and report.html into the output folder.

    Started by torchrun (several processes), every rank runs the same loop and answers its share of the
    requests; rank 0 scores, writes and returns the results, the other ranks return None. `owns_process`: the
    caller is evalharness's own command line, so backends may change process-wide settings.
    """
    from .agreement import check_same_everywhere, model_description, run_description
    from .backends.cache import CachedBackend, RequestCache
    from .backends.distributed import DistributedBackend
    from .backends.registry import BackendSetup, create_backend
    from .device import check_device
    from .distributed import init_distributed, memory_report, shutdown

    registry = registry or TaskRegistry(include_paths=config.include_paths)
    names = registry.resolve(config.tasks)
    data_dir = resolve_data_dir(config.data_dir)
    tasks = {n: Task(registry.get(n), data_dir) for n in names}  # data errors surface before the model loads
    check_consent(tasks, config.allow_code_execution)
    if config.compare:
        from .report.make import check_compare

        check_compare(config.compare)
    check_device(config.device)
    ctx = init_distributed(config.device, config.dist_timeout)
    output_dir = None  # only rank 0 writes, and holds the folder's lock
    lock: OutputLock | None = None
    if ctx.is_main:
        output_dir = Path(config.output_dir) if config.output_dir else default_output_dir(config.model)
        check_writable(output_dir)
        lock = OutputLock(output_dir)
    try:
        if ctx.world_size > 1:  # every rank must hold what rank 0 holds: before the model loads, then after
            check_same_everywhere(ctx, run_description(config, tasks), "code, arguments and data")
        if ctx.is_main and ctx.world_size > ctx.local_world_size:  # several machines: say which one writes
            import socket

            log.info(f"several machines: rank 0 runs on {socket.gethostname()} and writes {output_dir}")
        if lock is not None and output_dir is not None and output_dir.is_dir():
            lock.acquire()  # an existing folder: before the model loads (a new one is locked once it is made)
        if config.threads:
            import torch

            torch.set_num_threads(config.threads)
        setup = BackendSetup(model=config.model, dtype=config.dtype, device=ctx.device, batch_size=config.batch_size,
                             max_length=config.max_seq_len, trust_remote_code=config.trust_remote_code, dist=ctx,
                             fsdp=config.fsdp, owns_process=owns_process)
        backend: Backend = create_backend(config.backend, setup,
                                          with_bos_option(config.backend, config.backend_options, config.add_bos_token))
        if ctx.world_size > 1:
            check_same_everywhere(ctx, model_description(backend.identity()), "the model")
        check_capabilities(backend, tasks)
        fmt = prompt_format(backend, config.chat_template, config.system_instruction, config.fewshot_as_multiturn)
        if ctx.world_size > 1:
            backend = DistributedBackend(backend, ctx)
        if output_dir is not None:
            make_output_dir(output_dir)
            if lock is not None and not lock.held:
                lock.acquire()
            if config.use_cache:
                key = f"{backend.identity()}|scoring={SCORING_VERSION}"
                backend = CachedBackend(backend, RequestCache(output_dir / CACHE_FILE, key))
        evaluator = Evaluator(backend, tasks, limit=config.limit, num_fewshot=config.num_fewshot,
                              primary=ctx.is_main, output_dir=output_dir, show_progress=show_progress,
                              allow_code_execution=config.allow_code_execution, prompt_format=fmt)
        started = time.perf_counter()
        task_results = evaluator.run()
        usage = memory_report(ctx, backend.resource_usage(), bool(backend.model_info().get("fsdp")))
        backend.close()
        if not ctx.is_main:
            return None
        import torch

        recorded = {**config.to_dict(), "world_size": ctx.world_size, "threads": torch.get_num_threads(),
                    "data_dir": str(data_dir) if data_dir else None, "fewshot_as_multiturn": fmt.fewshot_as_multiturn,
                    "prompt_format": fmt.to_dict()}
        results = _results(task_results, evaluator, backend, recorded, started)
        results.distributed = usage
        if isinstance(backend, CachedBackend):
            results.cache = backend.stats()
        assert output_dir is not None
        write_run_files(results, output_dir, compare=config.compare)
        return results
    finally:
        if lock is not None:
            lock.release()
        shutdown(ctx)


def scores_here(backend: Backend) -> bool:
    """Whether this process scores the answers: always, except on the other ranks of a DistributedBackend."""
    from .backends.distributed import DistributedBackend

    return not isinstance(backend, DistributedBackend) or backend.ctx.is_main


def with_bos_option(backend: str, options: Any, add_bos_token: bool | None) -> Any:
    """The backend's options with `add_bos_token` set (`--add-bos-token`); unchanged when it is None."""
    import dataclasses
    from collections.abc import Mapping

    if add_bos_token is None:
        return options
    if options is None or isinstance(options, Mapping):
        given = dict(options or {})
        if "add_bos_token" in given and str(given["add_bos_token"]).lower() != str(add_bos_token).lower():
            raise ConfigError("--add-bos-token and --backend-option add_bos_token disagree")
        return {**given, "add_bos_token": add_bos_token}
    if dataclasses.is_dataclass(options) and any(f.name == "add_bos_token" for f in dataclasses.fields(options)):
        return dataclasses.replace(options, add_bos_token=add_bos_token)
    raise ConfigError(f"--add-bos-token: backend {backend!r} has no add_bos_token option")


def prompt_format(backend: Backend, chat_template: str | None, system_instruction: str | None,
                  fewshot_as_multiturn: bool | None) -> PromptFormat:
    """How prompts are laid out: the chat template the backend's model selects for `chat_template` (None: plain),
    shots as separate turns by default with a template (as lm-eval 0.4.13)."""
    chat = backend.chat_template(chat_template) if chat_template is not None else None
    multiturn = chat is not None if fewshot_as_multiturn is None else fewshot_as_multiturn
    return PromptFormat(chat, system_instruction or None, multiturn)


def _results(task_results: dict[str, TaskResult], evaluator: Evaluator, backend: Backend, config: dict[str, Any],
             started: float, model_info: dict[str, Any] | None = None) -> EvalResults:
    """The typed results: config as recorded (num_fewshot: the shots actually used), model (the backend's
    description, with `model_info` over it) and backend."""
    shots = set(evaluator.shots().values())
    model = {**backend.model_info(), **(model_info or {})}
    described = backend.describe()
    config = {**config, "num_fewshot": shots.pop() if len(shots) == 1 else evaluator.shots(),
              "dtype": model.get("dtype"), "device": model.get("device"),
              "batch_size": described.get("batch_size", config.get("batch_size")), "max_length": backend.max_length}
    return EvalResults(
        tasks=task_results, config=config, model=model, backend=described,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        eval_seconds=round(time.perf_counter() - started, 2), versions=package_versions(),
        scoring_version=SCORING_VERSION)


def write_run_files(results: EvalResults, output_dir: Path, *, compare: Sequence[str] = ()) -> None:
    """results.json (once, now that the run is complete) and report.html beside the samples files."""
    from .report import write_run_report

    make_output_dir(output_dir)
    results.output_dir = output_dir
    results.write(output_dir)
    write_run_report(results.to_dict(), output_dir, compare=list(compare))


def check_writable(path: Path) -> None:
    """Fail before anything loads if `path` could not be created or written (nothing is created here)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and (not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK)):
        raise ConfigError(f"output directory {path} cannot be written ({probe} is not a writable folder)")


def make_output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {path} cannot be written: {exc.strerror or exc}") from exc
    return path


def _safe_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name or model).strip("_") or "model"


def default_output_dir(model: str) -> Path:
    return Path("results") / f"{_safe_name(model)}_{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def latest_output_dir(model: str) -> Path | None:
    """The most recent default output directory of this model that holds a request cache (for --resume)."""
    runs = sorted(p.parent for p in Path("results").glob(f"{_safe_name(model)}_*/{CACHE_FILE}"))
    return runs[-1] if runs else None


__all__ = ["evaluate", "run", "RunConfig", "default_output_dir", "latest_output_dir", "write_run_files"]
