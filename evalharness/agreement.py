"""What every process of a run must share, checked on every rank before any request is sent.

Ranks on other machines read their own data folder, model and evalharness install, but only rank 0 scores and
writes: its results are right only if every rank holds the same evalharness (version and code), torch and
transformers releases, arguments that shape the requests and batches, task specs and data files (sha256), and
model (the backend's identity: weights and config fingerprint, dtype, maximum length). Every rank gathers every
rank's description; a difference ends the run on every rank with one line naming the rank, its host and the first
difference. Paths (data folder, model folder, output folder) may differ between machines; what they hold may not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
from pathlib import Path
from typing import Any, Mapping

from .config import RunConfig
from .distributed import DistContext, collective
from .errors import EvalHarnessError
from .results import package_versions

# RunConfig fields every rank must share; the others are paths or this machine's settings (device, threads)
SHARED_ARGUMENTS = ("tasks", "limit", "num_fewshot", "batch_size", "dtype", "max_seq_len", "trust_remote_code",
                    "allow_code_execution", "fsdp", "dist_timeout", "backend", "backend_options", "add_bos_token",
                    "chat_template", "system_instruction", "fewshot_as_multiturn")
HOST = "host"


class RankMismatch(EvalHarnessError):
    """Some rank's data, model, code or arguments differ from rank 0's."""

    every_rank_knows = True


def run_description(config: RunConfig, tasks: Mapping[str, Any]) -> dict[str, Any]:
    """This rank's code, releases, shared arguments, and each task's spec and data files, as flat labels."""
    versions = package_versions()
    out: dict[str, Any] = {HOST: socket.gethostname(), "evalharness version": versions["evalharness"],
                           "evalharness code": code_digest(), "torch": versions["torch"],
                           "transformers": versions["transformers"]}
    arguments = config.to_dict()
    out.update({f"argument {name}": arguments[name] for name in SHARED_ARGUMENTS})
    for name, task in tasks.items():
        out[f"task {name}: spec"] = spec_digest(task.spec)
        out.update({f"task {name}: data file {file}": sha for file, sha in task.documents.files.items()})
    return out


def model_description(identity: str) -> dict[str, Any]:
    return {HOST: socket.gethostname(), "model (weights, config, dtype, maximum length)": identity}


def code_digest() -> str:
    """sha256 of evalharness's Python files (two checkouts of one version may hold different code)."""
    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def spec_digest(spec: Any) -> str:
    """sha256 of a task spec without where it was found (the folder may differ between machines)."""
    portable = dataclasses.replace(spec, source_file="", origin="", template_dirs=())
    return hashlib.sha256(repr(portable).encode()).hexdigest()


def check_same_everywhere(ctx: DistContext, mine: dict[str, Any], what: str) -> None:
    """Gather every rank's `mine` (a collective: every rank calls it); RankMismatch on every rank if any differs."""
    if ctx.world_size == 1:
        return
    import torch.distributed as dist

    everyone: list[Any] = [None] * ctx.world_size
    with collective(ctx, f"comparing {what} across ranks"):
        dist.all_gather_object(everyone, mine)
    problem = first_difference(everyone)
    if problem:
        raise RankMismatch(problem)


def first_difference(descriptions: list[dict[str, Any]]) -> str | None:
    """One line naming the first rank that differs from rank 0, its host, and what differs; None if all agree."""
    main = descriptions[0]
    for rank, other in enumerate(descriptions[1:], start=1):
        for label in [*main, *(k for k in other if k not in main)]:
            if label != HOST and main.get(label) != other.get(label):
                return (f"rank {rank} (host {other.get(HOST)}) differs from rank 0 (host {main.get(HOST)}): {label} is "
                        f"{_short(other.get(label))} there, {_short(main.get(label))} on rank 0; every machine needs "
                        "the same data, model, evalharness and arguments (docs/distributed.md#several-machines)")
    return None


def _short(value: Any) -> str:
    if value is None:
        return "absent"
    text = str(value)
    return text[:12] + "…" if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else repr(value)
