"""A task at run time: documents -> requests (via prompts) -> per-item metric values -> aggregated metrics.

What the metrics are is the spec's declaration and the metric registry's (evalharness.metrics); nothing here
depends on a task's name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from ..chat import Message, PromptFormat, join_delimited, render_prompt
from ..errors import ConfigError
from ..metrics import AGGREGATIONS, AnswerRule, MetricValue, Outcome, get_metric, macro_mean, micro_mean
from ..metrics.registry import Metric
from ..requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult
from .documents import Document, DocumentSet, load_documents
from .fewshot import llm_foundry_shot_indices, select_shots
from .prompts import compile_expression, compile_template
from .spec import CHOICE_TYPES, TaskSpec

Request = LoglikelihoodRequest | GenerateRequest
PLAIN = PromptFormat()
Result = LoglikelihoodResult | GenerateResult


@dataclass(frozen=True)
class Item:
    """One evaluation item: the requests it needs and what scoring them needs."""

    doc_id: int
    subset: str | None
    requests: tuple[Request, ...]
    gold: int | str | tuple[str, ...]  # choice: gold index; language modeling: gold text; with answers: all answers
    choice_lengths: tuple[int, ...] = ()  # multiple choice: characters of each choice, without the delimiter
    doc: Any = field(default=None, compare=False, repr=False)  # the source row (code tasks build programs from it)


@dataclass(frozen=True)
class ScoredItem:
    """An item with its backend results and its per-item metric values."""

    item: Item
    results: tuple[Result, ...]
    scores: dict[str, float]
    predictions: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # e.g. per-sample execution outcomes

    def sample_record(self) -> dict[str, Any]:
        """The item's line in samples_<task>.jsonl."""
        if isinstance(self.item.requests[0], GenerateRequest):
            (req,), (res,) = self.item.requests, self.results
            assert isinstance(res, GenerateResult)
            return {
                "doc_id": self.item.doc_id,
                "subset": self.item.subset,
                "requests": [{"prompt": req.prompt, "stop": list(req.stop), "max_new_tokens": req.max_new_tokens}],
                "completions": list(res.texts),
                "num_tokens": list(res.num_tokens),
                "stopped": list(res.stopped),
                "prediction": res.texts[0],
                "gold": self.item.gold,
                "metrics": self.scores,
                **self.details,
            }
        return {
            "doc_id": self.item.doc_id,
            "subset": self.item.subset,
            "requests": [{"context": r.context, "continuation": r.continuation} for r in self.item.requests],
            "logprobs": [r.logprob for r in self.results],
            "is_greedy": [r.is_greedy for r in self.results],
            "num_tokens": [r.num_tokens for r in self.results],
            "truncated": any(r.truncated for r in self.results),
            "prediction": self.predictions.get("acc"),
            "predictions": self.predictions or None,
            "gold": self.item.gold,
            "metrics": self.scores,
        }


class Task:
    """Builds requests from a TaskSpec's documents and turns the answers into metrics."""

    def __init__(self, spec: TaskSpec, data_dir: Path | None) -> None:
        self.spec = spec
        self.metrics: dict[str, Metric] = {m.name: get_metric(m.name, spec.output_type) for m in spec.metrics}
        self.documents: DocumentSet = load_documents(data_dir, spec.dataset, spec.source_file)
        p = spec.prompt

        def compiled(compile_fn: Any, ref: str | None, field: str) -> Any:
            if ref is None:
                return None
            try:
                return compile_fn(ref, spec.template_dirs)
            except ConfigError as exc:
                raise ConfigError(f"{spec.source_file}: field {field!r}: {exc}") from exc

        self._context = compiled(compile_template, p.context, "prompt.context")
        self._description = compiled(compile_template, p.description, "prompt.description")
        self._target = compiled(compile_template, p.target, "prompt.target")
        self._choices = compiled(compile_expression, p.choices, "prompt.choices")
        self._gold = compiled(compile_expression, p.gold, "prompt.gold")
        self._answers = compiled(compile_expression, p.answers, "prompt.answers")
        self._chain_of_thought = compiled(compile_template, p.chain_of_thought, "prompt.chain_of_thought")

    # ---- documents -> requests -------------------------------------------------------------
    def _where(self, doc: Document) -> str:
        subset = f" subset {doc.subset!r}" if doc.subset else ""
        return f"{self.spec.source_file}: task {self.spec.name!r}{subset} doc_id {doc.doc_id}"

    def _render(self, fn: Any, doc: Document, what: str) -> Any:
        try:
            return fn(doc=doc.doc, subset=doc.subset)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"{self._where(doc)}: rendering {what}: {exc}") from exc

    def context_of(self, doc: Document) -> str:
        return self._render(self._context, doc, "prompt.context")

    def choices_of(self, doc: Document) -> list[str]:
        choices = self._render(self._choices, doc, "prompt.choices")
        if not isinstance(choices, (list, tuple)) or not choices or not all(isinstance(c, str) for c in choices):
            raise ConfigError(f"{self._where(doc)}: prompt.choices must give a non-empty list of strings, got {choices!r}")
        return list(choices)

    def gold_of(self, doc: Document, n_choices: int) -> int:
        gold = self._render(self._gold, doc, "prompt.gold")
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < n_choices:
            raise ConfigError(f"{self._where(doc)}: prompt.gold must be an index in [0, {n_choices}), got {gold!r}")
        return gold

    def answers_of(self, doc: Document) -> tuple[str, ...]:
        """Generation with answers: every accepted answer (the gold one first, then `prompt.answers`, no repeats)."""
        answers = [self.target_of(doc).strip()]
        if self._answers is not None:
            more = self._render(self._answers, doc, "prompt.answers")
            if not isinstance(more, (list, tuple)) or not all(isinstance(a, str) for a in more):
                raise ConfigError(f"{self._where(doc)}: prompt.answers must give a list of strings, got {more!r}")
            answers += list(more)
        return tuple(dict.fromkeys(answers))

    def target_of(self, doc: Document) -> str:
        """The gold continuation without the target delimiter."""
        if self.spec.output_type != "multiple_choice":
            return self._render(self._target, doc, "prompt.target")
        choices = self.choices_of(doc)
        return choices[self.gold_of(doc, len(choices))]

    def _shot_pool(self, doc: Document) -> tuple[list[Document], bool]:
        if self.documents.fewshot_docs is not None:
            return self.documents.fewshot_docs.get(doc.subset, []), True
        if self.spec.group_by_subset:
            return [d for d in self.documents.docs if d.subset == doc.subset], False
        return self.documents.docs, False

    def full_context(self, doc: Document, num_fewshot: int, prompt_format: PromptFormat | None = None) -> str:
        """The item's prompt. Plain (the default): description + shots (context + delimiter + gold) + the
        document's context, joined by the shot delimiter. In another format, the same parts as chat messages
        (evalharness.chat; as lm-eval's fewshot_context)."""
        return render_prompt(self.messages(doc, num_fewshot, prompt_format), prompt_format or PLAIN)

    def messages(self, doc: Document, num_fewshot: int, prompt_format: PromptFormat | None = None) -> list[Message]:
        """The prompt as messages: system (system instruction, then description) if any; per shot a user message
        (its context, followed by the target delimiter as plain text) and an assistant message (its gold answer,
        followed by the shot delimiter); the item's context as the last user message. Joined as plain text they
        are exactly the plain prompt."""
        fmt = prompt_format or PLAIN
        description = self._render(self._description, doc, "prompt.description") if self._description else ""
        system = join_delimited(fmt.system_instruction, description, self.spec.fewshot_delimiter)
        out = [Message("system", system)] if system else []
        if num_fewshot:
            pool, separate = self._shot_pool(doc)
            for shot in select_shots(doc, num_fewshot, pool=pool, from_separate_split=separate,
                                     seed=self.spec.fewshot_seed, task=self.spec.name):
                out.append(Message("user", self.context_of(shot), self.spec.target_delimiter))
                out.append(Message("assistant", self.target_of(shot), self.spec.fewshot_delimiter))
        out.append(Message("user", self.context_of(doc)))
        return out

    def selected_documents(self, limit: int | None) -> list[Document]:
        """The documents to evaluate: all, or the first `limit` of the file (of each subset for MMLU)."""
        docs = self.documents.docs
        if limit is None:
            return list(docs)
        if not self.documents.limit_per_subset:
            return list(docs[:limit])
        taken: dict[str | None, int] = {}
        out = []
        for d in docs:
            if taken.get(d.subset, 0) < limit:
                taken[d.subset] = taken.get(d.subset, 0) + 1
                out.append(d)
        return out

    def build_items(self, limit: int | None = None, num_fewshot: int | None = None,
                    prompt_format: PromptFormat | None = None) -> list[Item]:
        """The items to evaluate, each with its requests. With a chat template (`prompt_format.chat`), a multiple-
        choice continuation has no target delimiter (the answer is the assistant's message, as lm-eval's); a
        language-modelling continuation keeps it (lm-eval's log-likelihood requests keep their target whole)."""
        k = self.spec.num_fewshot if num_fewshot is None else num_fewshot
        fmt = prompt_format or PLAIN
        if self.spec.llm_foundry is not None:
            if not fmt.is_plain:
                raise ConfigError(f"task {self.spec.name} builds its prompts as LLM Foundry does, "
                                  "which has no chat format; run it without --apply-chat-template")
            return self._llm_foundry_items(self.selected_documents(limit), k)
        items = []
        delim = self.spec.target_delimiter
        choice_delim = "" if fmt.chat is not None else delim
        for doc in self.selected_documents(limit):
            context = self.full_context(doc, k, fmt)
            if self.spec.generates:
                g = self.spec.generation
                assert g is not None
                request = g.request(context)
                items.append(Item(doc.doc_id, doc.subset, (request,), self.target_of(doc), doc=doc.doc))
            elif self.spec.output_type == "language_modeling":
                target = self.target_of(doc)
                items.append(Item(doc.doc_id, doc.subset, (LoglikelihoodRequest(context, delim + target),), target))
            else:
                choices = self.choices_of(doc)
                gold = self.gold_of(doc, len(choices))
                requests = tuple(LoglikelihoodRequest(context, choice_delim + c) for c in choices)
                items.append(Item(doc.doc_id, doc.subset, requests, gold, tuple(len(c) for c in choices)))
        return items

    # ---- LLM Foundry's prompt construction (spec.llm_foundry) ------------------------------
    def _lf_parts(self, doc: Document) -> tuple[str, str]:
        """(context, answer as a shot shows it), stripped as LLM Foundry strips every field of a row."""
        kind = self.spec.output_type
        if kind in CHOICE_TYPES:
            options = self.choices_of(doc)
            gold = options[self.gold_of(doc, len(options))]
            if kind == "schema":
                return gold, self._render(self._target, doc, "prompt.target").strip()
            return self.context_of(doc).strip(), gold
        answer = self._render(self._target, doc, "prompt.target").strip()
        if kind == "generation_task_with_answers" and self._chain_of_thought is not None:
            cot = self._render(self._chain_of_thought, doc, "prompt.chain_of_thought").strip()
            answer = f"{cot}{self.spec.llm_foundry.cot_delimiter}{answer}"  # type: ignore[union-attr]
        return self.context_of(doc).strip(), answer

    def _lf_shot(self, doc: Document, preceding: str) -> str:
        """One shot as LLM Foundry's construct_context(add_answer=True) writes it after `preceding`."""
        f = self.spec.llm_foundry
        assert f is not None
        context, answer = self._lf_parts(doc)
        delimiter = f.example_delimiter if preceding else ""
        if self.spec.output_type == "schema":  # the schema dataset puts the prelimiter before the delimiter
            return f"{f.question_prelimiter}{delimiter}{context}{f.continuation_delimiter}{answer}"
        return f"{delimiter}{f.question_prelimiter}{context}{f.continuation_delimiter}{answer}"

    def _llm_foundry_items(self, docs: list[Document], k: int) -> list[Item]:
        """Items as LLM Foundry builds them: one seeded sampler per file (per category with has_categories),
        advanced item after item in file order, so `docs` must be a prefix of the file (of each category)."""
        f = self.spec.llm_foundry
        assert f is not None
        pools: dict[str | None, list[Document]] = {}
        for d in self.documents.docs:
            pools.setdefault(d.subset if f.has_categories else None, []).append(d)
        position = {(d.subset, d.doc_id): i for pool in pools.values() for i, d in enumerate(pool)}
        rngs = {key: random.Random(f.fewshot_random_seed) for key in pools}
        items = []
        for doc in docs:
            key = doc.subset if f.has_categories else None
            preamble = f.prompt_string
            if k > 0:
                pool = pools[key]
                for j in llm_foundry_shot_indices(len(pool), k, position[(doc.subset, doc.doc_id)], rngs[key]):
                    preamble += self._lf_shot(pool[j], preamble)
            items.append(self._lf_item(doc, preamble))
        return items

    def _lf_item(self, doc: Document, preamble: str) -> Item:
        f = self.spec.llm_foundry
        assert f is not None
        kind = self.spec.output_type
        if kind == "schema":
            options = self.choices_of(doc)
            gold = self.gold_of(doc, len(options))
            continuation = _prefix_space(self._render(self._target, doc, "prompt.target").strip())
            if preamble:
                contexts = [f"{f.question_prelimiter}{f.example_delimiter}{c}{f.continuation_delimiter.rstrip()}"
                            for c in options]
            else:  # zero-shot: LLM Foundry adds no continuation delimiter at all
                contexts = [f"{f.question_prelimiter}{c}" for c in options]
            requests = tuple(LoglikelihoodRequest(preamble + c, continuation) for c in contexts)
            return Item(doc.doc_id, doc.subset, requests, gold, tuple(len(continuation.lstrip()) for _ in options))
        context = self.context_of(doc).strip()
        delimiter = f.example_delimiter if preamble else ""
        prompt = preamble + f"{delimiter}{f.question_prelimiter}{context}{f.continuation_delimiter}".rstrip()
        if kind == "multiple_choice":
            choices = self.choices_of(doc)
            gold = self.gold_of(doc, len(choices))
            requests = tuple(LoglikelihoodRequest(prompt, _prefix_space(c)) for c in choices)
            return Item(doc.doc_id, doc.subset, requests, gold, tuple(len(c) for c in choices))
        if kind == "language_modeling":
            target = self._render(self._target, doc, "prompt.target").strip()
            return Item(doc.doc_id, doc.subset, (LoglikelihoodRequest(prompt, _prefix_space(target)),), target)
        g = self.spec.generation
        assert g is not None
        gold_answers: int | str | tuple[str, ...] = (
            self.answers_of(doc) if kind == "generation_task_with_answers" else self.target_of(doc))
        return Item(doc.doc_id, doc.subset, (g.request(prompt),), gold_answers, doc=doc.doc)

    def fewshot_info(self, num_fewshot: int | None) -> dict[str, Any]:
        """How shots were chosen, for results.json."""
        k = self.spec.num_fewshot if num_fewshot is None else num_fewshot
        f = self.spec.llm_foundry
        if f is not None:
            return {
                "num_fewshot": k,
                "source": None if k == 0 else ("LLM Foundry's sampler: random.Random(seed) drawn item after item in "
                                               "file order" + (", per category" if f.has_categories else "")),
                "seed": None if k == 0 else f.fewshot_random_seed,
                "delimiter": f.example_delimiter,
                "target_delimiter": f.continuation_delimiter,
                "prompt_string": f.prompt_string,
                "question_prelimiter": f.question_prelimiter,
                "format": "llm-foundry",
            }
        separate = self.documents.fewshot_docs is not None
        if k == 0:
            return {"num_fewshot": 0, "source": None, "seed": None, "delimiter": self.spec.fewshot_delimiter,
                    "target_delimiter": self.spec.target_delimiter}
        return {
            "num_fewshot": k,
            "source": f"first {k} rows of split {self.spec.dataset.fewshot_split!r} of the same subset" if separate
            else ("seeded sample of the evaluation file, excluding the item" + (", same category" if self.spec.group_by_subset else "")),
            "seed": None if separate else self.spec.fewshot_seed,
            "delimiter": self.spec.fewshot_delimiter,
            "target_delimiter": self.spec.target_delimiter,
        }

    # ---- answers -> metrics ----------------------------------------------------------------
    @property
    def _answer_rule(self) -> AnswerRule | None:
        """Generation with answers: how an output is cut and normalised before it is matched (LLM Foundry's)."""
        f = self.spec.llm_foundry
        if self.spec.output_type != "generation_task_with_answers" or f is None:
            return None
        stop = self.spec.generation.stop if self.spec.generation is not None else ()
        return AnswerRule(stop, f.cot_delimiter, f.do_normalization)

    @property
    def needs_execution(self) -> bool:
        """Scored by running the generated code (e.g. pass@k metrics)."""
        return any(m.needs_execution for m in self.metrics.values())

    def program_for(self, item: Item, completion: str) -> Any:
        """The program that tests one completion (code tasks: the spec's generation.program builder)."""
        from ..execution import PROGRAM_BUILDERS

        assert self.spec.generation is not None and self.spec.generation.program is not None
        return PROGRAM_BUILDERS[self.spec.generation.program](item.doc, completion)

    def score(self, item: Item, results: tuple[Result, ...], executions: list[Any] | None = None) -> ScoredItem:
        """The item's per-item metric values (and, for multiple choice, each metric's predicted choice)."""
        outcome = Outcome(results, item.gold, item.choice_lengths, tuple(executions) if executions is not None else None,
                          self._answer_rule)
        scores = {m.key: m.value(outcome) for m in self.metrics.values()}
        predictions = outcome.choice_predictions if self.spec.output_type in CHOICE_TYPES else {}
        details: dict[str, Any] = {}
        if self.spec.output_type == "generation_task_with_answers" and self._answer_rule is not None:
            details["answer"] = self._answer_rule.extract(results[0].texts[0])  # type: ignore[union-attr]
        if executions is not None:
            details["executions"] = [{"status": e.status.value, "error": e.error, "seconds": round(e.wall_time, 3)}
                                     for e in executions]
        return ScoredItem(item, results, scores, predictions, details)

    def aggregate(self, scored: list[ScoredItem]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Task-level metrics (with `<metric>_stderr`) and, for tasks with subsets, the same per subset.

        With subsets, each metric whose aggregation allows it reports the spec's subset average (micro over
        items or macro over subsets) under its own name and the other one as `<metric>_<micro|macro>`.
        """
        by_subset: dict[str, list[ScoredItem]] = {}
        for s in scored:
            by_subset.setdefault(str(s.item.subset), []).append(s)
        groups: dict[str, dict[str, Any]] = {}
        if self.spec.group_by_subset:
            groups = {name: self._metric_values(rows) for name, rows in sorted(by_subset.items())}
        overall = self._metric_values(scored)
        if self.spec.group_by_subset:
            average = self.spec.subset_average
            other = "macro" if average == "micro" else "micro"
            for decl in self.spec.metrics:
                if not AGGREGATIONS[decl.aggregation].by_subset:
                    continue
                key = self.metrics[decl.name].key
                micro = micro_mean({g: [r.scores[key] for r in rows] for g, rows in by_subset.items()})
                macro = macro_mean({g: _as_value(groups[g], decl.name) for g in groups})
                head, second = (micro, macro) if average == "micro" else (macro, micro)
                overall[decl.name], overall[f"{decl.name}_stderr"] = head.value, head.stderr
                overall[f"{decl.name}_{other}"], overall[f"{decl.name}_{other}_stderr"] = second.value, second.stderr
            overall["num_subsets"] = len(groups)
        return overall, groups

    def _metric_values(self, rows: list[ScoredItem]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for decl in self.spec.metrics:
            key = self.metrics[decl.name].key
            mv = AGGREGATIONS[decl.aggregation].fn([r.scores[key] for r in rows])
            out[decl.name], out[f"{decl.name}_stderr"] = mv.value, mv.stderr
        out["n"] = len(rows)
        return out


def _prefix_space(text: str) -> str:
    """A continuation as LLM Foundry scores it with a BPE tokenizer: with one leading space (unless it has one)."""
    return text if text.startswith(" ") else " " + text


def _as_value(entry: dict[str, Any], metric: str) -> MetricValue:
    return MetricValue(entry[metric], entry[f"{metric}_stderr"], entry["n"])
