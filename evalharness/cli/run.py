"""`evalharness run`: evaluate a model on tasks or a suite; argument parsing only, the work is `api.run`."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else None


def add_parser(sub: Any) -> None:
    r = sub.add_parser("run", help="evaluate a model on tasks or a suite")
    r.add_argument("--model", default="smollm2-135m",
                   help="preset name, Hugging Face id, local checkpoint folder, .gguf file, composer:PATH.pt (a Composer "
                        "checkpoint) (default: smollm2-135m, embedded)")
    g = r.add_argument_group("what to evaluate")
    g.add_argument("--suite", help="a named group of tasks (e.g. icl)")
    g.add_argument("--tasks", help="comma-separated task names (or suite names)")
    g.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="a folder of your own task YAMLs (and their templates) (repeatable; also $EVALHARNESS_TASKS_PATH)")
    g.add_argument("--limit", type=int, help="only the first N items of each task (of each MMLU subject, Jeopardy category)")
    g.add_argument("--num-fewshot", type=int, help="number of in-context examples (default: the suite's if it sets one, else each task's)")
    g.add_argument("--data-dir", help="benchmark data folder (default: $EVALHARNESS_DATA_DIR)")
    g.add_argument("--output-dir", help="where results.json and samples_<task>.jsonl go (default: results/<model>_<time>)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: reuse its output directory (--output-dir, else this model's latest "
                        "under results/) and its request cache; only missing requests are computed")
    g.add_argument("--no-cache", action="store_true", help="do not keep the request cache (requests.sqlite) in the output directory")
    m = r.add_argument_group("how to run the model")
    m.add_argument("--backend", default="hf", help="a registered backend (default: hf; `evalharness list` shows them)")
    m.add_argument("--backend-option", action="append", metavar="KEY=VALUE",
                   help="a setting of the backend (repeatable), e.g. accelerator=none; see docs/adding-a-backend.md")
    m.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="default: bfloat16 where the hardware does fast bf16 matmuls, else float32")
    m.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    m.add_argument("--batch-size", type=int, default=16)
    m.add_argument("--max-seq-len", type=int, help="longest input in tokens (MPT: overrides max_seq_len; ALiBi extrapolates)")
    m.add_argument("--threads", type=int, default=_env_int("EVALHARNESS_THREADS"),
                   help="torch CPU threads (default: $EVALHARNESS_THREADS or torch's default)")
    m.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")
    m.add_argument("--add-bos-token", action=argparse.BooleanOptionalAction, default=None,
                   help="put a BOS token in front of every input, or none with --no-add-bos-token (default: as lm-eval "
                        "0.4.13, the tokenizer's own special tokens: a BOS for Gemma and Llama tokenizers)")
    c = r.add_argument_group("prompt format (as lm-eval's --apply_chat_template, --system_instruction, --fewshot_as_multiturn)")
    c.add_argument("--apply-chat-template", nargs="?", const="default", default=None, metavar="NAME",
                   help="format prompts as chat messages through the model's chat template (a preset's built-in one, "
                        "else the tokenizer's), or NAME: one of the tokenizer's templates, mpt-instruct, mpt-chat, "
                        "chatml, or a .jinja file")
    c.add_argument("--system-instruction", metavar="TEXT", help="a system message before every prompt")
    c.add_argument("--fewshot-as-multiturn", action=argparse.BooleanOptionalAction, default=None,
                   help="with a chat template, each shot is a user turn and an assistant turn (default: on with "
                        "--apply-chat-template; --no-fewshot-as-multiturn: all shots in one user message)")
    d = r.add_argument_group("several processes (torchrun)")
    d.add_argument("--nproc", type=int, default=1,
                   help="run in N processes on this machine (starts torchrun; one GPU each, or gloo on CPU)")
    d.add_argument("--nnodes", type=int, default=1, metavar="M",
                   help="run on M machines, each starting this command with its --node-rank (see docs/distributed.md)")
    d.add_argument("--node-rank", type=int, metavar="R", help="this machine's number, 0 to M-1 (0 writes the output folder)")
    d.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="node 0's address and a free port, reachable from every node")
    d.add_argument("--fsdp", action=argparse.BooleanOptionalAction, default=None,
                   help="shard the model across the processes with FSDP (default: only when it does not fit one device; "
                        "--no-fsdp: a full copy per process)")
    d.add_argument("--dist-timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="a rank waiting longer than this for the others ends the run with an error (default 1800)")
    r.add_argument("--allow-code-execution", action="store_true",
                   help="consent to run model-written code in the sandbox (needed by code tasks such as humaneval)")
    r.add_argument("--compare", help="published models to compare with in the final table and report.html (e.g. llama-7b,falcon-7b)")


def main(args: argparse.Namespace) -> int:
    """Run, and end a run stopped by a file it could not write (disk full, read-only) with one line naming the
    file and the cause (write_failure.py); what was written before is complete, the request cache keeps every
    answered batch, and --resume continues."""
    from ..write_failure import stopped_run

    try:
        return _run(args)
    except OSError as exc:
        raise stopped_run(exc) from exc


def _run(args: argparse.Namespace) -> int:
    from ..api import latest_output_dir, run
    from ..backends.registry import parse_option_pairs
    from ..config import RunConfig
    from ..errors import ConfigError
    from ..launch import is_main_process, launch, under_torchrun
    from ..report import run_markdown
    from ..report.make import parse_list
    from ..results import RESULTS_FILE, format_table
    from ..tasks import TaskRegistry

    registry = TaskRegistry(include_paths=args.include_path)
    names = registry.resolve(args.tasks, args.suite)
    num_fewshot, extra = args.num_fewshot, {}
    if args.suite:
        suite = registry.suite_spec(args.suite)
        if num_fewshot is None:
            shots = suite.num_fewshot  # the suite's shots (e.g. mpt-table: zero-shot as the MPT-7B table)
            num_fewshot = dict(shots) if isinstance(shots, dict) else shots
        extra = {"suite": suite.name, "suite_absent": list(suite.absent)}
        if suite.absent and is_main_process():
            print(f"suite {suite.name}: no data here for {', '.join(suite.absent)} (not run)", file=sys.stderr)
    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    nodes = _nodes(args)
    output_dir = args.output_dir
    if args.resume and args.no_cache:
        raise ConfigError("--resume needs the request cache; drop --no-cache")
    writer = is_main_process() and (nodes is None or nodes.rank == 0)  # rank 0, or the machine that will hold it
    if args.resume and output_dir is None and writer:  # only rank 0 uses the output folder
        found = latest_output_dir(args.model)
        if found is None:
            raise ConfigError(f"--resume: no earlier run of {args.model!r} with a request cache under results/; pass --output-dir")
        output_dir = str(found)
        print(f"resuming in {output_dir}", file=sys.stderr)
    config = RunConfig(
        model=args.model, tasks=names, limit=args.limit, num_fewshot=num_fewshot, batch_size=args.batch_size,
        dtype=args.dtype, device=args.device, max_seq_len=args.max_seq_len, output_dir=output_dir,
        data_dir=args.data_dir, threads=args.threads, trust_remote_code=args.trust_remote_code,
        use_cache=not args.no_cache, allow_code_execution=args.allow_code_execution, fsdp=args.fsdp,
        dist_timeout=args.dist_timeout, backend=args.backend, backend_options=parse_option_pairs(args.backend_option),
        include_paths=tuple(args.include_path), compare=tuple(parse_list(args.compare)), extra=extra,
        add_bos_token=args.add_bos_token, chat_template=args.apply_chat_template,
        system_instruction=args.system_instruction, fewshot_as_multiturn=args.fewshot_as_multiturn,
    )
    if config.compare:
        from ..report.make import check_compare

        check_compare(config.compare)  # an unknown name fails before any process starts or model loads
    if (args.nproc > 1 or nodes is not None) and not under_torchrun():
        if args.device is not None:
            from ..device import check_device

            check_device(args.device)  # once, here, rather than in every process
        if output_dir is not None and os.path.isdir(output_dir) and writer:
            from pathlib import Path

            from ..output_lock import OutputLock

            OutputLock(Path(output_dir)).acquire().release()  # a busy folder: one line, before any process starts
        return launch(args.nproc, args.argv, nodes)
    if args.fsdp and not under_torchrun():
        print("evalharness: --fsdp has no effect in one process (add --nproc N, or start with torchrun)", file=sys.stderr)
    out = run(config, registry=registry, owns_process=True)
    if out is None or not is_main_process():  # rank 0 prints and writes
        return 0
    shots = out.config["num_fewshot"]
    shots_text = shots if isinstance(shots, int) else ", ".join(f"{t} {k}" for t, k in shots.items())
    print(f"\nmodel: {args.model} ({out.config['dtype']}, {out.config['device']})  "
          f"shots: {shots_text}  limit: {args.limit or 'all'}  eval time: {out.eval_seconds:.1f} s")
    print(format_table(out))
    if out.cache:
        print(f"request cache: {out.cache['hits']} reused, {out.cache['computed']} computed")
    print("\n" + run_markdown(out.to_dict(), out.output_dir, compare=config.compare), end="")
    print(f"\nwrote {out.output_dir}/{RESULTS_FILE}, samples_<task>.jsonl and report.html")
    return 0


def _nodes(args: argparse.Namespace) -> Any:
    """This machine's place among several (`launch.Nodes`), None for a one-machine run; checked before anything."""
    from ..errors import ConfigError
    from ..launch import Nodes

    if args.nnodes < 1:
        raise ConfigError(f"--nnodes must be >= 1, got {args.nnodes}")
    if args.nnodes == 1:
        if args.node_rank not in (None, 0) or args.rdzv_endpoint is not None:
            raise ConfigError("--node-rank and --rdzv-endpoint are for several machines: add --nnodes M")
        return None
    if args.node_rank is None or args.rdzv_endpoint is None:
        raise ConfigError(f"--nnodes {args.nnodes} needs --node-rank (this machine's number) and --rdzv-endpoint "
                          "(node 0's HOST:PORT)")
    if not 0 <= args.node_rank < args.nnodes:
        raise ConfigError(f"--node-rank must be 0 to {args.nnodes - 1}, got {args.node_rank}")
    host, _, port = args.rdzv_endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--rdzv-endpoint {args.rdzv_endpoint!r}: expected HOST:PORT (node 0's address and a free port)")
    return Nodes(args.nnodes, args.node_rank, args.rdzv_endpoint)
