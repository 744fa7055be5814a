#!/usr/bin/env python3
"""Prompt parity with LLM Foundry: every item's requests built by LLM Foundry's own ICL dataset classes vs evalharness's.

LLM Foundry's `llmfoundry/eval/datasets/in_context_learning_evaluation.py` and `utils.py` are loaded from a
checkout (--llm-foundry-src: the folder holding them) and run with small stand-ins for what they import but do not
need here (composer's data-spec helpers and distributed utilities, Hugging Face `datasets` as an in-memory list of
rows mapped in order). Each dataset class's `tokenize_example` is overridden to return the texts it would tokenise
(the prompt with its shots, and each continuation with the leading space LLM Foundry adds for tokenizers that need
one) instead of token ids; everything else — stripping, few-shot sampling with its seeded generator, the order of
the shots, delimiters, schema contexts, chain-of-thought answers — is LLM Foundry's code. The texts are compared
with evalharness's requests for every item of every task written in LLM Foundry's format (the `llm_foundry:` block).

No model runs; a tokenizer is needed only for LLM Foundry's prefix-space test and answer lengths (default: the
embedded model's). Exit status 0 when every item agrees, 1 otherwise.

Example:
  python benchmarks/parity_llm_foundry_prompts.py --llm-foundry-src <llm-foundry checkout>/llmfoundry/eval/datasets \\
      --data-dir ../shared/data [--tasks winograd,svamp] [--num-fewshot 0]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import shutil
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class _Rows:
    """The part of a Hugging Face `datasets.Dataset` LLM Foundry's ICL datasets use, over a list of rows."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    @property
    def features(self) -> dict[str, None]:
        return {k: None for k in self.rows[0]}

    @property
    def column_names(self) -> list[str]:
        return list(self.rows[0])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: Any) -> Any:
        return [r[i] for r in self.rows] if isinstance(i, str) else self.rows[i]

    def __iter__(self) -> Any:
        return iter(self.rows)

    def map(self, fn: Any, with_indices: bool = False, fn_kwargs: dict | None = None, remove_columns: Any = None) -> _Rows:
        out = []
        for i, row in enumerate(self.rows):  # in order, as datasets' single-process map
            new = fn(row, i, **(fn_kwargs or {})) if with_indices else fn(row, **(fn_kwargs or {}))
            out.append({**({} if remove_columns else row), **new})
        return _Rows(out)


def _load_json_rows(kind: str, data_files: str, split: str, streaming: bool = False) -> _Rows:
    text = Path(data_files).read_text(encoding="utf-8")
    return _Rows([json.loads(line) for line in text.split("\n") if line.strip()])


def load_llm_foundry(src: Path) -> types.ModuleType:
    """LLM Foundry's ICL dataset module from `src`, with stand-ins for composer, datasets and its registry."""

    def module(name: str, **attrs: Any) -> types.ModuleType:
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    @contextlib.contextmanager
    def wait(path: str) -> Any:
        yield

    dist = types.SimpleNamespace(local_rank_zero_download_and_wait=wait, get_local_rank=lambda: 0,
                                 all_gather_object=lambda x: [x])
    module("composer")
    module("composer.core", DataSpec=object)
    module("composer.core.data_spec", _default_split_batch=None, _split_list=None)
    module("composer.utils", MissingConditionalImportError=Exception, dist=dist,
           get_file=lambda uri, dest, overwrite=True: shutil.copyfile(uri, dest))
    module("datasets", Dataset=_Rows, IterableDataset=_Rows, load_dataset=_load_json_rows)
    module("llmfoundry")
    module("llmfoundry.registry", icl_datasets=None)
    module("llmfoundry.utils")
    module("llmfoundry.utils.registry_utils", construct_from_registry=None)
    module("llmfoundry.eval")
    module("llmfoundry.eval.datasets")
    for name, file in (("llmfoundry.eval.datasets.utils", "utils.py"),
                       ("llmfoundry.eval.datasets.in_context_learning_evaluation", "in_context_learning_evaluation.py")):
        spec = importlib.util.spec_from_file_location(name, src / file)
        assert spec is not None and spec.loader is not None, src / file
        m = importlib.util.module_from_spec(spec)
        sys.modules[name] = m
        spec.loader.exec_module(m)
    return sys.modules["llmfoundry.eval.datasets.in_context_learning_evaluation"]


def text_datasets(icl: types.ModuleType) -> dict[str, Any]:
    """LLM Foundry's dataset classes per task type, each returning texts from tokenize_example."""

    def with_space(self: Any, text: str) -> str:
        return f" {text}" if self.prefix_space and not text.startswith(" ") else text

    def texts(base: Any) -> Any:
        class Texts(base):  # type: ignore[misc, valid-type]
            def tokenize_example(self, prompt_and_fewshot: str, ctxt: Any, example: dict) -> dict[str, Any]:
                if isinstance(ctxt, list):  # schema: the contexts, one per option; the shared continuation
                    return {"texts": [prompt_and_fewshot + c for c in ctxt],
                            "conts": [with_space(self, example["continuation"])] * len(ctxt)}
                full = prompt_and_fewshot + (ctxt.rstrip() if self.strip_data else ctxt)
                if base is icl.InContextLearningMultipleChoiceTaskDataset:
                    choices = example[self.choices_key]
                    return {"texts": [full] * len(choices), "conts": [with_space(self, c) for c in choices]}
                if base is icl.InContextLearningGenerationTaskWithAnswersDataset:
                    return {"texts": [full], "conts": [""], "answers": sorted(example["aliases"])}
                return {"texts": [full], "conts": [self.get_answer_from_example(example)]}

        return Texts

    return {"multiple_choice": texts(icl.InContextLearningMultipleChoiceTaskDataset),
            "schema": texts(icl.InContextLearningSchemaTaskDataset),
            "language_modeling": texts(icl.InContextLearningLMTaskDataset),
            "generation_task_with_answers": texts(icl.InContextLearningGenerationTaskWithAnswersDataset)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llm-foundry-src", type=Path, required=True,
                    help="folder with LLM Foundry's in_context_learning_evaluation.py and utils.py")
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--tasks", help="comma-separated tasks (default: every task in LLM Foundry's format)")
    ap.add_argument("--num-fewshot", type=int, help="shots for every task (default: each task's own)")
    ap.add_argument("--tokenizer", help="tokenizer folder (default: the embedded model's)")
    ap.add_argument("--show", type=int, default=2, help="differing items to print per task")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from transformers import AutoTokenizer

    from evalharness.models.embedded import embedded_model_dir
    from evalharness.tasks import TaskRegistry
    from evalharness.tasks.task import Task

    datasets = text_datasets(load_llm_foundry(args.llm_foundry_src))
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or embedded_model_dir())
    registry = TaskRegistry()
    names = args.tasks.split(",") if args.tasks else [n for n, s in registry.specs.items() if s.llm_foundry is not None]
    total = bad_total = 0
    scratch = Path(tempfile.mkdtemp(prefix="lf-prompts-"))
    for name in names:
        spec = registry.get(name)
        f = spec.llm_foundry
        assert f is not None, f"{name} is not in LLM Foundry's format"
        shots = spec.num_fewshot if args.num_fewshot is None else args.num_fewshot
        ours = Task(spec, args.data_dir).build_items(num_fewshot=shots)
        # LLM Foundry partitions a file with categories into one file (and one sampler) per category
        groups: dict[Any, list[Any]] = {}
        for item in ours:
            groups.setdefault(item.subset if f.has_categories else None, []).append(item)
        rows = _load_json_rows("json", str(args.data_dir / spec.dataset.path), "train").rows
        bad = 0
        for key, items in groups.items():
            part = scratch / f"{name}_{key}.jsonl"
            part.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows
                                    if key is None or r.get("category") == key), encoding="utf-8")
            kw: dict[str, Any] = dict(
                dataset_uri=str(part), tokenizer=tokenizer, max_seq_len=10**6, pad_tok_id=0, num_fewshot=shots,
                destination_path=str(part) + ".copy", fewshot_random_seed=f.fewshot_random_seed,
                prompt_string=f.prompt_string, example_delimiter=f.example_delimiter,
                continuation_delimiter=f.continuation_delimiter, prelimiter=f.question_prelimiter)
            if spec.output_type == "generation_task_with_answers":
                kw.update(cot_delimiter=f.cot_delimiter, early_stopping_criteria=list(f.early_stopping_criteria) or None,
                          do_normalization=f.do_normalization)
            theirs = datasets[spec.output_type](**kw)
            for i, item in enumerate(items):
                row = theirs[i]
                mine = {"texts": [getattr(r, "context", getattr(r, "prompt", None)) for r in item.requests],
                        "conts": [getattr(r, "continuation", "") for r in item.requests]}
                if "answers" in row:
                    mine["answers"] = sorted(item.gold)
                if mine != {k: row[k] for k in mine}:
                    bad += 1
                    if bad <= args.show:
                        print(f"  {name} item {item.doc_id}:\n    ours   {mine!r:.600}\n    theirs {row!r:.600}")
        total += len(ours)
        bad_total += bad
        print(f"{name:30s} {len(ours):6d} items  {shots:2d}-shot  {bad} differ")
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"all: {total} items, {bad_total} differ")
    return 0 if bad_total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
