"""Time HF's eager MPT forward against evalharness.backends.hf.mpt_attention.mpt_hidden_states (not a test).

A random MptForCausalLM (6 layers, d_model 512, 8 heads, vocab 50432, max_seq_len 2048); final hidden states
only (no lm_head) for both. Peak RSS is sampled from /proc/self/status during each call (growth above the RSS
before it). Run pinned, e.g. `OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/mpt_attention_speed.py`.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Callable

import torch
from transformers import MptConfig, MptForCausalLM

from evalharness.backends.hf.mpt_attention import mpt_hidden_states


def rss_mb() -> float:
    """Current resident set size in MB (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, float, torch.Tensor]:
    """(best seconds, peak RSS growth in MB, last output) over `repeats` calls after one warm-up."""
    out = fn()
    best, peak_growth = float("inf"), 0.0
    for _ in range(repeats):
        del out
        base, peak, done = rss_mb(), [0.0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb())
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
        done.set()
        sampler.join()
        peak_growth = max(peak_growth, max(peak[0], rss_mb()) - base)
    return best, peak_growth, out


def build_model() -> MptForCausalLM:
    config = MptConfig(d_model=512, n_heads=8, n_layers=6, vocab_size=50432, max_seq_len=2048)
    torch.manual_seed(0)
    return MptForCausalLM(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shapes", default="2x2048,8x512", help="comma-separated BATCHxTOKENS")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model()
    print(f"threads={args.threads} torch={torch.__version__} model: 6 layers, d_model 512, 8 heads, vocab 50432")
    print(f"{'dtype':9} {'shape':8} {'HF eager s':>10} {'fast s':>8} {'speedup':>8} "
          f"{'HF +RSS MB':>10} {'fast +RSS MB':>12} {'max|diff|/max|h|':>16}")
    for dtype_name in args.dtypes.split(","):
        model.to(getattr(torch, dtype_name))  # in place: float32 first, then bfloat16
        for shape in args.shapes.split(","):
            batch, tokens = map(int, shape.split("x"))
            ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(1))
            with torch.inference_mode():
                hf_s, hf_mb, hf_out = measure(lambda: model.transformer(ids).last_hidden_state, args.repeats)
                fast_s, fast_mb, fast_out = measure(lambda: mpt_hidden_states(model, ids), args.repeats)
            diff = ((fast_out.float() - hf_out.float()).abs().max() / hf_out.float().abs().max()).item()
            print(f"{dtype_name:9} {shape:8} {hf_s:10.3f} {fast_s:8.3f} {hf_s / fast_s:7.2f}x "
                  f"{hf_mb:10.0f} {fast_mb:12.0f} {diff:16.2e}", flush=True)
            del hf_out, fast_out


if __name__ == "__main__":
    main()
