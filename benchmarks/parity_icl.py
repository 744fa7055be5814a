"""The LLM Foundry-format tasks of benchmarks/parity_lm_eval.py (imported by it).

These tasks (arc_easy, arc_challenge, boolq, copa, openbook_qa, winogrande; the generation tasks triviaqa_sm_sub,
gsm8k, svamp, jeopardy_em) build their prompts as LLM Foundry does, shots included. lm-eval is driven with
evalharness's own prompts: the items evalharness builds (context with its shots, continuations, gold; for
generation the prompt, stop sequences and token limit) are exported to one jsonl file per task in the work dir,
and the lm-eval task templates benchmarks/lm_eval_tasks/_eh_icl_*_template_yaml read them with lm-eval's own
request construction (lm-eval num_fewshot 0: the shots are in the context):

- multiple choice: doc_to_text = the context, doc_to_choice = the continuations (each with its leading
  space), target_delimiter "";
- schema (winogrande): lm-eval's multiple-input form, as its own winogrande task: doc_to_text = the gold
  index, doc_to_choice = the contexts, doc_to_target = the shared continuation;
- generation: output_type generate_until, greedy, with the task's stop sequences (`until`) and max_gen_toks.

lm-eval does not log token counts, so a continuation's tokens are counted here as lm-eval's Hugging Face model
counts them (:func:`token_counts`), for LLM Foundry's per-token accuracy (`acc_token`) of lm-eval's log-probs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
TASKS_SRC = HERE / "lm_eval_tasks"

GENERATION = ("triviaqa_sm_sub", "gsm8k", "svamp", "jeopardy_em")
ICL_TASKS = ("arc_easy", "arc_challenge", "boolq", "copa", "openbook_qa", "winogrande", *GENERATION)
SCHEMA_TASKS = frozenset({"winogrande"})
GEN_TASKS = frozenset(GENERATION)
CHOICE_TASKS = frozenset(ICL_TASKS) - GEN_TASKS
TEMPLATES = {"mc": "_eh_icl_mc_template_yaml", "schema": "_eh_icl_schema_template_yaml",
             "gen": "_eh_icl_gen_template_yaml"}


def kind_of(task: str) -> str:
    return "schema" if task in SCHEMA_TASKS else "gen" if task in GEN_TASKS else "mc"


# --------------------------------------------------------------------------- export
def item_to_doc(kind: str, item: Any) -> dict:
    """One built evalharness item (evalharness.tasks.task.Item) as the lm-eval doc of its task template."""
    reqs = item.requests
    if kind == "gen":
        (r,) = reqs
        gold = list(item.gold) if isinstance(item.gold, tuple) else [item.gold]
        return {"doc_id": item.doc_id, "prompt": r.prompt, "until": list(r.stop), "max_gen_toks": r.max_new_tokens,
                "answer": gold[0], "answers": gold}
    if kind == "schema":
        conts = {r.continuation for r in reqs}
        if len(conts) != 1:
            raise ValueError(f"doc {item.doc_id}: a schema item has one shared continuation, got {sorted(conts)}")
        return {"doc_id": item.doc_id, "contexts": [r.context for r in reqs], "continuation": reqs[0].continuation,
                "gold": int(item.gold)}
    ctxs = {r.context for r in reqs}
    if len(ctxs) != 1:
        raise ValueError(f"doc {item.doc_id}: a multiple-choice item has one shared context, got {len(ctxs)}")
    return {"doc_id": item.doc_id, "context": reqs[0].context, "choices": [r.continuation for r in reqs],
            "gold": int(item.gold)}


def doc_requests(kind: str, doc: dict) -> list[tuple[str, str]]:
    """The (context, continuation) requests a doc stands for; generation: (prompt, gen_key(...))."""
    if kind == "gen":
        return [(doc["prompt"], gen_key(doc["until"], doc["max_gen_toks"]))]
    if kind == "schema":
        return [(c, doc["continuation"]) for c in doc["contexts"]]
    return [(doc["context"], c) for c in doc["choices"]]


def gen_key(until: Sequence[str], max_gen_toks: int) -> str:
    """A generation request's settings as one comparable string."""
    return json.dumps({"until": list(until), "max_gen_toks": int(max_gen_toks)}, ensure_ascii=False)


def build_items(task: str, data_dir: Path, limit: int | None, num_fewshot: int | None) -> tuple[Any, list]:
    """(evalharness Task, its built items) exactly as `evalharness run` builds them."""
    repo = str(HERE.parent)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    from evalharness.tasks.registry import TaskRegistry
    from evalharness.tasks.task import Task

    t = Task(TaskRegistry().get(task), data_dir)
    return t, t.build_items(limit=limit, num_fewshot=num_fewshot)


def render_task_yaml(task: str, docs: Sequence[dict], data_file: Path) -> str:
    """The lm-eval task YAML that reads `data_file` (the exported docs of `task`) through its kind's template."""
    kind = kind_of(task)
    lines = [f"include: {TEMPLATES[kind]}", f"task: eh_{task}", "dataset_kwargs:", "  data_files:",
             f"    test: {json.dumps(str(data_file), ensure_ascii=False)}"]
    if kind == "gen":
        settings = {(tuple(d["until"]), d["max_gen_toks"]) for d in docs}
        if len(settings) != 1:
            raise ValueError(f"{task}: lm-eval takes one set of generation settings per task, got {sorted(settings)}")
        ((until, max_gen_toks),) = settings
        lines += ["generation_kwargs:", f"  until: {json.dumps(list(until), ensure_ascii=False)}",
                  f"  max_gen_toks: {int(max_gen_toks)}", "  do_sample: false", "  temperature: 0.0"]
    return "\n".join(lines) + "\n"


def export_tasks(out: Path, work_dir: Path, data_dir: Path, tasks: Sequence[str], limit: int | None,
                 num_fewshot: int | None) -> list[str]:
    """Export each task's items to work_dir/icl_docs/<task>.jsonl and write its YAML into `out` (the rendered
    lm-eval task folder); return the lm-eval task names."""
    docs_dir = work_dir / "icl_docs"
    docs_dir.mkdir(parents=True, exist_ok=True)
    names = []
    for kind in sorted({kind_of(t) for t in tasks}):
        (out / TEMPLATES[kind]).write_text((TASKS_SRC / TEMPLATES[kind]).read_text(encoding="utf-8"), encoding="utf-8")
    for task in tasks:
        _, items = build_items(task, data_dir, limit, num_fewshot)
        docs = [item_to_doc(kind_of(task), it) for it in items]
        path = docs_dir / f"{task}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        (out / f"eh_{task}.yaml").write_text(render_task_yaml(task, docs, path), encoding="utf-8")
        names.append(f"eh_{task}")
    return names


def exported_count(work_dir: Path, tasks: Sequence[str]) -> int:
    """The most docs exported for one task: lm-eval's --limit must not cut them (jeopardy_em's --limit is per
    category, so its export holds five times as many docs)."""
    counts = [sum(1 for _ in open(work_dir / "icl_docs" / f"{t}.jsonl", encoding="utf-8")) for t in tasks
              if (work_dir / "icl_docs" / f"{t}.jsonl").exists()]
    return max(counts, default=0)


def load_exported(work_dir: Path, tasks: Sequence[str]) -> dict:
    """{(task, None, doc_id): (requests, gold)} of the exported docs: what both runs must have used."""
    out = {}
    for task in tasks:
        path = work_dir / "icl_docs" / f"{task}.jsonl"
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                gold = None if task in GEN_TASKS else int(d["gold"])
                out[(task, None, int(d["doc_id"]))] = (doc_requests(kind_of(task), d), gold)
    return out


# --------------------------------------------------------------------------- lm-eval samples
def lm_eval_item(task: str, s: dict) -> tuple[int, dict]:
    """(doc_id, item) from one line of lm-eval's samples_eh_<task>.jsonl."""
    doc = s["doc"]
    kind = kind_of(task)
    if kind == "gen":
        args = s["arguments"]
        if isinstance(args, dict):
            args = [[v["arg_0"], v["arg_1"]] for _, v in sorted(args.items())]
        (ctx, kw), = args
        resp = s["resps"][0]
        text = resp[0] if isinstance(resp, list) else resp
        item = {"requests": [(ctx, gen_key(kw.get("until") or [], kw["max_gen_toks"]))], "logprobs": [],
                "is_greedy": [], "gold": None, "metrics": {}, "output": text}
    else:
        item = {"gold": int(doc["gold"])}
    return int(doc["doc_id"]), item


def token_counts(model_dir: Path, requests: Sequence[tuple[str, str]]) -> list[int]:
    """The continuation's token count of each (context, continuation), as lm-eval's HF model tokenises a pair:
    trailing spaces of the context move to the continuation, context + continuation is encoded whole and the
    continuation's tokens are those past the context's encoding."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    ctxs, wholes = [], []
    for context, continuation in requests:
        n_space = len(context) - len(context.rstrip())
        if n_space:
            context, continuation = context[:-n_space], context[-n_space:] + continuation
        ctxs.append(context)
        wholes.append(context + continuation)
    n_ctx = [len(x) for x in tok(ctxs, add_special_tokens=False).input_ids] if ctxs else []
    n_whole = [len(x) for x in tok(wholes, add_special_tokens=False).input_ids] if wholes else []
    return [w - c for w, c in zip(n_whole, n_ctx)]


def argmax(scores: Sequence[float]) -> int:
    """Index of the largest score, ties to the lowest index (numpy's argmax, evalharness's and LLM Foundry's)."""
    best = 0
    for i in range(1, len(scores)):
        if scores[i] > scores[best]:
            best = i
    return best


def add_lm_eval_scores(lm: dict, model_dir: Path, tasks: Sequence[str], data_dir: Path,
                       limit: int | None, num_fewshot: int | None) -> None:
    """Complete lm-eval's items in place: per-request token counts and `acc_token` (choice tasks); LLM Foundry's
    `exact_match` of the generated string, scored by evalharness's own rule (generation)."""
    keys = [k for k in lm if k[0] in CHOICE_TASKS and k[0] in tasks]
    reqs = [r for k in keys for r in lm[k]["requests"]]
    counts = iter(token_counts(model_dir, reqs)) if reqs else iter(())
    for k in keys:
        a = lm[k]
        a["num_tokens"] = [next(counts) for _ in a["requests"]]
        if a["logprobs"] and all(a["num_tokens"]):
            pred = argmax([ll / n for ll, n in zip(a["logprobs"], a["num_tokens"])])
            a["metrics"]["acc_token"] = float(pred == a["gold"])
    for task in tasks:
        if task not in GEN_TASKS:
            continue
        repo = str(HERE.parent)
        if repo not in sys.path:
            sys.path.insert(0, repo)
        from evalharness.requests import GenerateResult

        t, items = build_items(task, data_dir, limit, num_fewshot)
        by_id = {it.doc_id: it for it in items}
        for k, a in lm.items():
            if k[0] == task and k[2] in by_id:
                text = a["output"]
                scored = t.score(by_id[k[2]], (GenerateResult((text,), (0,), (False,)),))
                a["metrics"]["exact_match"] = scored.scores["exact_match"]
