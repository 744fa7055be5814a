#!/usr/bin/env python3
"""Generation speed: evalharness vs lm-evaluation-harness (lm-eval 0.4.13) `generate_until`, in one process.

Both tools get the same in-memory model object (same weights, same dtype) and the same greedy requests: the
prompts evalharness builds for each task (shots included), its stop sequences and token limit, given to lm-eval
as `generate_until` instances (until, max_gen_toks, do_sample false), as benchmarks/parity_lm_eval.py does
through its task YAMLs. Runs alternate lm-eval, evalharness for `--rounds` rounds after an untimed warm-up of
each; each round makes a fresh backend (evalharness's stop-token table is built inside the timed call).
Printed per task and overall, medians over rounds:

- wall: seconds of the tool's `generate_until` call (batching, tokenising, decoding, cutting at the stops);
- generated tokens: the tokens each completion needed (through the EOS or the token completing its first stop
  sequence, as evalharness counts them), the same numerator for both tools; tok/s = that / wall;
- ratio: lm-eval time / evalharness time; also the ratio of the process's CPU seconds (all threads), steadier
  than wall time on a machine shared with other work; identical: items whose output strings are equal.

evalharness runs with the CPU plugin (`--cpu-plugin on`, its default on CPUs; bound to the model once, before the
rounds, as a run binds it once) or without it (`off`, the core backend alone).

`--levers`: evalharness alone, each generation lever turned off in turn (backend options, alternating per
round), with the outputs compared to the all-levers run.

Needs a Python with both evalharness and lm-eval (benchmarks/requirements-lm-eval.txt). Example
(benchmarks/RESULTS.md):
  <venv with lm-eval>/bin/python benchmarks/generation_speed.py --data-dir ../shared/data --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from statistics import median as med
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

# each lever: the HFOptions that turn it off
LEVERS: dict[str, dict[str, Any]] = {
    "all levers": {},
    "rows in request order (not sorted by prompt length)": {"gen_sort": False},
    "shared prefix not run once": {"gen_share_prefix": False},
    "finished rows stay in the batch": {"gen_drop_finished": False},
    "stop sequences checked in every row's text at every step": {"gen_stop_table": False},
    "KV cache concatenated at every step (transformers' DynamicCache)": {"gen_reserve_cache": False},
    "transformers' generate instead of the own loop": {"gen_loop": False},
    "CPU plugin's kernels not used in the loop": {"gen_accelerate": False},
}
ACCELERATOR: Any = None  # the CPU plugin bound to the model (main), or None


def build_requests(data_dir: Path, task: str, limit: int, shots: int | None) -> list[Any]:
    from evalharness.tasks.registry import TaskRegistry
    from evalharness.tasks.task import Task

    items = Task(TaskRegistry().get(task), data_dir).build_items(limit=limit, num_fewshot=shots)
    return [r for it in items for r in it.requests]


def lm_eval_generate(model: Any, tokenizer: Any, requests: list[Any], batch_size: int) -> list[str]:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
    instances = [Instance(request_type="generate_until", doc={}, idx=i, arguments=(
        r.prompt, {"until": list(r.stop), "max_gen_toks": r.max_new_tokens, "do_sample": False, "temperature": 0.0}))
        for i, r in enumerate(requests)]
    return lm.generate_until(instances, disable_tqdm=True)


def evalharness_generate(model: Any, tokenizer: Any, requests: list[Any], batch_size: int,
                         changes: dict[str, Any] | None = None) -> list[Any]:
    from evalharness.backends.hf.backend import HFBackend
    from evalharness.backends.hf.options import HFOptions

    backend = HFBackend(model, tokenizer, batch_size=batch_size, accelerator=ACCELERATOR,
                        options=HFOptions(accelerator="auto" if ACCELERATOR is not None else "none", **(changes or {})))
    return backend.generate_until(requests)


def timed(fn: Any, *a: Any, **k: Any) -> tuple[float, float, Any]:
    """(wall seconds, this process's CPU seconds over all its threads, the result)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*a, **k)
    return time.perf_counter() - t, time.process_time() - c, out


def against_lm_eval(args: argparse.Namespace, model: Any, tokenizer: Any, tasks: dict[str, list[Any]]) -> dict:
    out: dict[str, Any] = {}
    for task, reqs in tasks.items():
        lm_eval_generate(model, tokenizer, reqs[:2], args.batch_size)  # warm-up
        evalharness_generate(model, tokenizer, reqs[:2], args.batch_size)
        lm_times, eh_times, lm_cpu, eh_cpu = [], [], [], []
        for rnd in range(args.rounds):
            t, c, lm_out = timed(lm_eval_generate, model, tokenizer, reqs, args.batch_size)
            lm_times.append(t)
            lm_cpu.append(c)
            t, c, eh_out = timed(evalharness_generate, model, tokenizer, reqs, args.batch_size)
            eh_times.append(t)
            eh_cpu.append(c)
            print(f"round {rnd + 1} {task}: lm-eval {lm_times[-1]:.1f}s (CPU {lm_cpu[-1]:.1f}s) evalharness "
                  f"{eh_times[-1]:.1f}s (CPU {eh_cpu[-1]:.1f}s)", flush=True)
        tokens = sum(r.num_tokens[0] for r in eh_out)
        same = [i for i, (a, b) in enumerate(zip(lm_out, eh_out)) if a == b.texts[0]]
        out[task] = {"items": len(reqs), "tokens": tokens, "lm_eval": med(lm_times), "evalharness": med(eh_times),
                     "identical": len(same), "lm_eval_rounds": lm_times, "evalharness_rounds": eh_times,
                     "lm_eval_cpu": med(lm_cpu), "evalharness_cpu": med(eh_cpu),
                     "differences": [{"item": i, "lm_eval": lm_out[i], "evalharness": eh_out[i].texts[0]}
                                     for i in range(len(reqs)) if i not in set(same)]}
    print(f"\n### generation, float32, batch {args.batch_size}: lm-eval vs evalharness (median of {args.rounds} rounds)")
    print("| task | items | generated tokens | lm-eval s | evalharness s | ratio | lm-eval tok/s | evalharness tok/s "
          "| ratio of CPU seconds | identical outputs |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    tot = {"items": 0, "tokens": 0, "lm_eval": 0.0, "evalharness": 0.0, "identical": 0, "lm_eval_cpu": 0.0,
           "evalharness_cpu": 0.0}
    for task, r in out.items():
        print(f"| {task} | {r['items']} | {r['tokens']} | {r['lm_eval']:.1f} | {r['evalharness']:.1f} | "
              f"{r['lm_eval'] / r['evalharness']:.2f}x | {r['tokens'] / r['lm_eval']:.1f} | "
              f"{r['tokens'] / r['evalharness']:.1f} | {r['lm_eval_cpu'] / r['evalharness_cpu']:.2f}x | "
              f"{r['identical']}/{r['items']} |")
        for k in tot:
            tot[k] += r[k]
    print(f"| **overall** | {tot['items']} | {tot['tokens']} | {tot['lm_eval']:.1f} | {tot['evalharness']:.1f} | "
          f"**{tot['lm_eval'] / tot['evalharness']:.2f}x** | {tot['tokens'] / tot['lm_eval']:.1f} | "
          f"{tot['tokens'] / tot['evalharness']:.1f} | {tot['lm_eval_cpu'] / tot['evalharness_cpu']:.2f}x | "
          f"{tot['identical']}/{tot['items']} |")
    for task, r in out.items():
        for d in r["differences"]:
            print(f"  {task} item {d['item']}: lm-eval {d['lm_eval']!r}\n  {' ' * len(task)}  evalharness "
                  f"{d['evalharness']!r}")
    out["overall"] = tot
    return out


def lever_benchmark(args: argparse.Namespace, model: Any, tokenizer: Any, tasks: dict[str, list[Any]]) -> dict:
    wanted = [w for w in (args.lever_only or "").split(",") if w]
    levers = {k: v for k, v in LEVERS.items() if not v or not wanted or any(w in k for w in wanted)}
    out: dict[str, Any] = {}
    print(f"\n## generation levers (evalharness generate_until, float32, batch {args.batch_size}, median of "
          f"{args.rounds} rounds)")
    print("| task | lever off | s | time / all levers | CPU s | CPU / all levers | outputs identical to all levers |")
    print("|---|---|--:|--:|--:|--:|--:|")
    for task, reqs in tasks.items():
        evalharness_generate(model, tokenizer, reqs[:2], args.batch_size)  # warm-up
        times: dict[str, list[float]] = {k: [] for k in levers}
        cpu: dict[str, list[float]] = {k: [] for k in levers}
        outputs: dict[str, list[Any]] = {}
        for _ in range(args.rounds):
            for lever, changes in levers.items():
                t, c, outputs[lever] = timed(evalharness_generate, model, tokenizer, reqs, args.batch_size, changes)
                times[lever].append(t)
                cpu[lever].append(c)
        base, base_cpu = med(times["all levers"]), med(cpu["all levers"])
        out[task] = {}
        for lever, ts in times.items():
            same = sum(a.texts == b.texts for a, b in zip(outputs[lever], outputs["all levers"]))
            out[task][lever] = {"seconds": med(ts), "rounds": ts, "cpu": med(cpu[lever]), "identical": same}
            print(f"| {task} | {lever} | {med(ts):.1f} | {med(ts) / base:.2f}x | {med(cpu[lever]):.1f} | "
                  f"{med(cpu[lever]) / base_cpu:.2f}x | {same}/{len(reqs)} |", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, help="local HF checkpoint (default: the embedded model's cached copy)")
    p.add_argument("--data-dir", type=Path, default=os.environ.get("EVALHARNESS_DATA_DIR"))
    p.add_argument("--tasks", default="jeopardy_em:20,gsm8k:30",
                   help="TASK:LIMIT,... (jeopardy_em's limit is per category: 20 = 100 items; default "
                        "jeopardy_em:20,gsm8k:30)")
    p.add_argument("--num-fewshot", type=int, default=None, help="default: each task's own (jeopardy_em 3, gsm8k 8)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--levers", action="store_true", help="evalharness only, each generation lever off in turn")
    p.add_argument("--lever-only", default=None, help="with --levers: levers whose names contain one of these words")
    p.add_argument("--cpu-plugin", choices=("on", "off"), default="on",
                   help="evalharness with the CPU plugin (evalharness[cpu]) or the core backend alone")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.data_dir is None:
        p.error("--data-dir is required (or set EVALHARNESS_DATA_DIR)")
    if args.model_dir is None:
        from evalharness.models.embedded import embedded_model_dir

        args.model_dir = embedded_model_dir()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    tasks = {}
    for spec in args.tasks.split(","):
        task, limit = spec.split(":")
        tasks[task] = build_requests(args.data_dir.resolve(), task, int(limit), args.num_fewshot)
    global ACCELERATOR
    plugin = "off"
    if args.cpu_plugin == "on":
        from evalharness.backends.hf_cpu import accelerator_for

        bound = accelerator_for(model)
        ACCELERATOR, plugin = (None, f"off ({bound})") if isinstance(bound, str) else (bound, "on")
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores, {args.threads} torch threads; torch {torch.__version__}; "
          f"model {args.model_dir.name} float32; CPU plugin {plugin}; " + ", ".join(f"{t} {len(r)} items" for t, r in tasks.items()))
    out = lever_benchmark(args, model, tokenizer, tasks) if args.levers else against_lm_eval(args, model, tokenizer, tasks)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
