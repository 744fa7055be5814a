#!/usr/bin/env python3
"""Per-item parity check: evalharness vs EleutherAI lm-evaluation-harness (lm-eval).

Runs, on the same local data files and the same local HF model folder,

 1. lm-eval (in its own venv, see benchmarks/requirements-lm-eval.txt) with the
    custom task YAMLs of benchmarks/lm_eval_tasks/ (rendered into the work dir with
    the data dir filled in; MMLU is converted CSV -> jsonl, one task per subject),
    with --log_samples;
 2. ``python -m evalharness run ...`` with the same tasks / limit / dtype / batch size;
 3. compares item by item (matched on task, MMLU subject, doc_id): request strings,
    summed log-probs per request, acc / acc_norm, and prints one table per task.

The LLM Foundry-format tasks (arc_easy, arc_challenge, boolq, copa, openbook_qa, winogrande, and the generation
tasks triviaqa_sm_sub, gsm8k, svamp, jeopardy_em; benchmarks/parity_icl.py) give lm-eval evalharness's own built
items, shots included, and also compare acc_token, token counts and generated strings (greedy, lm-eval's
`generate_until` against evalharness's).

Exit status: 0 = parity, 1 = parity failure (agreement < --min-agreement %, any
|logprob diff| > --tol, request-string / gold mismatches or missing items),
2 = a run failed or outputs are missing.

Everything generated (rendered task YAMLs, converted MMLU jsonl, outputs, logs) goes
into --work-dir, never into the repository.

Example:
  python benchmarks/parity_lm_eval.py --model-dir <embedded model folder> \\
      --data-dir ../shared/data --work-dir <scratch folder> --limit 200
"""

from __future__ import annotations

import argparse
import csv
import glob
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

import parity_icl
from parity_icl import CHOICE_TASKS, GEN_TASKS, ICL_TASKS

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
TASKS_SRC = HERE / "lm_eval_tasks"

BASE_TASKS = ("lambada_openai", "piqa", "hellaswag", "mmlu")
ALL_TASKS = BASE_TASKS + ICL_TASKS  # ICL_TASKS: LLM Foundry-format prompts, see parity_icl.py
# our task name -> lm-eval task (or group) name defined in benchmarks/lm_eval_tasks
LM_EVAL_NAME = {t: "eh_" + t for t in ALL_TASKS}
MC_TASKS = {"piqa", "hellaswag", "mmlu"} | CHOICE_TASKS
MMLU_PREFIX = "eh_mmlu_"
DATA_PLACEHOLDER = "__DATA_DIR__"


# --------------------------------------------------------------------------- setup
def yaml_str(s: str) -> str:
    """Escape *s* for the inside of a YAML double-quoted scalar (JSON escapes are valid YAML)."""
    return json.dumps(s, ensure_ascii=False)[1:-1]


def mmlu_subjects(data_dir: Path) -> list[str]:
    files = sorted(glob.glob(str(data_dir / "mmlu" / "test" / "*_test.csv")))
    return [os.path.basename(f)[: -len("_test.csv")] for f in files]


def prepare_lm_eval_tasks(work_dir: Path, data_dir: Path, tasks: list[str], limit: int | None = None,
                          num_fewshot: int | None = None) -> tuple[Path, list[str]]:
    """Render the task YAMLs into work_dir/lm_eval_tasks; return (include_path, lm-eval task names).
    The LLM Foundry-format tasks export evalharness's built items (`limit` of them, `num_fewshot` shots)."""
    out = work_dir / "lm_eval_tasks"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shutil.copy(TASKS_SRC / "utils.py", out / "utils.py")
    names = []
    for task in tasks:
        if task == "mmlu" or task in ICL_TASKS:
            continue
        src = (TASKS_SRC / f"eh_{task}.yaml").read_text(encoding="utf-8")
        (out / f"eh_{task}.yaml").write_text(src.replace(DATA_PLACEHOLDER, yaml_str(str(data_dir))), encoding="utf-8")
        names.append(LM_EVAL_NAME[task])
    if "mmlu" in tasks:
        subjects = mmlu_subjects(data_dir)
        if not subjects:
            raise SystemExit(f"no MMLU test CSVs under {data_dir / 'mmlu' / 'test'}")
        jsonl_dir = work_dir / "mmlu_jsonl"
        jsonl_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(TASKS_SRC / "_eh_mmlu_template_yaml", out / "_eh_mmlu_template_yaml")
        for subj in subjects:
            csv_path = data_dir / "mmlu" / "test" / f"{subj}_test.csv"
            jsonl_path = jsonl_dir / f"{subj}.jsonl"
            with open(csv_path, newline="", encoding="utf-8") as f, open(jsonl_path, "w", encoding="utf-8") as g:
                for row in csv.reader(f):
                    if len(row) != 6:
                        raise SystemExit(f"{csv_path}: expected 6 columns, got {len(row)}: {row!r}")
                    q, a, b, c, d, ans = row
                    doc = {"question": q, "choices": [a, b, c, d], "answer": "ABCD".index(ans.strip()), "subject": subj}
                    g.write(json.dumps(doc, ensure_ascii=False) + "\n")
            desc = f"The following are multiple choice questions (with answers) about {subj.replace('_', ' ')}.\n\n"
            (out / f"{MMLU_PREFIX}{subj}.yaml").write_text(
                "include: _eh_mmlu_template_yaml\n"
                f"task: {MMLU_PREFIX}{subj}\n"
                f"task_alias: {subj}\n"
                f'description: "{yaml_str(desc)}"\n'
                "dataset_kwargs:\n"
                "  data_files:\n"
                f'    test: "{yaml_str(str(jsonl_path))}"\n',
                encoding="utf-8",
            )
        group = ["group: eh_mmlu", "task:"] + [f"  - {MMLU_PREFIX}{s}" for s in subjects]
        group += ["aggregate_metric_list:"]
        for m in ("acc", "acc_norm"):
            group += [f"  - metric: {m}", "    weight_by_size: true"]
        group += ["metadata:", "  version: 1.0", ""]
        (out / "_eh_mmlu.yaml").write_text("\n".join(group), encoding="utf-8")
        names.append(LM_EVAL_NAME["mmlu"])
    icl = [t for t in tasks if t in ICL_TASKS]
    if icl:
        names += parity_icl.export_tasks(out, work_dir, data_dir, icl, limit, num_fewshot)
    return out, names


def subprocess_env(args) -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")  # so the tee'd logs show progress as it happens
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        env["MKL_NUM_THREADS"] = str(args.threads)
    return env


def run_logged(cmd: list[str], log_path: Path, env: dict, cwd: Path | None = None) -> tuple[int, float]:
    """Run cmd, tee its combined output to log_path; return (returncode, wall seconds)."""
    print("$ " + " ".join(_shq(c) for c in cmd), flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                text=True, errors="replace", bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if not args_quiet:
                sys.stdout.write(line)
                sys.stdout.flush()
        rc = proc.wait()
    return rc, time.perf_counter() - t0


def _shq(s: str) -> str:
    return s if re.fullmatch(r"[\w@%+=:,./-]+", s) else "'" + s.replace("'", "'\\''") + "'"


args_quiet = False


def run_lm_eval(args, work_dir: Path, tasks: list[str]) -> None:
    out_dir = work_dir / "lm_eval"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    include_path, names = prepare_lm_eval_tasks(work_dir, args.data_dir, tasks, args.limit, args.num_fewshot)
    env = subprocess_env(args)
    env.setdefault("HF_DATASETS_CACHE", str(work_dir / "hf_datasets_cache"))
    cmd = [
        args.lm_eval_python, "-m", "lm_eval", "run",
        "--model", "hf",
        "--model_args", f"pretrained={args.model_dir},dtype=float32",
        "--tasks", ",".join(names),
        "--include_path", str(include_path),
        "--batch_size", str(args.batch_size),
        "--device", args.device,
        "--log_samples",
        "--output_path", str(out_dir / "out"),
    ]
    if args.limit is not None:  # not below the docs exported for the LLM Foundry-format tasks
        exported = parity_icl.exported_count(work_dir, [t for t in tasks if t in ICL_TASKS])
        cmd += ["--limit", str(max(args.limit, exported))]
    rc, wall = run_logged(cmd, out_dir / "lm_eval.log", env, cwd=work_dir)
    meta = {"cmd": cmd, "returncode": rc, "wall_seconds": wall, "tasks": tasks, "limit": args.limit,
            "num_fewshot": args.num_fewshot}
    (out_dir / "run.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    print(f"[parity] lm-eval finished rc={rc} in {wall:.1f}s (log: {out_dir / 'lm_eval.log'})", flush=True)
    if rc != 0:
        raise SystemExit(2)


def run_evalharness(args, work_dir: Path, tasks: list[str]) -> None:
    out_dir = work_dir / "evalharness"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    cmd = [
        args.evalharness_python, "-m", "evalharness", "run",
        "--model", str(args.model_dir),
        "--tasks", ",".join(tasks),
        *(["--limit", str(args.limit)] if args.limit is not None else []),
        *(["--num-fewshot", str(args.num_fewshot)] if args.num_fewshot is not None else []),
        "--dtype", "float32",
        "--batch-size", str(args.batch_size),
        "--data-dir", str(args.data_dir),
        "--output-dir", str(out_dir),
        *[a for opt in args.backend_option for a in ("--backend-option", opt)],
    ]
    env = subprocess_env(args)
    # make `-m evalharness` resolve to this checkout even if it is not pip-installed
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    rc, wall = run_logged(cmd, out_dir / "evalharness.log", env, cwd=REPO_ROOT)
    meta = {"cmd": cmd, "returncode": rc, "wall_seconds": wall, "tasks": tasks, "limit": args.limit,
            "num_fewshot": args.num_fewshot}
    (out_dir / "run.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    print(f"[parity] evalharness finished rc={rc} in {wall:.1f}s (log: {out_dir / 'evalharness.log'})", flush=True)
    if rc != 0:
        raise SystemExit(2)


# --------------------------------------------------------------------------- loading
_SAMPLES_RE = re.compile(r"^samples_(.+)_(\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.jsonl$")


def _lm_eval_args(arguments) -> list[tuple[str, str]]:
    """lm-eval logs request args either as [[ctx, cont], ...] or {"gen_args_0": {"arg_0": ctx, "arg_1": cont}}."""
    if isinstance(arguments, dict):
        arguments = [[v["arg_0"], v["arg_1"]] for _, v in sorted(arguments.items(), key=lambda kv: int(kv[0].split("_")[-1]))]
    return [(a[0], a[1]) for a in arguments]


def _ll_greedy(resp) -> tuple[float, bool]:
    # resps[i] is [[ll, is_greedy]] (list of model outputs per request); filtered_resps[i] is [ll, is_greedy]
    # lm-eval 0.4.13 logs both as strings: ["-5.02", "False"]
    while isinstance(resp, list) and len(resp) == 1 and isinstance(resp[0], list):
        resp = resp[0]
    greedy = resp[1]
    if isinstance(greedy, str):
        if greedy not in ("True", "False"):
            raise ValueError(f"unexpected is_greedy value {greedy!r}")
        greedy = greedy == "True"
    return float(resp[0]), bool(greedy)


def load_lm_eval(work_dir: Path, tasks: list[str]) -> dict:
    """-> {(task, subset, doc_id): item}; keeps the newest samples file per lm-eval task."""
    newest: dict[str, tuple[str, str]] = {}
    for path in glob.glob(str(work_dir / "lm_eval" / "out" / "**" / "samples_*.jsonl"), recursive=True):
        m = _SAMPLES_RE.match(os.path.basename(path))
        if not m:
            continue
        name, stamp = m.group(1), m.group(2)
        if name not in newest or stamp > newest[name][0]:
            newest[name] = (stamp, path)
    items = {}
    for name, (_, path) in sorted(newest.items()):
        if name.startswith(MMLU_PREFIX):
            task, subset = "mmlu", name[len(MMLU_PREFIX):]
        elif name.startswith("eh_") and name[3:] in ALL_TASKS:
            task, subset = name[3:], None
        else:
            continue
        if task not in tasks:
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                s = json.loads(line)
                if task in ICL_TASKS:  # doc_id and gold as exported (lm-eval's own doc_id is the line number)
                    doc_id, extra = parity_icl.lm_eval_item(task, s)
                    if task in GEN_TASKS:
                        items[(task, None, doc_id)] = extra
                        continue
                resps = [_ll_greedy(r) for r in s["resps"]]
                metrics = {k: s[k] for k in ("acc", "acc_norm", "perplexity") if k in s}
                item = {
                    "requests": _lm_eval_args(s["arguments"]),
                    "logprobs": [r[0] for r in resps],
                    "is_greedy": [r[1] for r in resps],
                    "gold": s.get("target") if task in MC_TASKS else None,
                    "metrics": metrics,
                }
                if task in ICL_TASKS:
                    item.update(extra)
                else:
                    doc_id = int(s["doc_id"])
                items[(task, subset, doc_id)] = item
    return items


def load_evalharness(work_dir: Path, tasks: list[str]) -> dict:
    items = {}
    for task in tasks:
        path = work_dir / "evalharness" / f"samples_{task}.jsonl"
        if not path.exists():
            print(f"[parity] WARNING: missing {path}")
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                s = json.loads(line)
                subset = s.get("subset") if task == "mmlu" else None
                if task in GEN_TASKS:
                    items[(task, subset, int(s["doc_id"]))] = {
                        "requests": [(r["prompt"], parity_icl.gen_key(r["stop"], r["max_new_tokens"])) for r in s["requests"]],
                        "logprobs": [], "is_greedy": [], "gold": None, "metrics": s.get("metrics") or {},
                        "output": s["completions"][0],
                    }
                    continue
                items[(task, subset, int(s["doc_id"]))] = {
                    "num_tokens": s.get("num_tokens"),
                    "requests": [(r["context"], r["continuation"]) for r in s["requests"]],
                    "logprobs": [float(x) for x in s["logprobs"]],
                    "is_greedy": [bool(x) for x in s.get("is_greedy") or []],
                    "gold": s.get("gold"),
                    "metrics": s.get("metrics") or {},
                }
    return items


# --------------------------------------------------------------------------- spec
def _hellaswag_pre(t: str) -> str:
    return re.sub(r"\[.*?\]", "", t.strip().replace(" [title]", ". ")).replace("  ", " ")


def spec_items(data_dir: Path, tasks: list[str], keys) -> dict:
    """The requests (and gold) each item must have, built straight from the raw data files
    following the written spec (independently of both harnesses)."""
    want = {}
    for k in keys:
        want.setdefault((k[0], k[1]), set()).add(k[2])
    out = {}

    def jsonl(path):
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    for (task, subset), ids in want.items():
        if task == "lambada_openai":
            rows = jsonl(data_dir / "llm-foundry" / "lambada_openai.jsonl")
            mk = lambda r: ([(r["context"], " " + r["continuation"])], None)  # noqa: E731
        elif task == "piqa":
            rows = jsonl(data_dir / "llm-foundry" / "piqa.jsonl")
            mk = lambda r: ([(r["query"] + "Answer:", " " + c) for c in r["choices"]], int(r["gold"]))  # noqa: E731
        elif task == "hellaswag":
            rows = jsonl(data_dir / "hellaswag" / "hellaswag_val.jsonl")

            def mk(r):
                ctx = _hellaswag_pre(r["activity_label"] + ": " + r["ctx_a"] + " " + r["ctx_b"].capitalize())
                return [(ctx, " " + _hellaswag_pre(e)) for e in r["endings"]], int(r["label"])
        elif task == "mmlu":
            with open(data_dir / "mmlu" / "test" / f"{subset}_test.csv", newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))

            def mk(r, subset=subset):
                q, a, b, c, d, ans = r
                ctx = (f"The following are multiple choice questions (with answers) about {subset.replace('_', ' ')}.\n\n"
                       f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:")
                return [(ctx, " " + x) for x in "ABCD"], "ABCD".index(ans.strip())
        else:
            continue
        for i in ids:
            if 0 <= i < len(rows):
                out[(task, subset, i)] = mk(rows[i])
    return out


# --------------------------------------------------------------------------- compare
def task_metrics(task: str) -> list[str]:
    """The per-item metrics compared for a task."""
    if task in GEN_TASKS:
        return ["exact_match"]  # LLM Foundry's answer match, evalharness's rule on both sides' strings
    if task in CHOICE_TASKS:
        return ["acc", "acc_token"]  # lm-eval's acc_token: its log-probs over the tokens counted as it tokenises
    return ["acc", "acc_norm"] if task in MC_TASKS else ["acc"]


def _first_diff(a, b) -> str:
    """Where two request lists first differ, with a little text around it."""
    if a is None or b is None:
        return f"one side has no request: {a!r} vs {b!r}"
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} requests"
    for i, (ra, rb) in enumerate(zip(a, b)):
        for field, x, y in (("context", ra[0], rb[0]), ("continuation", ra[1], rb[1])):
            if x != y:
                p = next((j for j in range(min(len(x), len(y))) if x[j] != y[j]), min(len(x), len(y)))
                lo = max(0, p - 40)
                return (f"request #{i} {field} differs at char {p} (len {len(x)} vs {len(y)}):\n"
                        f"       {x[lo:p + 40]!r}\n       {y[lo:p + 40]!r}")
    return "requests equal"


def compare(lm: dict, eh: dict, spec: dict, tasks: list[str], tol: float, tol_check_count: int = 0) -> dict:
    per_task = {}
    worst = []  # (absdiff, key, request index)
    disagreements = []  # (key, metric, lm value, eh value)
    req_mismatch = []  # (key, idx, lm req, eh req)
    spec_mismatch = []  # (side, key, got, expected)
    output_diffs = []  # (key, lm-eval output, evalharness output)
    for task in tasks:
        lm_keys = {k for k in lm if k[0] == task}
        eh_keys = {k for k in eh if k[0] == task}
        both = sorted(lm_keys & eh_keys, key=lambda k: (k[1] or "", k[2]))
        st = {
            "lm_items": len(lm_keys), "eh_items": len(eh_keys), "compared": len(both),
            "only_lm": len(lm_keys - eh_keys), "only_eh": len(eh_keys - lm_keys),
            "req_mismatch_items": 0, "gold_mismatch": 0, "n_requests": 0,
            "lm_vs_spec": 0, "eh_vs_spec": 0,
            "max_abs_diff": 0.0, "n_over_tol": 0, "greedy_mismatch": 0,
            "same": {}, "mean_lm": {}, "mean_eh": {}, "all_agree": 0, "same_output": 0, "ntok_mismatch": 0,
            "only_lm_examples": sorted(lm_keys - eh_keys, key=lambda k: (k[1] or "", k[2]))[:5],
            "only_eh_examples": sorted(eh_keys - lm_keys, key=lambda k: (k[1] or "", k[2]))[:5],
        }
        metrics = task_metrics(task)
        sums_lm = {m: 0.0 for m in metrics}
        sums_eh = {m: 0.0 for m in metrics}
        same = {m: 0 for m in metrics}
        ll_lm_sum = ll_eh_sum = 0.0
        for key in sorted(lm_keys | eh_keys, key=lambda k: (k[1] or "", k[2])):
            exp = spec.get(key)
            for side, items, cnt in (("lm-eval", lm, "lm_vs_spec"), ("evalharness", eh, "eh_vs_spec")):
                if key not in items:
                    continue
                got = items[key]
                bad = exp is None or got["requests"] != exp[0]
                if not bad and exp[1] is not None and got["gold"] is not None:
                    bad = int(got["gold"]) != exp[1]
                if bad:
                    st[cnt] += 1
                    spec_mismatch.append((side, key, got["requests"], exp))
        for key in both:
            a, b = lm[key], eh[key]
            if a["requests"] != b["requests"]:
                st["req_mismatch_items"] += 1
                for i in range(max(len(a["requests"]), len(b["requests"]))):
                    ra = a["requests"][i] if i < len(a["requests"]) else None
                    rb = b["requests"][i] if i < len(b["requests"]) else None
                    if ra != rb:
                        req_mismatch.append((key, i, ra, rb))
                        break
            if task in MC_TASKS and b["gold"] is not None and a["gold"] is not None and int(a["gold"]) != int(b["gold"]):
                st["gold_mismatch"] += 1
            n = min(len(a["logprobs"]), len(b["logprobs"]))
            for i in range(n):
                d = abs(a["logprobs"][i] - b["logprobs"][i])
                if math.isnan(d):
                    d = math.inf
                st["n_requests"] += 1
                st["max_abs_diff"] = max(st["max_abs_diff"], d)
                if d > tol:
                    st["n_over_tol"] += 1
                worst.append((d, key, i))
                if i < len(a["is_greedy"]) and i < len(b["is_greedy"]) and a["is_greedy"][i] != b["is_greedy"][i]:
                    st["greedy_mismatch"] += 1
            if task == "lambada_openai" and n:
                ll_lm_sum += a["logprobs"][0]
                ll_eh_sum += b["logprobs"][0]
            ok = True
            if task in GEN_TASKS:
                ok = a.get("output") == b.get("output")
                st["same_output"] += ok
                if not ok:
                    output_diffs.append((key, a.get("output"), b.get("output")))
            na, nb = a.get("num_tokens"), b.get("num_tokens")
            if na is not None and nb is not None and list(na) != list(nb):
                st["ntok_mismatch"] += 1
            for m in metrics:
                va, vb = a["metrics"].get(m), b["metrics"].get(m)
                if va is not None:
                    sums_lm[m] += float(va)
                if vb is not None:
                    sums_eh[m] += float(vb)
                if va is not None and vb is not None and float(va) == float(vb):
                    same[m] += 1
                else:
                    ok = False
                    disagreements.append((key, m, va, vb))
            st["all_agree"] += ok
        st["same"] = same
        if both:
            st["mean_lm"] = {m: sums_lm[m] / len(both) for m in metrics}
            st["mean_eh"] = {m: sums_eh[m] / len(both) for m in metrics}
            if task == "lambada_openai":
                st["mean_lm"]["perplexity"] = math.exp(-ll_lm_sum / len(both))
                st["mean_eh"]["perplexity"] = math.exp(-ll_eh_sum / len(both))
        per_task[task] = st
    worst.sort(key=lambda t: -t[0])
    return {"per_task": per_task, "worst": worst[:max(15, tol_check_count)], "disagreements": disagreements, "req_mismatch": req_mismatch,
            "spec_mismatch": spec_mismatch, "output_diffs": output_diffs}


def float64_check(model_dir: Path, requests: list[tuple[str, str]]) -> list[float]:
    """Each (context, continuation)'s summed log-prob with plain transformers in float64 (the arbiter of a float32 gap).

    Tokenised as lm-eval does: the whole string and the context encoded without special tokens, the continuation's
    tokens being the whole's tokens after the context's; one full-sequence forward per request.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64).eval()
    out = []
    for context, continuation in requests:
        n_space = len(context) - len(context.rstrip())
        if n_space:
            context, continuation = context[:-n_space], context[-n_space:] + continuation
        whole = tok(context + continuation, add_special_tokens=False).input_ids
        n_ctx = len(tok(context, add_special_tokens=False).input_ids)
        with torch.no_grad():
            logits = model(torch.tensor([whole])).logits[0]
        logp = torch.log_softmax(logits, dim=-1)
        positions = torch.arange(n_ctx - 1, len(whole) - 1)
        out.append(float(logp[positions, torch.tensor(whole[n_ctx:])].sum()))
    return out


def _fmt_time(meta: dict | None) -> str:
    if not meta:
        return "n/a"
    return f"{meta['wall_seconds']:.1f}s"


def report(res: dict, lm: dict, eh: dict, times: dict, args) -> int:
    pt = res["per_task"]
    print()
    print("=" * 100)
    print(f"Parity: evalharness vs lm-eval  (limit={args.limit}, tol={args.tol:g}, model={args.model_dir})")
    print("=" * 100)
    tot_cmp = tot_agree = 0
    tot_over = 0
    tot_maxdiff = 0.0
    tot_req_mm = tot_gold_mm = tot_missing = tot_spec = tot_ntok = 0
    for task, st in pt.items():
        print(f"\n## {task}")
        rows = [
            ("items (lm-eval / evalharness / compared)", f"{st['lm_items']} / {st['eh_items']} / {st['compared']}"),
            ("items only in lm-eval / only in evalharness", f"{st['only_lm']} / {st['only_eh']}"),
            ("items with request-string mismatch", str(st["req_mismatch_items"])),
            ("items whose requests/gold differ from spec: lm-eval / evalharness", f"{st['lm_vs_spec']} / {st['eh_vs_spec']}"),
        ]
        if task in MC_TASKS:
            rows.append(("items with gold mismatch", str(st["gold_mismatch"])))
        if task in GEN_TASKS:
            rows.append(("items with identical generated string", f"{st['same_output']} / {st['compared']}"))
        for m, v in st["same"].items():
            rows.append((f"items with identical {m}", f"{v} / {st['compared']}"))
        rows += [
            ("requests compared", str(st["n_requests"])),
            ("max |logprob diff| per request", f"{st['max_abs_diff']:.3e}"),
            (f"requests with |diff| > {args.tol:g}", str(st["n_over_tol"])),
            ("requests with is_greedy mismatch", str(st["greedy_mismatch"])),
        ]
        if task in CHOICE_TASKS:
            rows.append(("items with different continuation token counts", str(st["ntok_mismatch"])))
        for m in st["mean_lm"]:
            rows.append((f"{m}: lm-eval / evalharness", f"{st['mean_lm'][m]:.4f} / {st['mean_eh'][m]:.4f}"))
        if st["compared"]:
            rows.append(("items agreeing on all metrics", f"{st['all_agree']} ({100.0 * st['all_agree'] / st['compared']:.2f}%)"))
        w = max(len(r[0]) for r in rows)
        for k, v in rows:
            print(f"  {k:<{w}}  {v}")
        if st["only_lm_examples"]:
            print(f"  e.g. only in lm-eval: {st['only_lm_examples']}")
        if st["only_eh_examples"]:
            print(f"  e.g. only in evalharness: {st['only_eh_examples']}")
        tot_cmp += st["compared"]
        tot_agree += st["all_agree"]
        tot_over += st["n_over_tol"]
        tot_maxdiff = max(tot_maxdiff, st["max_abs_diff"])
        tot_req_mm += st["req_mismatch_items"]
        tot_gold_mm += st["gold_mismatch"]
        tot_missing += st["only_lm"] + st["only_eh"]
        tot_spec += st["lm_vs_spec"] + st["eh_vs_spec"]
        tot_ntok += st["ntok_mismatch"]
    agreement = 100.0 * tot_agree / tot_cmp if tot_cmp else 0.0
    print("\n## overall")
    print(f"  wall time lm-eval     : {_fmt_time(times.get('lm_eval'))}{' (cached run)' if args.skip_lm_eval else ''}")
    print(f"  wall time evalharness : {_fmt_time(times.get('evalharness'))}{' (cached run)' if args.skip_evalharness else ''}")
    print(f"  items compared        : {tot_cmp}")
    print(f"  agreement (all metrics identical): {tot_agree}/{tot_cmp} = {agreement:.2f}%")
    print(f"  max |logprob diff|    : {tot_maxdiff:.3e}; requests over tol: {tot_over}")
    print(f"  request-string mismatches: {tot_req_mm} items; gold mismatches: {tot_gold_mm}; unmatched items: {tot_missing}")
    print(f"  items differing from the request spec (either side): {tot_spec}")

    failures = []
    if tot_cmp == 0:
        failures.append("no items compared")
    if agreement < args.min_agreement:
        failures.append(f"agreement {agreement:.2f}% < {args.min_agreement}%")
    if tot_over:
        failures.append(f"{tot_over} requests with |logprob diff| > {args.tol:g}")
    if tot_req_mm:
        failures.append(f"{tot_req_mm} items with different request strings")
    if tot_gold_mm:
        failures.append(f"{tot_gold_mm} items with different gold")
    if tot_missing:
        failures.append(f"{tot_missing} items present on one side only")
    if tot_spec:
        failures.append(f"{tot_spec} items whose requests/gold differ from the spec")
    if tot_ntok:
        failures.append(f"{tot_ntok} items with different continuation token counts")

    if failures or args.verbose:
        if res["spec_mismatch"]:
            print("\n## first items differing from the request spec")
            for side, key, got, exp in res["spec_mismatch"][:10]:
                if exp is None:
                    print(f"  {side} {key}: no such item in the data file")
                elif got == exp[0]:
                    print(f"  {side} {key}: gold differs from spec ({exp[1]})")
                else:
                    print(f"  {side} {key}: (got, then spec) " + _first_diff(got, exp[0]))
        if res["req_mismatch"]:
            print("\n## first request-string mismatches between the two harnesses")
            for key, _i, _ra, _rb in res["req_mismatch"][:10]:
                print(f"  {key}: (lm-eval, then evalharness) " + _first_diff(lm[key]["requests"], eh[key]["requests"]))
        print("\n## worst requests by |logprob diff|")
        for d, key, i in [w for w in res["worst"] if w[0] > 0][:10]:
            a, b = lm[key], eh[key]
            print(f"  {d:.3e}  {key} #{i}: lm-eval {a['logprobs'][i]:.6f} vs evalharness {b['logprobs'][i]:.6f}"
                  f"  cont={a['requests'][i][1]!r}")
    if args.float64_check:
        picks = [w for w in res["worst"] if w[0] > 0][:args.float64_check]
        ref = float64_check(args.model_dir, [tuple(lm[key]["requests"][i]) for _d, key, i in picks])
        closer = 0
        max_eh = max_lm = 0.0
        print(f"\n## the {len(picks)} widest gaps against float64 (plain transformers, full-sequence forward)")
        for (_d, key, i), r in zip(picks, ref):
            d_lm, d_eh = abs(lm[key]["logprobs"][i] - r), abs(eh[key]["logprobs"][i] - r)
            closer += d_eh <= d_lm
            max_eh, max_lm = max(max_eh, d_eh), max(max_lm, d_lm)
            print(f"  {key} #{i}: float64 {r:.6f}  |lm-eval - float64| {d_lm:.2e}  |evalharness - float64| {d_eh:.2e}")
        print(f"  evalharness at least as close to float64 on {closer}/{len(picks)}; "
              f"max gap to float64: lm-eval {max_lm:.2e}, evalharness {max_eh:.2e}")
        res["float64"] = {"requests": len(picks), "evalharness_closer": closer, "max_gap_lm_eval": max_lm,
                          "max_gap_evalharness": max_eh}
    if failures or args.verbose:
        if res["output_diffs"]:
            print(f"\n## generated strings that differ ({len(res['output_diffs'])}; first 15)")
            for key, oa, ob in res["output_diffs"][:15]:
                print(f"  {key}: lm-eval {oa!r}\n  {' ' * len(str(key))}  evalharness {ob!r}")
        if res["disagreements"]:
            print(f"\n## metric disagreements ({len(res['disagreements'])}; first 15)")
            for key, m, va, vb in res["disagreements"][:15]:
                a, b = lm[key], eh[key]
                print(f"  {key} {m}: lm-eval={va} evalharness={vb}")
                print(f"     lm-eval lls    : {[round(x, 5) for x in a['logprobs']]}")
                print(f"     evalharness lls: {[round(x, 5) for x in b['logprobs']]}")
    out = {
        "limit": args.limit, "tol": args.tol, "agreement_pct": agreement, "items_compared": tot_cmp,
        "max_abs_diff": tot_maxdiff, "requests_over_tol": tot_over, "failures": failures,
        "wall_seconds": {k: (v or {}).get("wall_seconds") for k, v in times.items()},
        "per_task": {t: {k: v for k, v in st.items() if not k.endswith("_examples")} for t, st in pt.items()},
        "float64": res.get("float64"),
    }
    (args.work_dir / "comparison.json").write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    print()
    if failures:
        print("PARITY FAILED: " + "; ".join(failures))
        return 1
    print("PARITY OK")
    return 0


# --------------------------------------------------------------------------- main
def _read_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def main(argv=None) -> int:
    global args_quiet
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True, type=Path,
                   help="local Hugging Face model folder (config.json + safetensors + tokenizer), "
                        "loaded by both harnesses")
    p.add_argument("--data-dir", type=Path, default=os.environ.get("EVALHARNESS_DATA_DIR"),
                   help="data dir with llm-foundry/, hellaswag/, mmlu/ (default: $EVALHARNESS_DATA_DIR)")
    p.add_argument("--limit", type=int, default=200,
                   help="first N items of each task and of each MMLU subject (default 200; 0 = all)")
    p.add_argument("--tasks", default=",".join(ALL_TASKS), help="comma-separated subset of " + ",".join(ALL_TASKS))
    p.add_argument("--num-fewshot", type=int, default=None,
                   help="shots for the LLM Foundry-format tasks (" + ",".join(ICL_TASKS) + "; default: each task's, "
                        "the gauntlet's); 0 = the mpt-table protocol. lm-eval gets evalharness's prompts, shots included")
    p.add_argument("--lm-eval-python", default=os.environ.get("LM_EVAL_PYTHON", sys.executable),
                   help="python of the venv with lm-eval installed (benchmarks/requirements-lm-eval.txt; "
                        "default: $LM_EVAL_PYTHON, else this python)")
    p.add_argument("--evalharness-python", default=sys.executable, help="python that can run `-m evalharness`")
    p.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "evalharness-parity",
                   help="where rendered tasks, converted data, outputs and logs go (outside the repo)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--backend-option", action="append", default=[], metavar="KEY=VALUE",
                   help="passed on to `evalharness run --backend-option` (e.g. accelerator=none: without the CPU plugin)")
    p.add_argument("--device", default="cpu", help="lm-eval --device (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="set OMP_NUM_THREADS for both runs")
    p.add_argument("--skip-lm-eval", action="store_true", help="reuse lm-eval outputs already in the work dir")
    p.add_argument("--skip-evalharness", action="store_true", help="reuse evalharness outputs already in the work dir")
    p.add_argument("--tol", type=float, default=1e-3, help="max allowed |logprob diff| per request (default 1e-3)")
    p.add_argument("--min-agreement", type=float, default=99.5, help="min %% of items with identical metrics")
    p.add_argument("--quiet", action="store_true", help="don't echo the subprocesses' output (still logged)")
    p.add_argument("--verbose", action="store_true", help="print worst items even when parity holds")
    p.add_argument("--float64-check", type=int, default=0, metavar="N",
                   help="recompute the N requests with the widest gaps in float64 (transformers) and say which side is closer")
    args = p.parse_args(argv)
    args_quiet = args.quiet

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in tasks if t not in ALL_TASKS]
    if bad:
        p.error(f"unknown task(s) {bad}; choose from {ALL_TASKS}")
    if args.num_fewshot is not None and any(t not in ICL_TASKS for t in tasks):
        p.error("--num-fewshot applies to the LLM Foundry-format tasks only: " + ",".join(ICL_TASKS))
    if args.limit is not None and args.limit <= 0:
        args.limit = None
    if args.data_dir is None:
        p.error("--data-dir is required (or set EVALHARNESS_DATA_DIR)")
    args.data_dir = args.data_dir.resolve()
    args.model_dir = args.model_dir.resolve()
    args.work_dir = args.work_dir.resolve()
    if args.work_dir == REPO_ROOT or REPO_ROOT in args.work_dir.parents:
        p.error(f"--work-dir must be outside the repository ({REPO_ROOT})")
    args.work_dir.mkdir(parents=True, exist_ok=True)

    if not args.skip_lm_eval:
        run_lm_eval(args, args.work_dir, tasks)
    if not args.skip_evalharness:
        run_evalharness(args, args.work_dir, tasks)

    times = {}
    for name in ("lm_eval", "evalharness"):
        meta = _read_meta(args.work_dir / name / "run.json")
        times[name] = meta
        if meta and (meta.get("limit") != args.limit or not set(tasks) <= set(meta.get("tasks", []))
                     or meta.get("num_fewshot") != args.num_fewshot):
            print(f"[parity] WARNING: cached {name} run used limit={meta.get('limit')} tasks={meta.get('tasks')} "
                  f"num_fewshot={meta.get('num_fewshot')}, now limit={args.limit} tasks={tasks} num_fewshot={args.num_fewshot}")

    lm = load_lm_eval(args.work_dir, tasks)
    eh = load_evalharness(args.work_dir, tasks)
    if not lm:
        print(f"[parity] no lm-eval samples found under {args.work_dir / 'lm_eval'}")
        return 2
    if not eh:
        print(f"[parity] no evalharness samples found under {args.work_dir / 'evalharness'}")
        return 2
    spec = spec_items(args.data_dir, tasks, set(lm) | set(eh))
    icl = [t for t in tasks if t in ICL_TASKS]
    if icl:  # their "spec": the items evalharness built and exported before both runs
        spec.update(parity_icl.load_exported(args.work_dir, icl))
        parity_icl.add_lm_eval_scores(lm, args.model_dir, icl, args.data_dir, args.limit, args.num_fewshot)
    res = compare(lm, eh, spec, tasks, args.tol, args.float64_check)
    return report(res, lm, eh, times, args)


if __name__ == "__main__":
    sys.exit(main())
