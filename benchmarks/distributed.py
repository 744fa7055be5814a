#!/usr/bin/env python3
"""One process versus N processes (FSDP and data parallel): wall time, memory per rank, per-item parity.

Runs `python -m evalharness run` three times on the same model, tasks and items:

 1. one process;
 2. `--nproc N --fsdp` (parameters sharded: each rank holds about 1/N of them);
 3. `--nproc N --no-fsdp` (data parallel: a full copy per rank);

then prints, per run, the wall time of the whole command, the model load and evaluation seconds, the
parameter megabytes and peak resident memory of each rank, and, against the one-process run, the number
of items whose prediction (or generated text) differs and the largest |log-prob difference|.

Exit status: 0 = every item agrees (log-probs within --tol), 1 = a difference, 2 = a run failed.
Everything is written under --work-dir.

Example (the figures in the issue-4 report; 2-core CPU, gloo):
  python benchmarks/distributed.py --model smollm2-135m --limit 5 --work-dir /tmp/dist-bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

TASKS = "lambada_openai,piqa,hellaswag,mmlu,jeopardy,jeopardy_em"


def run(name: str, args: argparse.Namespace, extra: list[str]) -> tuple[Path, float]:
    out = args.work_dir / name
    cmd = [sys.executable, "-m", "evalharness", "run", "--model", args.model, "--tasks", args.tasks, "--limit", str(args.limit),
           "--batch-size", str(args.batch_size), "--dtype", args.dtype, "--threads", str(args.threads), "--no-cache",
           "--output-dir", str(out), *extra]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    print(f"[{name}] {' '.join(cmd)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with open(args.work_dir / f"{name}.log", "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    seconds = time.perf_counter() - started
    if code != 0:
        print(f"[{name}] failed with exit status {code}; see {args.work_dir / f'{name}.log'}", file=sys.stderr)
        sys.exit(2)
    return out, seconds


def differences(reference: Path, other: Path, tasks: list[str]) -> tuple[int, int, float]:
    """(items compared, items whose prediction or text differs, largest |log-prob difference|)."""
    n, differ, worst = 0, 0, 0.0
    for task in tasks:
        a = [json.loads(x) for x in (reference / f"samples_{task}.jsonl").read_text().splitlines()]
        b = [json.loads(x) for x in (other / f"samples_{task}.jsonl").read_text().splitlines()]
        if [(s["subset"], s["doc_id"]) for s in a] != [(s["subset"], s["doc_id"]) for s in b]:
            raise SystemExit(f"{task}: the runs hold different items")
        for x, y in zip(a, b):
            n += 1
            differ += any(x.get(k) != y.get(k) for k in ("prediction", "completions", "is_greedy"))
            worst = max([worst, *(abs(p - q) for p, q in zip(x.get("logprobs", []), y.get("logprobs", [])))])
    return n, differ, worst


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--tasks", default=TASKS)
    p.add_argument("--limit", type=int, default=5, help="items per task (per MMLU subject)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--data-dir")
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--work-dir", type=Path, required=True)
    args = p.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    tasks = args.tasks.split(",")

    runs = {"1 process": run("one", args, [])}
    runs[f"{args.nproc} proc, FSDP"] = run("fsdp", args, ["--nproc", str(args.nproc), "--fsdp"])
    runs[f"{args.nproc} proc, data parallel"] = run("dp", args, ["--nproc", str(args.nproc), "--no-fsdp"])

    reference = runs["1 process"][0]
    print(f"\nmodel {args.model}, {args.dtype}, tasks {args.tasks}, limit {args.limit}, batch {args.batch_size}, "
          f"{args.threads} thread(s) per process\n")
    print("| run | wall s | load s | eval s | param MB per rank | peak RSS MB per rank | items | differing | max abs dlogprob |")
    print("|---|--:|--:|--:|---|---|--:|--:|--:|")
    ok = True
    for label, (folder, wall) in runs.items():
        res = json.loads((folder / "results.json").read_text())
        dist = res["distributed"]
        n, differ, worst = differences(reference, folder, tasks)
        ok &= differ == 0 and worst <= args.tol
        params = " / ".join(f"{b / 2**20:.1f}" for b in dist["param_bytes_per_rank"])
        rss = " / ".join(f"{m:.0f}" for m in dist["peak_rss_mb_per_rank"])
        print(f"| {label} | {wall:.1f} | {res['model']['load_seconds']:.1f} | {res['eval_seconds']:.1f} | {params} | {rss} | "
              f"{n} | {differ} | {worst:.2e} |")
    print("\nper task, eval seconds: " + "; ".join(
        f"{label}: " + ", ".join(f"{t} {json.loads((f / 'results.json').read_text())['tasks'][t]['seconds']:.1f}" for t in tasks)
        for label, (f, _) in runs.items()))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
