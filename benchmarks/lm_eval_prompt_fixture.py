#!/usr/bin/env python3
"""Record lm-evaluation-harness 0.4.13's chat-formatted prompts and token ids, for evalharness's parity tests.

Run with lm-eval's own environment (benchmarks/requirements-lm-eval.txt), offline:

    <lm-eval venv>/bin/python benchmarks/lm_eval_prompt_fixture.py --model-dir <embedded model folder> \\
        --data-dir ../shared/data [--gemma-dir <converted Gemma 3 folder>]

It writes into tests/fixtures/lm_eval_0.4.13/ (override with --out):

- chat_prompts.json: for cases of (task, shots, --apply_chat_template, --fewshot_as_multiturn,
  --system_instruction), the requests lm-eval's ConfigurableTask builds (fewshot_context + construct_requests,
  rendered with HFLM.apply_chat_template on the embedded SmolLM2-135M-Instruct tokenizer, which ships a chat
  template), and for some cases the token ids lm-eval's HFLM gives them (loglikelihood: (context, continuation)
  ids as _loglikelihood_tokens receives them; generation: tok_batch_encode's ids). The task configurations mirror
  evalharness's task YAMLs (as benchmarks/lm_eval_tasks/ does); the shots are the documents evalharness draws
  (MMLU: the subject's first dev rows; the others: random.Random(f"{seed}:{subset}:{doc_id}").sample of the other
  rows of the pool, evalharness/tasks/fewshot.py), handed to lm-eval's fewshot_context in place of its sampler's
  draw, so the comparison is about rendering, not about which shots are drawn.
- bos_token_ids.json + tiny_gemma_tokenizer/: a small Gemma tokenizer (BPE over characters with a few merges, BOS
  added by default as real Gemma tokenizers do) and the token ids lm-eval's HFLM gives a set of requests with
  add_bos_token unset, True and False, on a tiny random gemma3_text model built here (not saved).

With --gemma-dir, the same BOS check is printed for a real Gemma 3 tokenizer (nothing is written for it).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "lm_eval_0.4.13"
SEED = 1234  # evalharness's default fewshot_seed
SYSTEM = "You are a careful assistant. Answer with the single best option."

# (context, continuation) pairs for the BOS check: a trailing space that moves, a merge across the boundary, an
# empty context, a context that already starts with the BOS text.
BOS_PAIRS = [
    ["Question: what is it?\nAnswer:", " the sun"],
    ["the cat sat on the ", "mat"],
    ["the ca", "t"],
    ["", "the cat"],
    ["<bos>Question: why?\nAnswer:", " because"],
]
BOS_PROMPTS = ["Question: what is it?\nAnswer:", "<bos>the cat"]


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def mmlu_rows(path: Path, subject: str) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return [{"question": q, "choices": [a, b, c, d], "answer": "ABCD".index(ans.strip()), "subject": subject}
                for q, a, b, c, d, ans in csv.reader(f)]


def evalharness_shots(pool: list[tuple[int, dict]], doc_id: int, subset: str | None, k: int) -> list[dict]:
    """evalharness's draw (tasks/fewshot.py): k of the pool's other rows, seeded by (seed, subset, doc_id)."""
    candidates = [d for i, d in pool if i != doc_id]
    return random.Random(f"{SEED}:{subset}:{doc_id}").sample(candidates, k)


def make_task(config: dict):
    from lm_eval.api.task import ConfigurableTask

    return ConfigurableTask(config=config)


def task_configs(data: Path, work: Path) -> dict[str, dict]:
    rows = mmlu_rows(data / "mmlu/test/abstract_algebra_test.csv", "abstract_algebra")
    mmlu_test = write_jsonl(work / "mmlu_test.jsonl", rows)
    return {
        "piqa": {
            "task": "eh_piqa", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"validation": str(data / "llm-foundry/piqa.jsonl")}},
            "validation_split": "validation", "output_type": "multiple_choice", "doc_to_text": "{{query}}Answer:",
            "doc_to_target": "gold", "doc_to_choice": "choices", "target_delimiter": " ", "fewshot_delimiter": "\n\n",
            "metric_list": [{"metric": "acc"}],
        },
        "mmlu": {
            "task": "eh_mmlu_abstract_algebra", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(mmlu_test)}},
            "test_split": "test", "output_type": "multiple_choice",
            "description": "The following are multiple choice questions (with answers) about abstract algebra.\n\n",
            "doc_to_text": ("{{question.strip()}}\nA. {{choices[0]}}\nB. {{choices[1]}}\nC. {{choices[2]}}\n"
                            "D. {{choices[3]}}\nAnswer:"),
            "doc_to_choice": ["A", "B", "C", "D"], "doc_to_target": "answer", "target_delimiter": " ",
            "fewshot_delimiter": "\n\n", "metric_list": [{"metric": "acc"}],
        },
        "lambada_openai": {
            "task": "eh_lambada_openai", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data / "llm-foundry/lambada_openai.jsonl")}},
            "test_split": "test", "output_type": "loglikelihood", "doc_to_text": "{{context}}",
            "doc_to_target": "{{' ' + continuation}}", "metric_list": [{"metric": "acc"}],
        },
        "jeopardy_em": {
            "task": "eh_jeopardy_em", "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data / "llm-foundry/jeopardy_all.jsonl")}},
            "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{context}}\nAnswer:",
            "doc_to_target": "{{continuation}}", "target_delimiter": " ", "fewshot_delimiter": "\n\n",
            "generation_kwargs": {"until": ["\n"], "max_gen_toks": 32, "do_sample": False},
            "metric_list": [{"metric": "exact_match"}],
        },
    }


# (case name, task, shots, apply_chat_template, fewshot_as_multiturn, system_instruction, number of docs, record ids)
CASES = [
    ("piqa_0shot_chat", "piqa", 0, True, True, None, 4, True),
    ("piqa_2shot_chat_multiturn", "piqa", 2, True, True, None, 3, True),
    ("piqa_2shot_chat_singleturn", "piqa", 2, True, False, None, 3, False),
    ("piqa_2shot_chat_system", "piqa", 2, True, True, SYSTEM, 2, False),
    ("piqa_1shot_plain_system", "piqa", 1, False, False, SYSTEM, 2, False),
    ("mmlu_2shot_chat_multiturn", "mmlu", 2, True, True, None, 2, True),
    ("mmlu_2shot_chat_singleturn", "mmlu", 2, True, False, None, 2, False),
    ("mmlu_2shot_chat_system", "mmlu", 2, True, True, SYSTEM, 1, False),
    ("lambada_openai_0shot_chat", "lambada_openai", 0, True, True, None, 3, True),
    ("jeopardy_em_3shot_chat_multiturn", "jeopardy_em", 3, True, True, None, 3, True),
    ("jeopardy_em_3shot_chat_singleturn", "jeopardy_em", 3, True, False, None, 2, False),
]


def shots_for(task_name: str, data: Path, docs: list[dict], doc_id: int, k: int) -> list[dict]:
    if k == 0:
        return []
    if task_name == "mmlu":
        return mmlu_rows(data / "mmlu/dev/abstract_algebra_dev.csv", "abstract_algebra")[:k]
    if task_name == "jeopardy_em":  # drawn from the item's own category
        category = docs[doc_id]["category"]
        pool = [(i, d) for i, d in enumerate(docs) if d["category"] == category]
        return evalharness_shots(pool, doc_id, category, k)
    return evalharness_shots(list(enumerate(docs)), doc_id, None, k)


class Capture:
    """Stands in for HFLM._loglikelihood_tokens: keeps the (context ids, continuation ids) lm-eval computed."""

    def __init__(self) -> None:
        self.seen: list = []

    def __call__(self, requests, **kwargs):
        self.seen = [[list(ctx), list(cont)] for _, ctx, cont in requests]
        return [(0.0, False)] * len(requests)


def loglikelihood_ids(lm, pairs: list[list[str]]) -> list[list[list[int]]]:
    from lm_eval.api.instance import Instance

    capture = Capture()
    lm._loglikelihood_tokens = capture
    lm.loglikelihood([Instance("loglikelihood", {}, (c, x), i) for i, (c, x) in enumerate(pairs)], disable_tqdm=True)
    return capture.seen


def generation_ids(lm, prompt: str) -> list[int]:
    ids, mask = lm.tok_batch_encode([prompt])
    return [int(t) for t, m in zip(ids[0].tolist(), mask[0].tolist()) if m]


def chat_cases(lm, data: Path, work: Path) -> list[dict]:
    configs = task_configs(data, work)
    tasks = {name: make_task(cfg) for name, cfg in configs.items()}
    raw = {
        "piqa": read_jsonl(data / "llm-foundry/piqa.jsonl"),
        "mmlu": mmlu_rows(data / "mmlu/test/abstract_algebra_test.csv", "abstract_algebra"),
        "lambada_openai": read_jsonl(data / "llm-foundry/lambada_openai.jsonl"),
        "jeopardy_em": read_jsonl(data / "llm-foundry/jeopardy_all.jsonl"),
    }
    out = []
    for name, task_name, k, chat, multiturn, system, n_docs, record_ids in CASES:
        task = tasks[task_name]
        docs = list(task.eval_docs)
        items = []
        doc_ids = range(n_docs) if task_name != "jeopardy_em" else [0, 1, 2000][:n_docs]
        for doc_id in doc_ids:
            shots = shots_for(task_name, data, raw[task_name], doc_id, k)
            if k:
                task.sampler = type("Shots", (), {"sample": staticmethod(lambda n, eval_doc=None, s=shots, **kw: s[:n])})()
            ctx = task.fewshot_context(docs[doc_id], k, system_instruction=system, apply_chat_template=chat,
                                       fewshot_as_multiturn=multiturn,
                                       chat_template=lm.apply_chat_template if chat else None)
            made = task.construct_requests(docs[doc_id], ctx, apply_chat_template=chat,
                                           chat_template=lm.apply_chat_template if chat else None,
                                           metadata=(task_name, doc_id, 1))
            made = made if isinstance(made, list) else [made]
            item = {"doc_id": doc_id, "subset": raw[task_name][doc_id].get("category") if task_name == "jeopardy_em" else None}
            if task_name == "jeopardy_em":
                item["prompt"] = made[0].args[0]
                if record_ids:
                    item["token_ids"] = generation_ids(lm, item["prompt"])
            else:
                item["requests"] = [list(r.args) for r in made]
                if record_ids:
                    item["token_ids"] = loglikelihood_ids(lm, item["requests"])
            items.append(item)
        out.append({"case": name, "task": task_name, "num_fewshot": k, "apply_chat_template": chat,
                    "fewshot_as_multiturn": multiturn, "system_instruction": system, "items": items})
        print(f"{name}: {len(items)} items", flush=True)
    return out


def tiny_gemma(work: Path, out_tokenizer: Path) -> Path:
    """A tiny gemma3_text model with a small Gemma tokenizer (BOS by default); the tokenizer is also saved to
    `out_tokenizer` for the tests."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for ch in "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:?.,!'\n":
        vocab.setdefault(ch, len(vocab))
    merges = [("▁", "t"), ("▁t", "h"), ("▁th", "e"), ("c", "a"), ("ca", "t"), ("▁", "ca"), ("▁ca", "t"), ("a", "t")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    tokenizer.save_pretrained(out_tokenizer)
    config = Gemma3TextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=128)
    torch.manual_seed(0)
    model_dir = work / "tiny-gemma3"
    Gemma3ForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir


def bos_records(model_dir: Path) -> list[dict]:
    from lm_eval.models.huggingface import HFLM

    out = []
    for add_bos in (None, True, False):
        lm = HFLM(pretrained=str(model_dir), device="cpu", dtype="float32", batch_size=1, add_bos_token=add_bos)
        out.append({"add_bos_token": add_bos, "pairs": BOS_PAIRS, "loglikelihood": loglikelihood_ids(lm, BOS_PAIRS),
                    "prompts": BOS_PROMPTS, "generation": [generation_ids(lm, p) for p in BOS_PROMPTS],
                    "model_type": lm.config.model_type})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, required=True, help="the embedded SmolLM2-135M-Instruct folder")
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--gemma-dir", type=Path, help="a converted Gemma 3 folder: print lm-eval's BOS handling of it")
    args = ap.parse_args()

    import lm_eval
    from lm_eval.models.huggingface import HFLM

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = tiny_gemma(work, args.out / "tiny_gemma_tokenizer")
        bos = bos_records(model_dir)
        lm = HFLM(pretrained=str(args.model_dir), device="cpu", dtype="float32", batch_size=1)
        chat = chat_cases(lm, args.data_dir, work)
    made_with = {"lm_eval": lm_eval.__version__, "script": "benchmarks/lm_eval_prompt_fixture.py"}
    (args.out / "bos_token_ids.json").write_text(json.dumps({"made_with": made_with, "runs": bos}, indent=1) + "\n",
                                                  encoding="utf-8")
    (args.out / "chat_prompts.json").write_text(
        json.dumps({"made_with": made_with, "tokenizer": "embedded SmolLM2-135M-Instruct", "seed": SEED, "cases": chat},
                   indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    if args.gemma_dir:
        for add_bos in (None, False):
            lm = HFLM(pretrained=str(args.gemma_dir), device="cpu", dtype="float32", batch_size=1, add_bos_token=add_bos)
            ids = loglikelihood_ids(lm, BOS_PAIRS[:1])[0]
            print(f"{args.gemma_dir.name} ({lm.config.model_type}), add_bos_token={add_bos}: context ids {ids[0][:4]}..., "
                  f"continuation {ids[1]}; BOS id {lm.tokenizer.bos_token_id}")


if __name__ == "__main__":
    main()
