#!/usr/bin/env python3
"""The CPU allocator lever (evalharness/backends/hf_cpu/cpu_allocator.py): the same evaluation with and without it.

malloc settings are per process and cannot be undone cleanly, so each run is its own process: runs alternate
EVALHARNESS_KEEP_FREED_MEMORY=0 / 1 for `--rounds` rounds; each prints the wall time of evalharness.evaluate
on the tasks (after a small untimed warm-up) and the minor page faults it took. Medians are printed at the end.

  .venv/bin/python benchmarks/cpu_allocator.py --data-dir ../shared/data --threads 2 --rounds 3 \\
      --tasks lambada_openai=100,piqa=50,hellaswag=50,mmlu=2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one_run(args: argparse.Namespace) -> None:
    """Child: evaluate the tasks once, print {"wall": s, "faults": n, "kept": bool} as JSON."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import evalharness
    from evalharness.backends.hf_cpu.cpu_allocator import keep_freed_memory
    from evalharness.models.embedded import embedded_model_dir

    torch.set_num_threads(args.threads)
    model_dir = args.model_dir or embedded_model_dir()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, args.dtype))
    tasks = [(name, int(n)) for name, n in (t.split("=") for t in args.tasks.split(","))]
    out = Path(args.work_dir)
    for name, _ in tasks:  # warm-up: first calls of each kernel, task files read
        evalharness.evaluate(model, tok, [name], limit=2, batch_size=args.batch_size, data_dir=args.data_dir,
                             output_dir=out / "warm")
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = time.perf_counter()
    for name, n in tasks:
        evalharness.evaluate(model, tok, [name], limit=n, batch_size=args.batch_size, data_dir=args.data_dir,
                             output_dir=out / "run")
    wall = time.perf_counter() - t
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    print(json.dumps({"wall": wall, "faults": faults, "kept": keep_freed_memory()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, help="local HF checkpoint (default: the embedded model's cached copy)")
    p.add_argument("--data-dir", type=Path, default=os.environ.get("EVALHARNESS_DATA_DIR"))
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/evalharness-allocator"))
    p.add_argument("--tasks", default="lambada_openai=100,piqa=50,hellaswag=50,mmlu=2", help="task=limit,...")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        one_run(args)
        return
    child = [sys.executable, str(Path(__file__).resolve()), "--child", "--tasks", args.tasks, "--dtype", args.dtype,
             "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--work-dir", str(args.work_dir)]
    if args.data_dir:
        child += ["--data-dir", str(args.data_dir)]
    if args.model_dir:
        child += ["--model-dir", str(args.model_dir)]
    runs: dict[str, list[dict]] = {"0": [], "1": []}
    for r in range(args.rounds):
        for setting in ("0", "1"):
            env = dict(os.environ, EVALHARNESS_KEEP_FREED_MEMORY=setting, HF_HUB_OFFLINE="1",
                       TOKENIZERS_PARALLELISM="false")
            proc = subprocess.run(child, env=env, capture_output=True, text=True, check=True)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            runs[setting].append(result)
            print(f"round {r + 1} keep freed memory={setting}: {result['wall']:.2f} s, "
                  f"{result['faults']:,} minor page faults (setting in force: {result['kept']})", flush=True)
    med = {k: (statistics.median(x["wall"] for x in v), statistics.median(x["faults"] for x in v)) for k, v in runs.items()}
    print(f"\n{args.tasks}, {args.dtype}, batch {args.batch_size}, {args.threads} threads, medians of {args.rounds}:")
    print(f"  off: {med['0'][0]:.2f} s, {med['0'][1]:,.0f} faults;  on: {med['1'][0]:.2f} s, {med['1'][1]:,.0f} faults;"
          f"  gain {med['0'][0] / med['1'][0]:.2f}x")


if __name__ == "__main__":
    main()
