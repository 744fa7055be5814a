#!/usr/bin/env python3
"""Train a small random MPT with Composer for a few hundred batches, evaluating ICL tasks with the callback.

Usage (in the Composer environment, .venv-composer):
    python scripts/train_curves_example.py OUT [--batches 240] [--interval 40] [--limit 100]

The model (2 layers, d_model 96, the GPT-NeoX-20B tokenizer) learns from LAMBADA's passages after the first
1000, so the evaluated items (the first `--limit` of each task) are never trained on. The callback writes each
evaluation to OUT/evals/ep0-ba<B>/ (run folders for `evalharness report`); the Trainer saves checkpoints to
OUT/checkpoints/ at every second evaluation (for `evalharness run --model composer:...`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from composer import Trainer
from composer.models import HuggingFaceModel
from torch.utils.data import DataLoader, Dataset
from transformers import AutoTokenizer, MptConfig, MptForCausalLM

from evalharness.data import resolve_data_dir
from evalharness.integrations.composer import ICLEvaluator

TASKS = "piqa,lambada_openai,arc_easy"
HELD_OUT = 1000  # LAMBADA passages never trained on (the evaluated ones are among the first)


class Chunks(Dataset):
    """Token chunks of `seq_len` from texts joined with the end-of-text token."""

    def __init__(self, texts: list[str], tokenizer, seq_len: int) -> None:
        ids: list[int] = []
        for text in texts:
            ids += tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
        n = len(ids) // seq_len
        self.tokens = torch.tensor(ids[: n * seq_len]).view(n, seq_len)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokens[i], "labels": self.tokens[i]}


def lambada_texts(data_dir: Path) -> list[str]:
    lines = (data_dir / "llm-foundry" / "lambada_openai.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines if line.strip()]
    return [d["context"] + " " + d["continuation"] for d in docs[HELD_OUT:]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tokenizer", default=os.environ.get("EVALHARNESS_TOKENIZER", "EleutherAI/gpt-neox-20b"))
    ap.add_argument("--batches", type=int, default=240)
    ap.add_argument("--interval", type=int, default=40, help="evaluate every this many batches")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args()

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    data = Chunks(lambada_texts(resolve_data_dir(None)), tokenizer, args.seq_len)
    torch.manual_seed(0)
    config = MptConfig(d_model=96, n_heads=4, n_layers=2, expansion_ratio=4, max_seq_len=512,
                       vocab_size=len(tokenizer), attn_config={"alibi": True})
    model = HuggingFaceModel(MptForCausalLM(config), tokenizer=tokenizer, use_logits=True)
    icl = ICLEvaluator(TASKS, f"{args.interval}ba", limit=args.limit, num_fewshot=0, batch_size=32,
                       output_dir=args.out / "evals")
    trainer = Trainer(
        model=model, train_dataloader=DataLoader(data, batch_size=args.batch_size, shuffle=True,
                                                 generator=torch.Generator().manual_seed(0)),
        max_duration=f"{args.batches}ba", optimizers=torch.optim.AdamW(model.parameters(), lr=args.lr),
        callbacks=[icl], seed=17, device="cpu", run_name="tiny-mpt-lambada", progress_bar=False,
        log_to_console=True, console_log_interval=f"{args.interval}ba",
        save_folder=str(args.out / "checkpoints"), save_interval=f"{2 * args.interval}ba", save_overwrite=True,
    )
    trainer.fit()
    trainer.close()
    print(f"{len(data)} training sequences; evaluations: {', '.join(str(p) for p in icl.written)}")


if __name__ == "__main__":
    main()
