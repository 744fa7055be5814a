#!/usr/bin/env python3
"""GPU check: run the CUDA paths that the CPU test machines never run, and print each check's verdict and figures.

On a machine with one or more NVIDIA GPUs (meant to finish within 10 minutes; everything under --work-dir):

 1. scoring-bf16    the embedded model (SmolLM2-135M) scores piqa, hellaswag and lambada_openai in bfloat16 on
                    cuda:0; against float32 on the CPU, the predictions agree on >= 99% of items
 2. generation      the same runs' triviaqa_sm_sub (greedy): >= 90% of the completions identical
 3. mpt-attention   a random MPT (GPT-NeoX tokenizer) on cuda:0: evalharness's SDPA forward against transformers'
                    eager forward in float32 (max |delta log-prob| <= 1e-3); in bfloat16 its error against float32
                    at most 1.5x eager's own bfloat16 error; flash-attn's ALiBi path (when flash_attn is installed) too
 4. mpt-scoring     that MPT through `evalharness run` (packed rows, shared prefixes) in bfloat16 on cuda:0 against
                    float32 on the CPU: predictions agree on >= 99% of items
 5. nccl-dp         (>= 2 GPUs) `--nproc N --no-fsdp --device cuda` against the one-GPU run: >= 99% agreement and
                    mean |delta log-prob| per token <= 0.01
 6. nccl-fsdp       (>= 2 GPUs) the same with `--fsdp`

Figures: tokens/s (input tokens scored, or generated), peak GPU memory per process. On a machine without a GPU
it says so in one line. Exit status: 0 every check passed (or no GPU), 1 a check failed, 2 a run did not run.

  python benchmarks/gpu_check.py --work-dir /tmp/gpu-check        # or scripts/gpu_check.sh
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

SCORING_TASKS = ("piqa", "hellaswag", "lambada_openai")
GENERATION_TASK = "triviaqa_sm_sub"
MPT_TASKS = ("piqa", "lambada_openai")
LOCAL_TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "tokenizers" / "gpt-neox-20b"

AGREEMENT_BF16 = 0.99  # bf16 against fp32: share of items whose prediction (choice, greedy flags) is the same
AGREEMENT_GENERATION = 0.90  # bf16 against fp32: share of identical greedy completions
AGREEMENT_SAME_DTYPE = 0.99  # several GPUs against one, both bf16
DELTA_SAME_DTYPE = 0.01  # mean |delta log-prob| per token, several GPUs against one
MPT_FP32_TOLERANCE = 1e-3  # max |delta log-prob|, SDPA against eager, float32
MPT_BF16_RATIO = 1.5  # our bf16 error may be at most this times transformers' eager bf16 error (against fp32)


@dataclass
class Verdict:
    """One check's outcome: passed (True/False) or skipped (None), its figures, and why when it failed or skipped."""

    name: str
    passed: bool | None
    figures: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    def line(self) -> str:
        word = {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]
        figures = "  ".join(f"{k}={_show(v)}" for k, v in self.figures.items())
        return f"{word}  {self.name:<14} {figures}" + (f"  ({self.why})" if self.why else "")


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "/".join(_show(v) for v in value) or "n/a"
    return str(value)


# --- where the GPUs are ------------------------------------------------------------------------------------------


def gpu_count() -> tuple[int, str]:
    """(number of CUDA devices torch sees, why there are none: '' when there are some)."""
    import torch

    if torch.version.cuda is None:
        return 0, f"torch {torch.__version__} is built without CUDA"
    if not torch.cuda.is_available():
        return 0, f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable NVIDIA GPU or driver"
    return torch.cuda.device_count(), ""


def no_gpu_line(why: str) -> str:
    return f"gpu_check: no NVIDIA GPU on this machine ({why}); nothing to check"


# --- comparing two runs' samples ------------------------------------------------------------------------------------


@dataclass
class Agreement:
    """Two runs of the same items: how many agree, and how far their log-probabilities are apart."""

    items: int = 0
    same: int = 0
    max_delta: float = 0.0  # largest |delta log-prob| of a request
    deltas_per_token: list[float] = field(default_factory=list)  # |delta log-prob| / continuation tokens, per request
    clear_flips: int = 0  # multiple-choice items whose prediction changed although the reference's best led by > 1 nat

    @property
    def fraction(self) -> float:
        return self.same / self.items if self.items else 1.0

    @property
    def mean_delta_per_token(self) -> float:
        return statistics.fmean(self.deltas_per_token) if self.deltas_per_token else 0.0


def read_samples(folder: Path, task: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / f"samples_{task}.jsonl").read_text().splitlines()]


def _outcome(record: dict[str, Any]) -> Any:
    """What must agree: the completions of a generation item, else its predictions and greedy flags."""
    if "completions" in record:
        return record["completions"]
    return record.get("predictions"), record.get("is_greedy")


def _margin(record: dict[str, Any]) -> float:
    """How far the best choice leads the second (nats); 0 where there is no second choice (one continuation, or
    generation: how near its greedy path came to another is not recorded)."""
    logprobs = sorted(record.get("logprobs") or [], reverse=True)
    return logprobs[0] - logprobs[1] if len(logprobs) > 1 else 0.0


def compare(reference: Iterable[dict[str, Any]], other: Iterable[dict[str, Any]]) -> Agreement:
    """Item by item (matched on subset and doc_id, which must be the same in both)."""
    out = Agreement()
    for a, b in zip(reference, other, strict=True):
        if (a["subset"], a["doc_id"]) != (b["subset"], b["doc_id"]):
            raise ValueError(f"the runs hold different items: {a['subset'], a['doc_id']} and {b['subset'], b['doc_id']}")
        out.items += 1
        same = _outcome(a) == _outcome(b)
        out.same += same
        for x, y, n in zip(a.get("logprobs") or [], b.get("logprobs") or [], a.get("num_tokens") or []):
            out.max_delta = max(out.max_delta, abs(x - y))
            out.deltas_per_token.append(abs(x - y) / max(n, 1))
        if not same and _margin(a) > 1.0:
            out.clear_flips += 1
    return out


def compare_runs(reference: Path, other: Path, tasks: Iterable[str]) -> Agreement:
    total = Agreement()
    for task in tasks:
        part = compare(read_samples(reference, task), read_samples(other, task))
        total.items += part.items
        total.same += part.same
        total.max_delta = max(total.max_delta, part.max_delta)
        total.deltas_per_token += part.deltas_per_token
        total.clear_flips += part.clear_flips
    return total


def agreement_verdict(name: str, agreement: Agreement, *, min_fraction: float, max_mean_delta: float | None = None,
                      figures: dict[str, Any] | None = None) -> Verdict:
    """PASS when at least `min_fraction` of the items agree (and the mean per-token delta is small enough)."""
    shown = {"items": agreement.items, "agree": round(agreement.fraction, 4), "max_dlogp": agreement.max_delta,
             "mean_dlogp_per_token": agreement.mean_delta_per_token, "clear_flips": agreement.clear_flips,
             **(figures or {})}
    problems = []
    if agreement.items == 0:
        problems.append("no items compared")
    if agreement.fraction < min_fraction:
        problems.append(f"agreement {agreement.fraction:.4f} < {min_fraction}")
    if max_mean_delta is not None and agreement.mean_delta_per_token > max_mean_delta:
        problems.append(f"mean |dlogp| per token {agreement.mean_delta_per_token:.4g} > {max_mean_delta}")
    return Verdict(name, not problems, shown, "; ".join(problems))


# --- runs of the command line ---------------------------------------------------------------------------------------


@dataclass
class Run:
    folder: Path
    seconds: float  # the whole command
    results: dict[str, Any]

    @property
    def peak_gpu_mb(self) -> list[float]:
        return (self.results.get("distributed") or {}).get("peak_cuda_mb_per_rank") or []


class RunFailed(Exception):
    """A command of the check did not finish; names its log."""


def evalharness_run(work: Path, name: str, model: str, tasks: Iterable[str], limit: int, extra: list[str]) -> Run:
    out = work / name
    cmd = [sys.executable, "-m", "evalharness", "run", "--model", model, "--tasks", ",".join(tasks), "--limit",
           str(limit), "--no-cache", "--output-dir", str(out), *extra]
    log = work / f"{name}.log"
    print(f"[{name}] {' '.join(cmd)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    if code != 0:
        raise RunFailed(f"{name}: exit status {code}; see {log}")
    return Run(out, time.perf_counter() - started, json.loads((out / "results.json").read_text()))


def tokens_per_second(run: Run, tasks: Iterable[str], tokenizer: Any, *, generated: bool = False) -> float:
    """Input tokens scored (context and continuation of every request) per second of evaluation, or with
    `generated` the tokens generated per second of the tasks' own time."""
    total, seconds = 0, 0.0
    for task in tasks:
        seconds += run.results["tasks"][task]["seconds"]
        for record in read_samples(run.folder, task):
            if generated:
                total += sum(record["num_tokens"])
            else:
                total += sum(len(tokenizer(r["context"] + r["continuation"]).input_ids) for r in record["requests"])
    return total / seconds if seconds else 0.0


# --- MPT attention on CUDA, in process ------------------------------------------------------------------------------


def build_random_mpt(folder: Path, tokenizer_dir: str, *, n_layers: int = 4, d_model: int = 256) -> Path:
    """A random MptForCausalLM (ALiBi) with the GPT-NeoX tokenizer, saved to `folder` (as tests/support builds it,
    larger); weights N(0, 0.2) so that choices differ clearly."""
    import torch
    from transformers import AutoTokenizer, MptConfig, MptForCausalLM

    if (folder / "config.json").exists():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = MptConfig(d_model=d_model, n_heads=8, n_layers=n_layers, expansion_ratio=2, max_seq_len=2048,
                       vocab_size=len(tokenizer), attn_config={"alibi": True})
    torch.manual_seed(0)
    model = MptForCausalLM(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.2)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def next_token_logprobs(model: Any, input_ids: Any, forward: str) -> Any:
    """Log-probabilities (float32) of every next token, [B, T-1], in the model's dtype, by `forward`: 'eager'
    (transformers' MPT), 'sdpa' (evalharness's, kept off flash-attn by explicit positions) or 'flash'
    (evalharness's on plain rows: flash-attn when installed)."""
    import torch

    from evalharness.backends.hf.mpt_attention import mpt_hidden_states

    with torch.no_grad():
        if forward == "eager":
            logits = model(input_ids).logits
        else:
            positions = None
            if forward == "sdpa":
                positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
            logits = model.lm_head(mpt_hidden_states(model, input_ids, positions))
        logp = torch.log_softmax(logits.float(), dim=-1)[:, :-1]
        return logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def check_mpt_attention(mpt_dir: Path, device: str = "cuda:0", batch: int = 8, length: int = 512) -> Verdict:
    """Check 3 (see the top of this file); `device` cpu runs the same comparisons on the CPU (the tests do)."""
    import importlib.util

    import torch
    from transformers import MptForCausalLM

    fp32 = MptForCausalLM.from_pretrained(mpt_dir, attn_implementation="eager").to(device).eval()
    bf16 = MptForCausalLM.from_pretrained(mpt_dir, attn_implementation="eager", dtype=torch.bfloat16).to(device).eval()
    torch.manual_seed(1)
    ids = torch.randint(0, fp32.config.vocab_size, (batch, length), device=device)
    reference = next_token_logprobs(fp32, ids, "eager")
    fp32_delta = (next_token_logprobs(fp32, ids, "sdpa") - reference).abs().max().item()
    eager_err = (next_token_logprobs(bf16, ids, "eager") - reference).abs().mean().item()
    sdpa, seconds = _timed(lambda: next_token_logprobs(bf16, ids, "sdpa"))
    sdpa_err = (sdpa - reference).abs().mean().item()
    figures: dict[str, Any] = {"fp32_max_dlogp": fp32_delta, "bf16_err_eager": eager_err, "bf16_err_sdpa": sdpa_err,
                               "sdpa_tokens_per_s": batch * length / seconds}
    problems = []
    if fp32_delta > MPT_FP32_TOLERANCE:
        problems.append(f"SDPA against eager in float32: {fp32_delta:.3g} > {MPT_FP32_TOLERANCE}")
    if sdpa_err > MPT_BF16_RATIO * eager_err:
        problems.append(f"SDPA bf16 error {sdpa_err:.3g} > {MPT_BF16_RATIO} x eager's {eager_err:.3g}")
    if importlib.util.find_spec("flash_attn") is None:
        figures["flash_attn"] = "not installed"
    else:
        flash, seconds = _timed(lambda: next_token_logprobs(bf16, ids, "flash"))
        flash_err = (flash - reference).abs().mean().item()
        figures.update(bf16_err_flash=flash_err, flash_tokens_per_s=batch * length / seconds)
        if flash_err > MPT_BF16_RATIO * eager_err:
            problems.append(f"flash-attn bf16 error {flash_err:.3g} > {MPT_BF16_RATIO} x eager's {eager_err:.3g}")
    if torch.device(device).type == "cuda":
        figures["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return Verdict("mpt-attention", not problems, figures, "; ".join(problems))


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    fn()  # warm-up (kernel choice, allocations)
    sync()
    started = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - started


# --- the checks -----------------------------------------------------------------------------------------------------


def run_checks(args: argparse.Namespace, gpus: int) -> list[Verdict]:
    """Every check on `gpus` devices of type args.device (cuda; cpu: the script testing itself)."""
    from transformers import AutoTokenizer

    work: Path = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    verdicts: list[Verdict] = []
    tasks = (*SCORING_TASKS, GENERATION_TASK)
    common = ["--batch-size", str(args.batch_size)]
    cpu = evalharness_run(work, "cpu-fp32", args.model, tasks, args.limit, [*common, "--device", "cpu", "--dtype", "float32"])
    gpu = evalharness_run(work, "gpu-bf16", args.model, tasks, args.limit, [*common, "--device", args.device, "--dtype", "bfloat16"])
    tokenizer = AutoTokenizer.from_pretrained(cpu.results["model"]["tokenizer"])  # where the run took it from
    verdicts.append(agreement_verdict(
        "scoring-bf16", compare_runs(cpu.folder, gpu.folder, SCORING_TASKS), min_fraction=AGREEMENT_BF16,
        figures={"gpu_tokens_per_s": tokens_per_second(gpu, SCORING_TASKS, tokenizer),
                 "cpu_tokens_per_s": tokens_per_second(cpu, SCORING_TASKS, tokenizer), "peak_gpu_mb": gpu.peak_gpu_mb}))
    verdicts.append(agreement_verdict(
        "generation", compare_runs(cpu.folder, gpu.folder, [GENERATION_TASK]), min_fraction=AGREEMENT_GENERATION,
        figures={"gpu_generated_tokens_per_s": tokens_per_second(gpu, [GENERATION_TASK], tokenizer, generated=True)}))

    mpt = build_random_mpt(work / "random-mpt", args.tokenizer)
    on_gpu = args.device == "cuda"
    verdicts.append(check_mpt_attention(mpt, "cuda:0", 8, 512) if on_gpu else check_mpt_attention(mpt, "cpu", 2, 64))
    mpt_cpu = evalharness_run(work, "mpt-cpu-fp32", str(mpt), MPT_TASKS, args.limit,
                              [*common, "--device", "cpu", "--dtype", "float32"])
    mpt_gpu = evalharness_run(work, "mpt-gpu-bf16", str(mpt), MPT_TASKS, args.limit,
                              [*common, "--device", args.device, "--dtype", "bfloat16"])
    verdicts.append(agreement_verdict(
        "mpt-scoring", compare_runs(mpt_cpu.folder, mpt_gpu.folder, MPT_TASKS), min_fraction=AGREEMENT_BF16,
        figures={"gpu_tokens_per_s": tokens_per_second(mpt_gpu, MPT_TASKS, AutoTokenizer.from_pretrained(mpt)),
                 "peak_gpu_mb": mpt_gpu.peak_gpu_mb}))

    for name, flag in (("nccl-dp", "--no-fsdp"), ("nccl-fsdp", "--fsdp")):
        if gpus < 2:
            verdicts.append(Verdict(name, None, why=f"needs 2 or more GPUs, this machine has {gpus}"))
            continue
        many = evalharness_run(work, f"gpu-bf16-{name}", args.model, tasks, args.limit,
                               [*common, "--device", args.device, "--dtype", "bfloat16", "--nproc", str(gpus), flag])
        verdicts.append(agreement_verdict(
            name, compare_runs(gpu.folder, many.folder, tasks), min_fraction=AGREEMENT_SAME_DTYPE,
            max_mean_delta=DELTA_SAME_DTYPE,
            figures={"processes": gpus, "seconds": round(many.seconds, 1), "one_gpu_seconds": round(gpu.seconds, 1),
                     "peak_gpu_mb": many.peak_gpu_mb}))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work-dir", type=Path, default=Path("gpu-check"), help="where the runs' folders and logs go")
    p.add_argument("--model", default="smollm2-135m", help="the model of the scoring, generation and NCCL checks")
    p.add_argument("--tokenizer", default=str(LOCAL_TOKENIZER) if LOCAL_TOKENIZER.is_dir() else "EleutherAI/gpt-neox-20b",
                   help="the GPT-NeoX-20B tokenizer (a folder or a Hub id) for the random MPT")
    p.add_argument("--limit", type=int, default=200, help="items per task")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="cpu: run every check with the CPU in the GPU's place (bfloat16, gloo, 2 processes), which tests "
                        "this script, not the GPU paths")
    args = p.parse_args(argv)
    gpus, why = gpu_count() if args.device == "cuda" else (2, "")
    if not gpus:
        print(no_gpu_line(why))
        return 0
    try:
        verdicts = run_checks(args, gpus)
    except RunFailed as exc:
        print(f"gpu_check: a run failed: {exc}")
        return 2
    import torch

    where = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU (the script testing itself)"
    print(f"\ngpu_check: {gpus} x {where}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    for v in verdicts:
        print(v.line())
    return 1 if any(v.passed is False for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
