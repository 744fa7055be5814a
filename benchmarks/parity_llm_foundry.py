#!/usr/bin/env python3
"""Per-item fidelity: evalharness vs LLM Foundry's own ICL evaluation, on the same model, data files and items.

Runs, on the same local data files and the same local model folder, offline:

 1. ``python -m evalharness run --tasks ... --limit N --dtype float32`` (its samples_<task>.jsonl files);
 2. LLM Foundry in ITS OWN environment (``--foundry-python``; see benchmarks/requirements-llm-foundry.txt), as a
    subprocess running this same file with ``--foundry-worker``: ``build_icl_evaluators`` builds each task's
    dataloader from the task's LLM Foundry settings, ``ComposerHFCausalLM`` loads the model, and Composer's
    ``Trainer.eval`` evaluates the first N items (``subset_num_batches``) in float32. The model's
    ``update_metric`` is wrapped to record, for every item, what LLM Foundry's metric decided (its per-item
    ``result``, the chosen option, the cleaned generated answer) and what it computed from (the token ids of
    each row, the summed log-probability of each continuation, the raw generated text);
 3. compares item by item and prints a table; everything is written into ``--work-dir``.

What is compared per item: the text of every request (LLM Foundry's token ids decoded vs evalharness's
context + continuation, or prompt), the prediction (the chosen option for multiple choice and schema, with
LLM Foundry's lowest-perplexity rule = evalharness's ``acc_token``; whether every continuation token is greedy
for language modelling; the generated text up to the first stop sequence for generation) and the item's score. An item is identical when
all three agree. The summed log-probability of each continuation is compared too (max |difference|).

The task settings given to LLM Foundry come from the task's ``llm_foundry:`` block (checked against LLM
Foundry's own prompt construction by parity_llm_foundry_prompts.py), or, with ``--icl-tasks-yaml``, from an
LLM Foundry ICL task file such as its ``scripts/eval/yamls/tasks_v0.3.yaml`` (matched by label; the data file
is always the local one). LLM Foundry pads every row to ``max_seq_len``; the script uses, per task, the
shortest multiple of 32 that holds the longest of the N items (evalharness's requests tokenised whole, plus
``max_new_tokens`` for generation), or ``--max-seq-len``.

A checkpoint folder written by transformers 5 is given to LLM Foundry (transformers 4.51) as a copy it can read:
``rope_parameters`` written back as ``rope_theta``/``rope_scaling``, the tokenizer as ``PreTrainedTokenizerFast``
over the same ``tokenizer.json`` with the folder's special tokens, the weights linked, not copied. The worker
checks that the LM head equals the input embedding of a tied model (and ties it if not) and reports it.

Exit status: 0 when at least --min-agreement % of the items of every task are identical, 1 otherwise, 2 when a
run failed.

Example:
  python benchmarks/parity_llm_foundry.py --foundry-python <llm-foundry venv>/bin/python \\
      --data-dir ../shared/data --work-dir <scratch folder> --limit 100 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent

DEFAULT_TASKS = ("copa", "arc_easy", "winograd", "bigbench_operators", "lambada_openai", "svamp", "triviaqa_sm_sub")
LOGLIKELIHOOD_TYPES = ("multiple_choice", "schema", "language_modeling")


# --------------------------------------------------------------------------- comparison (pure)
def compare_task(ours: list[dict], theirs: list[dict], tol: float = 1e-3) -> dict[str, Any]:
    """Compare per-item records of one task, matched by position (item i of both lists is the file's item i).

    A record: ``texts`` (list of str: each request's full text), ``prediction`` (the chosen option, the
    all-greedy flag, or the generated text cut before the first stop sequence), ``correct`` (0 or 1) and optionally ``logprobs`` (one summed
    log-probability per request). An item is identical when its texts, prediction and score all agree.
    Returns counts, the largest |log-prob difference| and the positions of the items that differ.
    """
    n = min(len(ours), len(theirs))
    out: dict[str, Any] = {"items": n, "missing": abs(len(ours) - len(theirs)), "identical": 0, "same_text": 0,
                           "same_prediction": 0, "same_correct": 0, "ours_correct": 0, "theirs_correct": 0,
                           "max_abs_dlogprob": None, "requests_over_tol": 0, "differ": []}
    worst = None
    for i in range(n):
        a, b = ours[i], theirs[i]
        same_text = a["texts"] == b["texts"]
        same_pred = a["prediction"] == b["prediction"]
        same_correct = int(a["correct"]) == int(b["correct"])
        out["same_text"] += same_text
        out["same_prediction"] += same_pred
        out["same_correct"] += same_correct
        out["ours_correct"] += int(a["correct"])
        out["theirs_correct"] += int(b["correct"])
        if a.get("logprobs") is not None and b.get("logprobs") is not None and len(a["logprobs"]) == len(b["logprobs"]):
            for x, y in zip(a["logprobs"], b["logprobs"]):
                d = abs(x - y)
                worst = d if worst is None else max(worst, d)
                out["requests_over_tol"] += d > tol
        if same_text and same_pred and same_correct:
            out["identical"] += 1
        else:
            out["differ"].append(i)
    out["max_abs_dlogprob"] = worst
    return out


def agreement(summary: dict[str, Any]) -> float:
    """Identical items in percent of the compared items (100 when there are none)."""
    return 100.0 * summary["identical"] / summary["items"] if summary["items"] else 100.0


def min_seq_len(lengths: list[int], extra: int = 0, multiple: int = 32, slack: int = 0) -> int:
    """The shortest multiple of `multiple` holding the longest row plus `extra` tokens (generation's new tokens)
    plus `slack` (LLM Foundry tokenises shots, context and continuation apart, which can take a few more tokens)."""
    longest = max(lengths, default=1) + extra + slack
    return multiple * math.ceil(longest / multiple)


# --------------------------------------------------------------------------- evalharness side
def evalharness_records(samples_path: Path, output_type: str) -> list[dict]:
    """Per-item records (see compare_task) from an evalharness samples_<task>.jsonl, in file order."""
    rows = [json.loads(line) for line in samples_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows.sort(key=lambda r: r["doc_id"])
    out = []
    for r in rows:
        rec: dict[str, Any] = {"doc_id": r["doc_id"]}
        if output_type in LOGLIKELIHOOD_TYPES:
            rec["texts"] = [q["context"] + q["continuation"] for q in r["requests"]]
            rec["logprobs"] = r["logprobs"]
            if output_type == "language_modeling":
                rec["prediction"] = bool(all(r["is_greedy"]))
                rec["correct"] = int(r["metrics"]["acc"])
            else:  # multiple choice, schema: LLM Foundry's rule is acc_token (mean log-prob per token)
                rec["prediction"] = r["predictions"]["acc_token"]
                rec["correct"] = int(r["metrics"]["acc_token"])
        else:
            rec["texts"] = [q["prompt"] for q in r["requests"]]
            rec["prediction"] = r["completions"][0]  # the generated text, cut before the first stop sequence
            rec["correct"] = int(r["metrics"]["exact_match"])
            rec["answer"] = r["answer"]
        out.append(rec)
    return out


def run_evalharness(args: argparse.Namespace, work: Path, tasks: list[str]) -> None:
    out = work / "evalharness"
    if out.exists():
        shutil.rmtree(out)
    cmd = [args.evalharness_python, "-m", "evalharness", "run", "--model", str(args.model_dir), "--dtype", "float32",
           "--device", "cpu", "--tasks", ",".join(tasks), "--limit", str(args.limit), "--batch-size", str(args.batch_size),
           "--data-dir", str(args.data_dir), "--output-dir", str(out), "--no-cache"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    for opt in args.backend_option:
        cmd += ["--backend-option", opt]
    run_logged(cmd, work / "evalharness.log", args)


def run_logged(cmd: list[str], log_path: Path, args: argparse.Namespace, **extra_env: str) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
               **extra_env)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.time()
    with log_path.open("w", encoding="utf-8") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    took = time.time() - t0
    print(f"  exit {rc} after {took:.0f} s (log: {log_path})", flush=True)
    if rc != 0:
        print(log_path.read_text(encoding="utf-8", errors="replace")[-4000:], file=sys.stderr)
        raise SystemExit(2)
    return took


def icl_task_config(name: str, args: argparse.Namespace, registry: Any) -> dict[str, Any]:
    """LLM Foundry's ICL task entry for one of our tasks: from --icl-tasks-yaml (by label) or our llm_foundry block."""
    spec = registry.get(name)
    shots = spec.num_fewshot if args.num_fewshot is None else args.num_fewshot
    entry: dict[str, Any]
    if args.icl_tasks_yaml:
        import yaml

        listed = {t["label"]: t for t in yaml.safe_load(args.icl_tasks_yaml.read_text(encoding="utf-8"))["icl_tasks"]}
        if name not in listed:
            raise SystemExit(f"{name}: no entry labelled {name!r} in {args.icl_tasks_yaml}")
        entry = dict(listed[name])
        if shots not in entry["num_fewshot"]:
            print(f"note: {name}: {shots} shots is not among {args.icl_tasks_yaml.name}'s {entry['num_fewshot']}")
    else:
        entry = {"label": name, "icl_task_type": spec.output_type}
        f = spec.llm_foundry
        if f is not None:  # else (lambada_openai): LLM Foundry's defaults, as the gauntlet's entry
            entry.update(continuation_delimiter=f.continuation_delimiter, example_delimiter=f.example_delimiter,
                         prompt_string=f.prompt_string, fewshot_random_seed=f.fewshot_random_seed)
            if f.question_prelimiter:
                entry["question_prelimiter"] = f.question_prelimiter
            if f.has_categories:
                entry["has_categories"] = True
            if spec.output_type == "generation_task_with_answers":
                entry.update(cot_delimiter=f.cot_delimiter, do_normalization=f.do_normalization)
                if f.early_stopping_criteria:
                    entry["early_stopping_criteria"] = list(f.early_stopping_criteria)
    entry["num_fewshot"] = [shots]
    entry["dataset_uri"] = str(Path(args.data_dir) / spec.dataset.path)
    return entry


def task_max_seq_len(records: list[dict], output_type: str, tokenizer: Any, max_new_tokens: int) -> int:
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for r in records for t in r["texts"]]
    return min_seq_len(lengths, extra=max_new_tokens if output_type == "generation_task_with_answers" else 0, slack=8)


# --------------------------------------------------------------------------- LLM Foundry side (its own venv)
def transformers4_folder(src: Path, dst: Path) -> Path:
    """A copy of a transformers-5 checkpoint folder that transformers 4.51 reads as intended (weights linked)."""
    dst.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    rope = config.pop("rope_parameters", None)
    if isinstance(rope, dict):  # transformers 5 keeps rope_theta (and any scaling) here; 4.51 reads rope_theta
        rope = dict(rope)
        config["rope_theta"] = rope.pop("rope_theta", config.get("rope_theta", 10000.0))
        config["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    if "dtype" in config and "torch_dtype" not in config:
        config["torch_dtype"] = config.pop("dtype")
    (dst / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for f in src.iterdir():
        if f.name in ("config.json", "tokenizer_config.json") or f.is_dir():
            continue
        target = dst / f.name
        if target.exists() or target.is_symlink():
            target.unlink()
        if f.suffix in (".safetensors", ".bin"):
            target.symlink_to(f.resolve())
        else:
            shutil.copyfile(f, target)
    tok = json.loads((src / "tokenizer_config.json").read_text(encoding="utf-8")) if (src / "tokenizer_config.json").exists() else {}
    keep = {k: v for k, v in tok.items() if k in ("bos_token", "eos_token", "pad_token", "unk_token", "model_max_length",
                                                   "clean_up_tokenization_spaces", "add_bos_token", "add_eos_token")}
    keep.setdefault("clean_up_tokenization_spaces", False)
    keep["tokenizer_class"] = "PreTrainedTokenizerFast"  # transformers 5 writes a class name 4.51 does not know
    (dst / "tokenizer_config.json").write_text(json.dumps(keep, indent=2), encoding="utf-8")
    return dst


def foundry_worker(config_path: Path) -> int:
    cfg = json.loads(config_path.read_text(encoding="utf-8"))
    import composer
    import llmfoundry
    import torch
    import transformers
    from composer import Trainer
    from llmfoundry.models.hf import ComposerHFCausalLM
    from llmfoundry.utils.builders import build_icl_evaluators, build_tokenizer

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    work = Path(cfg["work_dir"])
    (work / "foundry-data").mkdir(parents=True, exist_ok=True)  # LLM Foundry links each data file here
    folder = transformers4_folder(Path(cfg["model_dir"]), work / "model-transformers4")
    tokenizer = build_tokenizer(str(folder), {})
    model = ComposerHFCausalLM(tokenizer=tokenizer, pretrained_model_name_or_path=str(folder), pretrained=True,
                               trust_remote_code=False, use_train_metrics=False)
    hf = model.model
    meta: dict[str, Any] = {"versions": {"llm-foundry": llmfoundry.__version__, "composer": composer.__version__,
                                         "transformers": transformers.__version__, "torch": torch.__version__},
                            "dtype": str(next(hf.parameters()).dtype), "rope_theta": getattr(hf.config, "rope_theta", None),
                            "attn_implementation": getattr(hf.config, "_attn_implementation", None), "threads": torch.get_num_threads()}
    if getattr(hf.config, "tie_word_embeddings", False):
        emb, head = hf.get_input_embeddings().weight, hf.get_output_embeddings().weight
        meta["lm_head_equals_embedding"] = bool(torch.equal(emb, head))
        if not meta["lm_head_equals_embedding"]:
            hf.get_output_embeddings().weight = emb
            meta["lm_head_tied_by_worker"] = True
    hf.eval()
    print(json.dumps(meta), flush=True)

    records: list[dict] = []
    limits = {"seq": 0}
    original_update = model.update_metric

    def recording_update(batch: Any, outputs: Any, metric: Any) -> Any:
        result = original_update(batch, outputs, metric)
        records.extend(_item_records(batch, outputs, model.labels, result, tokenizer, torch, limits["seq"]))
        return result

    model.update_metric = recording_update  # the Trainer calls model.update_metric(batch, outputs, metric)
    trainer = Trainer(model=model, device="cpu", precision="fp32", progress_bar=False, log_to_console=False,
                      loggers=[], seed=17)
    for task in cfg["tasks"]:
        evaluators, _ = build_icl_evaluators([task["icl"]], tokenizer, task["max_seq_len"], cfg["batch_size"],
                                             destination_dir=str(work / "foundry-data"))
        assert len(evaluators) == 1, "tasks with categories are not supported here"
        ev = evaluators[0]
        per_batch = ev.dataloader.dataloader.batch_size
        limit = cfg["limit"]
        ev.subset_num_batches = math.ceil(limit / per_batch) if limit else -1
        records.clear()
        limits["seq"] = task["max_seq_len"]
        t0 = time.time()
        trainer.eval(eval_dataloader=ev)
        took = time.time() - t0
        scores = {m: float(v.compute()) for m, v in trainer.state.eval_metrics[ev.label].items()}
        items = records[:limit] if limit else list(records)
        out = {"task": task["name"], "icl": task["icl"], "max_seq_len": task["max_seq_len"], "batch_rows": cfg["batch_size"],
               "items_at_max_seq_len": sum(bool(r.get("at_limit")) for r in items),
               "items_per_batch": per_batch, "items_evaluated": len(records), "scores_of_evaluated": scores,
               "seconds": took, "meta": meta, "items": items}
        (work / "foundry" / f"{task['name']}.json").write_text(json.dumps(out), encoding="utf-8")
        print(f"{task['name']}: {len(items)} items, {took:.0f} s, {scores}", flush=True)
    return 0


def _item_records(batch: dict, outputs: Any, labels: Any, result: dict, tokenizer: Any, torch: Any, max_seq_len: int) -> list[dict]:
    """Per-item records from one call of LLM Foundry's metric update (the batch, the model outputs, its result).

    at_limit: the row filled max_seq_len (for generation: the prompt filled max_seq_len less the answer room), so
    LLM Foundry may have cut its context on the left."""

    def decode(ids: Any) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    ids = batch["input_ids"]
    if batch.get("mode") == "generate":
        out = []
        for row, text in enumerate(outputs):
            prompt = ids[row][batch["attention_mask"][row].bool()].tolist()
            room = int(batch["generation_kwargs"]["max_new_tokens"])
            stops = batch.get("stopping_criteria") or []
            cut = re.split("|".join(stops), text)[0] if stops else text  # as LLM Foundry's metric cuts it
            out.append({"texts": [decode(prompt)], "prompt_ids": prompt, "output": text, "max_new_tokens": room,
                        "at_limit": len(prompt) >= max_seq_len - room, "prediction": cut,
                        "answer": result["cleaned_output"][row], "correct": int(result["result"][row])})
        return out
    rows = []
    for row, cont in enumerate(batch["continuation_indices"]):
        logits = outputs[row].index_select(0, cont - 1).float()
        target = ids[row].index_select(0, cont)
        assert torch.equal(target, labels[row].index_select(0, cont - 1))  # the metric's targets
        logp = torch.log_softmax(logits, dim=-1)
        full = ids[row][: int(cont[-1]) + 1].tolist()
        rows.append({"ids": full, "cont_start": int(cont[0]), "text": decode(full),
                     "logprob": float(logp.gather(1, target[:, None]).sum()),
                     "greedy": bool((logits.argmax(-1) == target).all()), "at_limit": len(full) >= max_seq_len})
    if "choice_groupings" in batch:  # multiple choice, schema
        out = []
        for k, ((start, end), gold) in enumerate(zip(batch["choice_groupings"], batch["gold_indices"])):
            group = rows[start:end]
            out.append({"texts": [r["text"] for r in group], "logprobs": [r["logprob"] for r in group],
                        "ids": [r["ids"] for r in group], "cont_starts": [r["cont_start"] for r in group],
                        "at_limit": any(r["at_limit"] for r in group),
                        "prediction": int(result["selected_choice_idx"][k]), "gold": int(gold),
                        "correct": int(result["result"][k])})
        return out
    return [{"texts": [r["text"]], "logprobs": [r["logprob"]], "ids": [r["ids"]], "cont_starts": [r["cont_start"]],
             "at_limit": r["at_limit"], "prediction": r["greedy"], "correct": int(result["result"][k])} for k, r in enumerate(rows)]


# --------------------------------------------------------------------------- driver
def explain(ours: dict, theirs: dict, tokenizer: Any) -> str:
    """One line on why an item differs: prompt text, tokenisation, or the scores themselves."""
    if ours["texts"] != theirs["texts"]:
        return "request text differs"
    if "ids" in theirs:
        for text, ids, start in zip(ours["texts"], theirs["ids"], theirs["cont_starts"]):
            if tokenizer(text, add_special_tokens=False)["input_ids"] != ids:
                return f"tokenisation differs (LLM Foundry tokenises context and continuation apart; continuation from token {start})"
    if "logprobs" in ours:
        return ("scores: ours " + ", ".join(f"{x:.4f}" for x in ours["logprobs"]) + " | LLM Foundry "
                + ", ".join(f"{x:.4f}" for x in theirs["logprobs"]))
    return f"answers: ours {ours.get('answer')!r:.80} | LLM Foundry {theirs.get('answer')!r:.80}"


def same_tokens(ours: dict, theirs: dict, tokenizer: Any) -> bool:
    """Whether LLM Foundry's token ids of every row are evalharness's (each request's text tokenised whole)."""
    ids = theirs.get("ids") or [theirs.get("prompt_ids")]
    return all(tokenizer(t, add_special_tokens=False)["input_ids"] == i for t, i in zip(ours["texts"], ids))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--foundry-worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--foundry-python", default=os.environ.get("LLM_FOUNDRY_PYTHON"),
                   help="python of the LLM Foundry environment (default: $LLM_FOUNDRY_PYTHON)")
    p.add_argument("--evalharness-python", default=sys.executable, help="python that can run `-m evalharness`")
    p.add_argument("--model-dir", type=Path, help="Hugging Face checkpoint folder (default: the embedded model's)")
    p.add_argument("--data-dir", type=Path, default=os.environ.get("EVALHARNESS_DATA_DIR"),
                   help="benchmark data folder (default: $EVALHARNESS_DATA_DIR)")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated tasks in LLM Foundry's format")
    p.add_argument("--limit", type=int, default=100, help="the first N items of each task (0: all)")
    p.add_argument("--num-fewshot", type=int, help="shots for every task (default: each task's own)")
    p.add_argument("--icl-tasks-yaml", type=Path, help="take LLM Foundry's task settings from this ICL task file "
                   "(e.g. its scripts/eval/yamls/tasks_v0.3.yaml) instead of the tasks' llm_foundry blocks")
    p.add_argument("--max-seq-len", type=int, help="LLM Foundry's max_seq_len for every task (default: per task, "
                   "the shortest multiple of 32 holding its items)")
    p.add_argument("--batch-size", type=int, default=8, help="rows per batch on both sides (default 8)")
    p.add_argument("--threads", type=int, help="torch threads of both runs")
    p.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to evalharness run (e.g. accelerator=none)")
    p.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "evalharness-llm-foundry-parity")
    p.add_argument("--skip-evalharness", action="store_true", help="reuse the evalharness outputs in the work dir")
    p.add_argument("--skip-foundry", action="store_true", help="reuse the LLM Foundry outputs in the work dir")
    p.add_argument("--min-agreement", type=float, default=99.0, help="min %% of identical items per task (default 99)")
    p.add_argument("--tol", type=float, default=1e-3, help="|log-prob difference| counted as large (default 1e-3)")
    p.add_argument("--show", type=int, default=5, help="differing items to print per task")
    args = p.parse_args(argv)
    if args.foundry_worker:
        return foundry_worker(args.foundry_worker)
    if not args.data_dir:
        p.error("--data-dir (or EVALHARNESS_DATA_DIR) is required")
    if not args.foundry_python and not args.skip_foundry:
        p.error("--foundry-python (or LLM_FOUNDRY_PYTHON) is required")

    sys.path.insert(0, str(REPO_ROOT))
    from transformers import AutoTokenizer

    from evalharness.tasks import TaskRegistry

    if args.model_dir is None:
        from evalharness.models.embedded import embedded_model_dir

        args.model_dir = Path(embedded_model_dir())
    args.model_dir = args.model_dir.resolve()
    work = args.work_dir.resolve()
    (work / "foundry").mkdir(parents=True, exist_ok=True)
    tasks = [t for t in args.tasks.split(",") if t]
    registry = TaskRegistry()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)

    if not args.skip_evalharness:
        run_evalharness(args, work, tasks)
    ours = {t: evalharness_records(work / "evalharness" / f"samples_{t}.jsonl", registry.get(t).output_type) for t in tasks}

    if not args.skip_foundry:
        cfg_tasks = []
        for t in tasks:
            spec = registry.get(t)
            gen = spec.generation.max_new_tokens if spec.generation is not None else 0
            seq = args.max_seq_len or task_max_seq_len(ours[t], spec.output_type, tokenizer, gen)
            icl = icl_task_config(t, args, registry)
            icl["max_seq_len"] = seq
            cfg_tasks.append({"name": t, "icl": icl, "max_seq_len": seq})
        cfg = {"model_dir": str(args.model_dir), "work_dir": str(work), "limit": args.limit, "batch_size": args.batch_size,
               "threads": args.threads, "tasks": cfg_tasks}
        (work / "foundry_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        run_logged([args.foundry_python, str(Path(__file__).resolve()), "--foundry-worker", str(work / "foundry_config.json")],
                   work / "foundry.log", args, HF_DATASETS_CACHE=str(work / "hf-datasets-cache"))

    rows, failed = [], False
    for t in tasks:
        theirs_all = json.loads((work / "foundry" / f"{t}.json").read_text(encoding="utf-8"))
        theirs = theirs_all["items"]
        s = compare_task(ours[t], theirs, args.tol)
        s["same_tokens"] = sum(same_tokens(a, b, tokenizer) for a, b in zip(ours[t], theirs))
        pct = agreement(s)
        failed |= pct < args.min_agreement or s["missing"] > 0
        rows.append((t, registry.get(t).output_type, s, pct, theirs_all))
        for i in s["differ"][: args.show]:
            a, b = ours[t][i], theirs[i]
            print(f"  {t} item {a['doc_id']}: ours {a['prediction']!r:.60} (score {a['correct']}), "
                  f"LLM Foundry {b['prediction']!r:.60} (score {b['correct']}): {explain(a, b, tokenizer)}")
    meta = rows[0][4]["meta"] if rows else {}
    print(f"\nLLM Foundry side: {json.dumps(meta)}")
    print("\n| task | type | items | identical items | same text | same tokens | same prediction | same score | ours | LLM Foundry "
          "| max \\|Δ log-prob\\| | max_seq_len | rows at max_seq_len |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for t, kind, s, pct, th in rows:
        n = s["items"] or 1
        d = "–" if s["max_abs_dlogprob"] is None else f"{s['max_abs_dlogprob']:.1e}"
        print(f"| {t} | {kind} | {s['items']} | {s['identical']} ({pct:.1f}%) | {s['same_text']} | {s['same_tokens']} "
              f"| {s['same_prediction']} | {s['same_correct']} | {s['ours_correct'] / n:.3f} | {s['theirs_correct'] / n:.3f} "
              f"| {d} | {th['max_seq_len']} | {th['items_at_max_seq_len']} |")
    summary = {t: {k: v for k, v in s.items()} for t, _, s, _, _ in rows}
    (work / "comparison.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print("\nPARITY OK" if not failed else f"\nPARITY FAILED (below {args.min_agreement}% identical items, or items missing)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
