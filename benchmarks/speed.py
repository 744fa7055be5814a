#!/usr/bin/env python3
"""Speed: evalharness vs lm-evaluation-harness (lm-eval) on the same items, in one process.

Both tools get the same in-memory model object (same weights, same dtype) and the same items: the first
`--limit` items of lambada_openai, piqa and hellaswag and the first `--mmlu-limit` items of each MMLU
subject (lm-eval reads them through the task YAMLs of benchmarks/lm_eval_tasks, as the parity benchmark
does). Runs alternate A B A B for `--rounds` rounds, after an untimed warm-up of each tool. Printed per
task and overall:

- wall: end-to-end seconds of the tool's evaluate call for that task (building requests, scoring, metrics,
  per-item logs); loop: seconds inside the tool's log-likelihood call only. Median over rounds.
- tok/s: least-work tokens per second of wall time (the same numerator for both tools).
- ratio: lm-eval time / evalharness time.
- agree: items whose per-item metric values (acc, acc_norm) are identical in both tools.
- MFU: 2 x non-embedding parameters x least-work tokens / wall / the dense matmul rate measured here in
  the same dtype (2048x2048 products, the faster of torch.mm and oneDNN on a packed weight). Least work: each
  distinct input prefix of an item once (the context once for all its choices, each choice's tokens once);
  attention and the LM head are not counted, so this understates the real utilisation a little.

`--cpu-plugin on` (the default): evalharness with its CPU plugin (evalharness/backends/hf_cpu: kernels, packed
weights, the last layer at the read positions), and the plugin's allocator setting applied at the start so both
tools run with it (it is per process). `--cpu-plugin off`: the core HF backend alone, no allocator setting.
On CPUs without AVX512-BF16/AMX, bfloat16 configurations are skipped unless asked for with --configs /
--mpt-dtypes / --lever-dtypes (bf16 matrix products are ~500x slower there).

Needs a Python with both evalharness and lm-eval installed (see benchmarks/requirements-lm-eval.txt;
then `pip install -e .` of this checkout into that venv). With `--mpt`, also a small random MPT
(6 layers, d_model 512, GPT-NeoX vocabulary) on HellaSwag with enough shots for ~2k-token contexts, where
attention matters; there the same request list goes straight to each tool's log-likelihood call.

Example (benchmarks/RESULTS.md):
  <venv with lm-eval>/bin/python benchmarks/speed.py --data-dir ../shared/data --threads 2 --rounds 3 --mpt
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from evalharness.backends.hf.packing import common_prefix_length  # noqa: E402

TASKS = ("lambada_openai", "piqa", "hellaswag", "mmlu")
MC = {"piqa", "hellaswag", "mmlu"}


# --------------------------------------------------------------------------- hardware
def matmul_rate(dtype: torch.dtype, n: int = 2048, seconds: float = 1.5) -> float:
    """Dense matmul FLOP/s on this machine in `dtype`: the best of repeated n x n x n products through torch.mm
    and, where torch has it, through oneDNN on a packed weight (what evalharness's packed linear layers call; in
    float32 torch.mm runs MKL, slower than oneDNN on AMD CPUs), so that MFU is measured against the faster."""
    from evalharness.backends.hf_cpu import packed_linear

    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    products = [lambda: torch.mm(a, b)]
    if packed_linear.available():
        packed = torch.ops.mkldnn._reorder_linear_weight(b)
        products.append(lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], ""))
    best = 0.0
    for product in products:
        for _ in range(2):
            product()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            product()
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


# --------------------------------------------------------------------------- work counts
def distinct_prefixes(rows: list[tuple[int, ...]]) -> int:
    """Number of distinct non-empty prefixes among `rows`: the positions a causal LM must compute at least."""
    rows = sorted(rows)
    return sum(len(r) for r in rows) - sum(common_prefix_length(rows[i - 1], rows[i]) for i in range(1, len(rows)))


@dataclass
class Work:
    """Token counts of a task's requests (tokenised as both tools do)."""

    items: int = 0
    requests: int = 0
    least: int = 0  # distinct input prefixes per item
    rows: int = 0  # tokens of the distinct input rows per item (what lm-eval forwards, without padding)
    scored: int = 0  # continuation tokens whose log-prob is read

    def add(self, other: Work) -> None:
        for k in ("items", "requests", "least", "rows", "scored"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def count_work(backend: Any, items_requests: list[list[Any]], max_length: int) -> Work:
    w = Work()
    for reqs in items_requests:
        rows = set()
        for ctx, cont in backend.encode_pairs(reqs):
            toks = tuple((ctx + cont)[-(max_length + 1):])
            rows.add(toks[:-1])
            w.scored += min(len(cont), len(toks) - 1)
        w.items += 1
        w.requests += len(reqs)
        w.least += distinct_prefixes(list(rows))
        w.rows += sum(len(r) for r in rows)
    return w


def non_embedding_params(model: torch.nn.Module) -> int:
    emb = {id(p) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None
           for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)


# --------------------------------------------------------------------------- the two tools
@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)
    loop: list[float] = field(default_factory=list)


class LoopTimer:
    """Accumulates the seconds spent inside a wrapped function."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t
        return timed


class LmEvalRunner:
    """lm-eval's simple_evaluate on an HFLM wrapping the given model, with the benchmark's task YAMLs."""

    def __init__(self, work_dir: Path, data_dir: Path) -> None:
        from lm_eval.tasks import TaskManager
        from parity_lm_eval import prepare_lm_eval_tasks

        include, _ = prepare_lm_eval_tasks(work_dir, data_dir, list(TASKS))
        self.tm = TaskManager(include_path=str(include))

    def run(self, model: Any, tokenizer: Any, task: str, limit: int, batch_size: int) -> tuple[float, float, dict]:
        import lm_eval
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")
        timer = LoopTimer()
        lm.loglikelihood = timer.wrap(lm.loglikelihood)
        t = time.perf_counter()
        out = lm_eval.simple_evaluate(model=lm, tasks=["eh_" + task], limit=limit, log_samples=True,
                                      task_manager=self.tm, verbosity="ERROR")
        wall = time.perf_counter() - t
        items = {}
        for name, samples in out["samples"].items():
            subset = name[len("eh_mmlu_"):] if name.startswith("eh_mmlu_") else None
            for s in samples:
                items[(subset, int(s["doc_id"]))] = {m: float(s[m]) for m in ("acc", "acc_norm") if m in s}
        return wall, timer.seconds, items


class EvalharnessRunner:
    """evalharness.evaluate on the given model (its files written to a fresh folder each time)."""

    def __init__(self, data_dir: Path, work_dir: Path, options: Any = None) -> None:
        self.data_dir = data_dir
        self.work_dir = work_dir
        self.options = options
        self.n = 0

    def run(self, model: Any, tokenizer: Any, task: str, limit: int, batch_size: int) -> tuple[float, float, dict]:
        import evalharness
        from evalharness.backends.hf.backend import HFBackend

        self.n += 1
        out_dir = self.work_dir / f"eh-{self.n}"
        timer = LoopTimer()
        original = HFBackend.loglikelihood
        HFBackend.loglikelihood = timer.wrap(original)  # type: ignore[method-assign]
        try:
            t = time.perf_counter()
            evalharness.evaluate(model, tokenizer, [task], limit=limit, batch_size=batch_size, data_dir=self.data_dir,
                                 output_dir=out_dir, backend_options=self.options)
            wall = time.perf_counter() - t
        finally:
            HFBackend.loglikelihood = original  # type: ignore[method-assign]
        items = {}
        with open(out_dir / f"samples_{task}.jsonl", encoding="utf-8") as f:
            for line in f:
                s = json.loads(line)
                subset = s.get("subset") if task == "mmlu" else None
                items[(subset, int(s["doc_id"]))] = {m: float(v) for m, v in s["metrics"].items() if m in ("acc", "acc_norm")}
        return wall, timer.seconds, items


def agreement(a: dict, b: dict) -> tuple[int, int]:
    keys = set(a) & set(b)
    same = sum(1 for k in keys if a[k] and a[k] == {m: b[k][m] for m in a[k] if m in b[k]})
    return same, max(len(a), len(b))


# --------------------------------------------------------------------------- reporting
def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def print_config_table(name: str, dtype: str, bs: tuple[int, int], works: dict[str, Work], lm: dict[str, Timing],
                       eh: dict[str, Timing], agree: dict[str, tuple[int, int]], n_params: int, rate: float) -> dict:
    print(f"\n### {name}: lm-eval {dtype if name != 'defaults' else 'float32'} batch {bs[0]} vs evalharness {dtype} "
          f"batch {bs[1]}  (median of {len(next(iter(eh.values())).wall)} rounds; matmul rate {rate / 1e9:.0f} GFLOP/s)")
    head = ("| task | least-work tokens | lm-eval wall s | evalharness wall s | ratio wall | lm-eval loop s | "
            "evalharness loop s | ratio loop | lm-eval tok/s | evalharness tok/s | MFU lm-eval | MFU evalharness | agree |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    rows = {}
    tot = {"lw": 0.0, "ew": 0.0, "ll": 0.0, "el": 0.0, "least": 0, "same": 0, "n": 0}
    for task in works:
        w = works[task]
        lw, ew, ll, el = med(lm[task].wall), med(eh[task].wall), med(lm[task].loop), med(eh[task].loop)
        same, n = agree[task]
        flops = 2 * n_params * w.least
        rows[task] = {"least_tokens": w.least, "lm_eval_wall": lw, "evalharness_wall": ew, "lm_eval_loop": ll,
                      "evalharness_loop": el, "ratio_wall": lw / ew, "ratio_loop": ll / el,
                      "mfu_lm_eval": flops / lw / rate, "mfu_evalharness": flops / ew / rate, "agree": [same, n]}
        print(f"| {task} | {w.least} | {lw:.1f} | {ew:.1f} | {lw / ew:.2f}x | {ll:.1f} | {el:.1f} | {ll / el:.2f}x | "
              f"{w.least / lw:.0f} | {w.least / ew:.0f} | {flops / lw / rate:.0%} | {flops / ew / rate:.0%} | "
              f"{same}/{n} |")
        for k, v in (("lw", lw), ("ew", ew), ("ll", ll), ("el", el), ("least", w.least), ("same", same), ("n", n)):
            tot[k] += v
    flops = 2 * n_params * tot["least"]
    print(f"| **overall** | {tot['least']} | {tot['lw']:.1f} | {tot['ew']:.1f} | **{tot['lw'] / tot['ew']:.2f}x** | "
          f"{tot['ll']:.1f} | {tot['el']:.1f} | {tot['ll'] / tot['el']:.2f}x | {tot['least'] / tot['lw']:.0f} | "
          f"{tot['least'] / tot['ew']:.0f} | {flops / tot['lw'] / rate:.0%} | {flops / tot['ew'] / rate:.0%} | "
          f"{tot['same']}/{tot['n']} ({100 * tot['same'] / max(1, tot['n']):.2f}%) |")
    rows["overall"] = {"ratio_wall": tot["lw"] / tot["ew"], "ratio_loop": tot["ll"] / tot["el"],
                       "mfu_evalharness": flops / tot["ew"] / rate, "mfu_lm_eval": flops / tot["lw"] / rate,
                       "agree_pct": 100 * tot["same"] / max(1, tot["n"]), "lm_eval_wall": tot["lw"],
                       "evalharness_wall": tot["ew"]}
    return rows


# --------------------------------------------------------------------------- main benchmark
def main_benchmark(args: argparse.Namespace) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalharness.backends.hf.backend import HFBackend
    from evalharness.models.loading import default_dtype
    from evalharness.tasks import TaskRegistry
    from evalharness.tasks.task import Task

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    fp32 = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    # loaded as lm-eval and evalharness load it: `.to(bfloat16)` would also round RoPE's inv_freq buffer
    bf16 = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.bfloat16).eval()
    n_params = non_embedding_params(fp32)
    eh_default = default_dtype("cpu")
    print(f"model {args.model_dir}: {sum(p.numel() for p in fp32.parameters()) / 1e6:.1f}M parameters, "
          f"{n_params / 1e6:.1f}M non-embedding; evalharness's default dtype here: {eh_default}")

    tasks = [t for t in args.tasks.split(",") if t]
    limits = {t: (args.mmlu_limit if t == "mmlu" else args.limit) for t in tasks}
    registry = TaskRegistry()
    counter = HFBackend(fp32, tokenizer, options=plugin_options(args))  # counts tokens only
    works = {}
    for t in tasks:
        items = Task(registry.get(t), args.data_dir).build_items(limit=limits[t])
        works[t] = count_work(counter, [list(i.requests) for i in items], counter.max_length)
        w = works[t]
        print(f"  {t}: {w.items} items, {w.requests} requests, {w.least} least-work tokens, {w.rows} tokens in distinct "
              f"input rows ({w.rows / w.least:.2f}x), {w.scored} scored tokens")
    total = Work()
    for w in works.values():
        total.add(w)
    print(f"  all: {total.items} items, {total.requests} requests, {total.least} least-work tokens, "
          f"{total.rows} in distinct rows ({total.rows / total.least:.2f}x)")

    lm_runner = LmEvalRunner(args.work_dir, args.data_dir)
    eh_runner = EvalharnessRunner(args.data_dir, args.work_dir, plugin_options(args))
    models = {"float32": fp32, "bfloat16": bf16}
    # (config, dtype, lm-eval batch, evalharness batch); "defaults": lm-eval's batch 1 and the checkpoint's dtype
    # (dtype="auto": float32 here) against evalharness's defaults (batch 16, bfloat16 on this CPU).
    configs = [c for c in (("float32", "float32", args.batch_size, args.batch_size),
                           ("bfloat16", "bfloat16", args.batch_size, args.batch_size),
                           ("defaults", eh_default, 1, 16)) if c[0] in args.configs.split(",")]
    print("\nwarm-up (untimed)")
    for t in tasks:
        lm_runner.run(fp32, tokenizer, t, 2, args.batch_size)
        for dtype in sorted({c[1] for c in configs}):
            eh_runner.run(models[dtype], tokenizer, t, 2, args.batch_size)

    timings: dict[tuple[str, str], dict[str, Timing]] = {}
    agree: dict[tuple[str, str], tuple[int, int]] = {}
    eh_cache: dict[tuple[str, int, str, int], tuple[float, float, dict]] = {}
    reference: dict[str, dict] = {}  # lm-eval's float32 per-item metrics, per task (the latest round)
    vs_reference: dict[str, list[tuple[int, int, int]]] = {}
    for r in range(args.rounds):
        for cname, dtype, lm_bs, eh_bs in configs:
            lm_model = fp32 if cname == "defaults" else models[dtype]
            for t in tasks:
                lw, ll, li = lm_runner.run(lm_model, tokenizer, t, limits[t], lm_bs)
                key = (dtype, eh_bs, t, r)
                if key not in eh_cache:  # the defaults' evalharness side is the matched bfloat16 run of this round
                    eh_cache[key] = eh_runner.run(models[dtype], tokenizer, t, limits[t], eh_bs)
                ew, el, ei = eh_cache[key]
                timings.setdefault((cname, "lm"), {}).setdefault(t, Timing()).wall.append(lw)
                timings[(cname, "lm")][t].loop.append(ll)
                timings.setdefault((cname, "eh"), {}).setdefault(t, Timing()).wall.append(ew)
                timings[(cname, "eh")][t].loop.append(el)
                agree[(cname, t)] = agreement(li, ei)
                if cname == "float32":
                    reference[t] = li
                vs_fp32 = ""
                if dtype != "float32" and t in reference:  # how close each bfloat16 side is to lm-eval in float32
                    (a, n), (b, _) = agreement(reference[t], li), agreement(reference[t], ei)
                    vs_fp32 = f"  same as lm-eval float32: lm-eval {a}/{n}, evalharness {b}/{n}"
                    if cname == "bfloat16":
                        vs_reference.setdefault(t, []).append((a, b, n))
                print(f"round {r + 1} {cname:8s} {t:15s} lm-eval {lw:7.1f}s (loop {ll:7.1f}s)  evalharness {ew:6.1f}s "
                      f"(loop {el:6.1f}s)  agree {agree[(cname, t)][0]}/{agree[(cname, t)][1]}{vs_fp32}", flush=True)

    out: dict[str, Any] = {}
    if vs_reference:
        a = sum(x[0] for v in vs_reference.values() for x in v)
        b = sum(x[1] for v in vs_reference.values() for x in v)
        n = sum(x[2] for v in vs_reference.values() for x in v)
        print(f"\nbfloat16 items identical to lm-eval's float32 ones (all rounds): lm-eval {a}/{n} ({100 * a / n:.2f}%), "
              f"evalharness {b}/{n} ({100 * b / n:.2f}%)")
        out["bfloat16_vs_float32"] = {"lm_eval": [a, n], "evalharness": [b, n]}
    for cname, dtype, lm_bs, eh_bs in configs:
        rate = args.rates[dtype]
        out[cname] = print_config_table(cname, dtype, (lm_bs, eh_bs), works, timings[(cname, "lm")],
                                        timings[(cname, "eh")], {t: agree[(cname, t)] for t in tasks}, n_params, rate)
    return out


# --------------------------------------------------------------------------- MPT at 2k context
def build_random_mpt(tokenizer_dir: Path, seed: int = 0) -> tuple[Any, Any]:
    from transformers import AutoTokenizer, MptConfig, MptForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = MptConfig(d_model=512, n_heads=8, n_layers=6, expansion_ratio=4, max_seq_len=2048,
                       vocab_size=50432, attn_config={"alibi": True})
    torch.manual_seed(seed)
    model = MptForCausalLM(config).eval()
    return model, tokenizer


def mpt_benchmark(args: argparse.Namespace) -> dict:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from evalharness.backends.hf.backend import HFBackend
    from evalharness.tasks import TaskRegistry
    from evalharness.tasks.task import Task

    model32, tokenizer = build_random_mpt(args.tokenizer_dir)
    task = Task(TaskRegistry().get(args.mpt_task), args.data_dir)
    items = task.build_items(limit=args.mpt_items, num_fewshot=args.mpt_shots)
    requests = [r for it in items for r in it.requests]
    sizes = [len(it.requests) for it in items]
    n_params = non_embedding_params(model32)
    counter = HFBackend(model32, tokenizer, options=plugin_options(args))  # counts tokens only
    w = count_work(counter, [list(it.requests) for it in items], counter.max_length)
    lengths = [len(counter.encode(r.context)) for r in requests[::4]]
    print(f"\n## random MPT (6 layers, d_model 512, 8 heads, vocab 50432, max_seq_len 2048): {n_params / 1e6:.1f}M "
          f"non-embedding parameters; {args.mpt_task} {args.mpt_shots}-shot, {len(items)} items, contexts "
          f"{min(lengths)}-{max(lengths)} tokens; {w.least} least-work tokens, {w.rows} in distinct rows")

    def preds(lls: list[float]) -> list[int]:
        out, pos = [], 0
        for n in sizes:
            seg = lls[pos:pos + n]
            out.append(max(range(n), key=lambda i: (seg[i], -i)))
            pos += n
        return out

    results = {}
    for dtype_name in args.mpt_dtypes.split(","):
        model = model32 if dtype_name == "float32" else copy.deepcopy(model32).to(torch.bfloat16).eval()
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.mpt_batch_size, device="cpu", max_length=2048)
        instances = [Instance(request_type="loglikelihood", doc={}, arguments=(r.context, r.continuation), idx=i)
                     for i, r in enumerate(requests)]
        eh = HFBackend(model, tokenizer, batch_size=args.mpt_batch_size, options=plugin_options(args))
        lm_times, eh_times = [], []
        for rnd in range(args.rounds):
            t = time.perf_counter()
            lm_out = lm.loglikelihood(instances, disable_tqdm=True)
            lm_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            eh_out = eh.loglikelihood(requests)
            eh_times.append(time.perf_counter() - t)
            print(f"round {rnd + 1} mpt {dtype_name}: lm-eval {lm_times[-1]:.1f}s evalharness {eh_times[-1]:.1f}s", flush=True)
        pl, pe = preds([x[0] for x in lm_out]), preds([x.logprob for x in eh_out])
        same = sum(a == b for a, b in zip(pl, pe))
        maxdiff = max(abs(a[0] - b.logprob) for a, b in zip(lm_out, eh_out))
        lt, et = med(lm_times), med(eh_times)
        rate = args.rates[dtype_name]
        flops = 2 * n_params * w.least
        results[dtype_name] = {"lm_eval": lt, "evalharness": et, "ratio": lt / et, "agree": [same, len(items)],
                               "max_abs_logprob_diff": maxdiff, "mfu_evalharness": flops / et / rate,
                               "mfu_lm_eval": flops / lt / rate}
        print(f"| mpt {dtype_name} batch {args.mpt_batch_size} | {w.least} | lm-eval {lt:.1f} s | evalharness {et:.1f} s | "
              f"**{lt / et:.2f}x** | tok/s {w.least / lt:.0f} vs {w.least / et:.0f} | MFU {flops / lt / rate:.0%} vs "
              f"{flops / et / rate:.0%} | agree {same}/{len(items)} | max |Δ log-prob| {maxdiff:.2e} |")
    return results


def plugin_options(args: argparse.Namespace) -> Any:
    """The HF backend's options for --cpu-plugin on/off."""
    from evalharness.backends.hf.options import HFOptions

    return HFOptions(accelerator="auto" if args.cpu_plugin == "on" else "none")


# --------------------------------------------------------------------------- levers, one at a time
# each lever: HFOptions fields, or the CPU plugin's parts kept ("only"), or a private backend attribute ("attrs")
LEVERS: dict[str, dict[str, Any]] = {
    "all levers": {},
    "no packing (a row per choice)": {"options": {"pack": False}},
    "no padding-aware batching (plain batches of --batch-size)": {"options": {"batch_overhead_tokens": None}},
    "padding mask kept": {"options": {"mask_free": False}},
    "full LM head at every position": {"attrs": {"_split_head": False}},
    "log-probs read from the whole batch's logits at once": {"options": {"read_chunk": 1 << 30}},
    "shared prefix not run once": {"options": {"share_prefix": False}},
    "CPU plugin: no fused kernels": {"only": ("packed_linear", "last_layer")},
    "CPU plugin: last decoder layer at every position": {"only": ("fused_ops", "packed_linear")},
    "CPU plugin: linear weights not packed (F.linear)": {"only": ("fused_ops", "last_layer")},
    "CPU plugin off (core HF backend only)": {"options": {"accelerator": "none"}},
}


def _backend_with(model: Any, tokenizer: Any, batch_size: int, changes: dict[str, Any]) -> Any:
    from evalharness.backends.hf.backend import HFBackend
    from evalharness.backends.hf.options import HFOptions
    from evalharness.backends.hf_cpu import accelerator_for

    accelerator = None
    if "only" in changes:
        accelerator = accelerator_for(model, only=changes["only"])
        assert not isinstance(accelerator, str), accelerator
    backend = HFBackend(model, tokenizer, batch_size=batch_size, options=HFOptions(**changes.get("options", {})),
                        accelerator=accelerator)
    for k, v in changes.get("attrs", {}).items():  # benchmark-only switches of private levers
        setattr(backend, k, v)
    return backend


def lever_benchmark(args: argparse.Namespace) -> dict:
    """evalharness's log-likelihood loop on the benchmark's items with each lever turned off in turn."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evalharness.tasks import TaskRegistry
    from evalharness.tasks.task import Task

    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    registry = TaskRegistry()
    requests = []
    for t in args.tasks.split(","):
        limit = args.mmlu_limit if t == "mmlu" else args.limit
        items = Task(registry.get(t), args.data_dir).build_items(limit=limit, num_fewshot=args.lever_shots)
        requests += [r for it in items for r in it.requests]
    out: dict[str, Any] = {}
    wanted = [w for w in (args.lever_only or "").split(",") if w]
    levers_run = {k: v for k, v in LEVERS.items() if not v or not wanted or any(w in k for w in wanted)}
    models: list[tuple[str, Any, dict]] = [
        ("smollm2 " + d, AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=getattr(torch, d)).eval(), levers_run)
        for d in args.lever_dtypes.split(",")]
    if args.mpt or args.mpt_only:
        mpt, mtok = build_random_mpt(args.tokenizer_dir)
        task = Task(registry.get(args.mpt_task), args.data_dir)
        mreq = [r for it in task.build_items(limit=args.mpt_items, num_fewshot=args.mpt_shots) for r in it.requests]
        levers = {"all levers": {}, "HF eager MPT attention": {"attrs": {"_fast_mpt": False}},
                  "no packing (a row per choice)": {"options": {"pack": False}},
                  "shared prefix not run once": {"options": {"share_prefix": False}}}
        for d in args.lever_dtypes.split(","):
            models.append(("mpt " + d, (mpt if d == "float32" else copy.deepcopy(mpt).to(torch.bfloat16), mtok, mreq), levers))
    print("\n## levers (evalharness log-likelihood loop only, median of rounds)")
    for name, model, levers in models:
        if isinstance(model, tuple):
            model, tok, reqs = model
            bs = args.mpt_batch_size
        else:
            tok, reqs, bs = tokenizer, requests, args.batch_size
        times: dict[str, list[float]] = {k: [] for k in levers}
        _backend_with(model, tok, bs, {}).loglikelihood(reqs[:16])  # warm-up
        for _ in range(args.rounds):
            for lever, changes in levers.items():
                backend = _backend_with(model, tok, bs, changes)
                t = time.perf_counter()
                backend.loglikelihood(reqs)
                times[lever].append(time.perf_counter() - t)
        base = med(times["all levers"])
        out[name] = {k: med(v) for k, v in times.items()}
        for lever, ts in times.items():
            print(f"| {name} | {lever} | {med(ts):.1f} s | {med(ts) / base:.2f}x |", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, help="local HF checkpoint (default: the embedded model's cached copy)")
    p.add_argument("--data-dir", type=Path, default=os.environ.get("EVALHARNESS_DATA_DIR"))
    p.add_argument("--tokenizer-dir", type=Path, default=HERE.parent.parent / "shared" / "tokenizers" / "gpt-neox-20b")
    p.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "evalharness-speed")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--limit", type=int, default=200, help="items of lambada_openai, piqa, hellaswag (default 200)")
    p.add_argument("--mmlu-limit", type=int, default=20, help="items per MMLU subject (default 20)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--configs", default=None,
                   help="default: float32,bfloat16,defaults where the CPU is fast at bf16, else float32,defaults")
    p.add_argument("--mpt", action="store_true", help="also the random MPT at 2k context")
    p.add_argument("--mpt-only", action="store_true")
    p.add_argument("--mpt-task", default="hellaswag", help="task of the MPT runs (default hellaswag)")
    p.add_argument("--mpt-items", type=int, default=4, help="items of the MPT runs (per subject for MMLU)")
    p.add_argument("--mpt-shots", type=int, default=20)
    p.add_argument("--mpt-batch-size", type=int, default=4)
    p.add_argument("--mpt-dtypes", default=None, help="default: float32,bfloat16 (float32 where bf16 is slow)")
    p.add_argument("--levers", action="store_true", help="only evalharness, each speed lever turned off in turn")
    p.add_argument("--lever-dtypes", default=None, help="default: float32,bfloat16 (float32 where bf16 is slow)")
    p.add_argument("--lever-shots", type=int, default=None,
                   help="few-shot examples per item in --levers (default: each task's own; MMLU's 5 dev rows share a prefix)")
    p.add_argument("--lever-only", default=None,
                   help="with --levers: only the levers whose names contain one of these comma-separated words")
    p.add_argument("--cpu-plugin", choices=["on", "off"], default="on",
                   help="evalharness with its CPU plugin (default) or the core HF backend alone")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    if args.data_dir is None:
        p.error("--data-dir is required (or set EVALHARNESS_DATA_DIR)")
    args.data_dir = args.data_dir.resolve()
    if args.model_dir is None:
        from evalharness.models.embedded import embedded_model_dir

        args.model_dir = embedded_model_dir()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    from evalharness.backends.hf_cpu.cpu_allocator import keep_freed_memory
    from evalharness.models.loading import default_dtype

    # CPUs without AVX512-BF16/AMX multiply bf16 matrices hundreds of times slower: no bf16 runs by default there
    fast_bf16 = default_dtype("cpu") == "bfloat16"
    both = "float32,bfloat16" if fast_bf16 else "float32"
    args.configs = args.configs or both + ",defaults"
    args.mpt_dtypes = args.mpt_dtypes or both
    args.lever_dtypes = args.lever_dtypes or both
    # with the plugin: applied here so that both tools run with it (it is per process)
    allocator = keep_freed_memory() if args.cpu_plugin == "on" else False
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    # the dtypes whose matmul rate an MFU figure needs: those asked for, evalharness's default for the defaults
    # configuration, float32 always
    used = {d for spec in (args.configs, args.mpt_dtypes, args.lever_dtypes) for d in spec.split(",")} | {"float32"}
    if "defaults" in args.configs.split(","):
        used.add(default_dtype("cpu"))
    dtypes = [d for d in ("float32", "bfloat16") if d in used]
    rates = {d: matmul_rate(getattr(torch, d)) for d in dtypes}
    args.rates = rates
    print(f"machine: {cpu}, {os.cpu_count()} cores, {args.threads} torch threads; python {platform.python_version()}, "
          f"torch {torch.__version__}; evalharness CPU plugin {args.cpu_plugin}; glibc malloc keeps freed memory "
          f"(both tools): {allocator}")
    print("dense matmul (2048^3, best of torch.mm and oneDNN packed): " + ", ".join(f"{d} {r / 1e9:.0f} GFLOP/s" for d, r in rates.items())
          + ("" if fast_bf16 else " (no AVX512-BF16/AMX: bfloat16 not run unless asked for)"))
    out: dict[str, Any] = {"rates": rates, "threads": args.threads}
    if args.levers:
        out["levers"] = lever_benchmark(args)
    else:
        if not args.mpt_only:
            out["smollm2"] = main_benchmark(args)
        if args.mpt or args.mpt_only:
            out["mpt"] = mpt_benchmark(args)
    after = {d: matmul_rate(getattr(torch, d)) for d in dtypes}
    print("\ndense matmul again at the end: " + ", ".join(f"{d} {r / 1e9:.0f}" for d, r in after.items())
          + " GFLOP/s (a drop means the machine got busier during the run)")
    out["rates_after"] = after
    if args.json:
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
