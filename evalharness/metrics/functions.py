"""Per-item metric functions and aggregations with analytic standard errors (pure; no registry here).

A scorer turns one item's results into numbers (`lm_acc`, `mc_predictions`, `exact_match`); an
aggregation turns a task's per-item numbers into a `MetricValue` (`mean_with_stderr`, `perplexity`,
`macro_mean`, `micro_mean`). registry.py names them for task specs.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..requests import LoglikelihoodResult

#: Multiple-choice metric names, in the order `mc_predictions` reports them.
MC_METRICS: tuple[str, ...] = ("acc", "acc_norm", "acc_token")


@dataclass(frozen=True)
class MetricValue:
    """An aggregated metric: its value, standard error (None if undefined) and item count."""

    value: float
    stderr: float | None
    n: int


# --- per-item metrics -------------------------------------------------------------


def lm_acc(result: LoglikelihoodResult) -> float:
    """LAMBADA / LLM Foundry LM accuracy: 1.0 if the continuation was greedy, else 0.0."""
    return 1.0 if result.is_greedy else 0.0


def _argmax(scores: Sequence[float]) -> int:
    """Index of the largest score; ties go to the lowest index."""
    best = 0
    for i in range(1, len(scores)):
        if scores[i] > scores[best]:  # strict: an equal later score never wins
            best = i
    return best


def mc_predictions(
    results: Sequence[LoglikelihoodResult], choice_lengths: Sequence[int]
) -> dict[str, int]:
    """Predicted choice index for "acc", "acc_norm" and "acc_token".

    acc: argmax of summed logprob (lm-eval acc).
    acc_norm: argmax of logprob / characters in the choice text, without the target
        delimiter (lm-eval acc_norm).
    acc_token: argmax of logprob / num_tokens (LLM Foundry multiple-choice accuracy).
    Ties go to the lowest index. Raises ValueError on empty input, mismatched lengths,
    a NaN logprob, or a choice with 0 characters or 0 tokens.
    """
    if not results:
        raise ValueError("multiple-choice item has no choices")
    if len(results) != len(choice_lengths):
        raise ValueError(
            f"got {len(results)} results but {len(choice_lengths)} choice lengths"
        )
    for i, (r, chars) in enumerate(zip(results, choice_lengths)):
        if math.isnan(r.logprob):
            raise ValueError(f"choice {i} has a NaN logprob")
        if chars <= 0:
            raise ValueError(
                f"choice {i} has {chars} characters; acc_norm needs a non-empty choice text"
            )
        if r.num_tokens <= 0:
            raise ValueError(
                f"choice {i} has {r.num_tokens} tokens; acc_token needs at least one token"
            )
    return {
        "acc": _argmax([r.logprob for r in results]),
        "acc_norm": _argmax([r.logprob / c for r, c in zip(results, choice_lengths)]),
        "acc_token": _argmax([r.logprob / r.num_tokens for r in results]),
    }


def mc_scores(
    results: Sequence[LoglikelihoodResult], choice_lengths: Sequence[int], gold: int
) -> dict[str, float]:
    """0/1 correctness per metric in MC_METRICS, plus the predictions as "pred_<metric>".

    Aggregate only the MC_METRICS keys; the "pred_*" entries are indices, kept for logging.
    """
    if not 0 <= gold < len(results):
        raise ValueError(f"gold index {gold} is out of range for {len(results)} choices")
    preds = mc_predictions(results, choice_lengths)
    scores: dict[str, float] = {m: 1.0 if preds[m] == gold else 0.0 for m in MC_METRICS}
    scores.update({f"pred_{m}": preds[m] for m in MC_METRICS})
    return scores


# --- aggregations -------------------------------------------------------------------


def _mean_and_sem(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error of the mean (sample std, ddof=1); SEM is None when n == 1."""
    n = len(values)
    if n == 0:
        raise ValueError("cannot aggregate zero values")
    mean = math.fsum(values) / n
    if n == 1:
        return mean, None
    var = math.fsum((x - mean) ** 2 for x in values) / (n - 1)
    return mean, math.sqrt(var / n)


def mean_with_stderr(values: Sequence[float]) -> MetricValue:
    """Mean with SEM = sqrt(sum((x-mean)^2)/(n-1)/n), as lm-eval's mean_stderr.

    n == 1 gives stderr None; n == 0 raises ValueError.
    """
    mean, sem = _mean_and_sem(values)
    return MetricValue(mean, sem, len(values))


def perplexity(logprobs: Sequence[float]) -> MetricValue:
    """LAMBADA perplexity as lm-eval: exp(-mean(per-item summed logprob)).

    stderr by the delta method: d/dm exp(-m) = -exp(-m), so se(ppl) = ppl * SEM(logprobs).
    (lm-eval bootstraps this stderr instead; the two agree for large n.)
    n == 1 gives stderr None; n == 0 raises ValueError.
    """
    mean, sem = _mean_and_sem(logprobs)
    ppl = math.exp(-mean)
    return MetricValue(ppl, None if sem is None else ppl * sem, len(logprobs))


def macro_mean(groups: Mapping[str, MetricValue]) -> MetricValue:
    """Unweighted mean over groups (e.g. MMLU subjects); n is the total item count.

    stderr = sqrt(sum(se_i^2)) / k for k independent groups; None if any group's is None.
    """
    if not groups:
        raise ValueError("cannot macro-average zero groups")
    k = len(groups)
    vals = list(groups.values())
    value = math.fsum(g.value for g in vals) / k
    if any(g.stderr is None for g in vals):
        stderr = None
    else:
        stderr = math.sqrt(math.fsum(g.stderr**2 for g in vals)) / k  # type: ignore[operator]
    return MetricValue(value, stderr, sum(g.n for g in vals))


def micro_mean(groups: Mapping[str, Sequence[float]]) -> MetricValue:
    """Mean with stderr over all groups' items pooled (each item weighs the same)."""
    return mean_with_stderr([x for g in groups.values() for x in g])


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def normalize_answer(text: str) -> str:
    """Lower case, punctuation to spaces, drop the articles a/an/the, collapse whitespace."""
    text = _PUNCTUATION.sub(" ", text.lower())
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when the normalised prediction equals the normalised gold answer."""
    return 1.0 if normalize_answer(prediction) == normalize_answer(gold) else 0.0


# --- LLM Foundry's generation-with-answers accuracy (InContextLearningGenerationExactMatchAccuracy) ---------------

_LF_PUNCTUATION = frozenset(string.punctuation + "\u2018\u2019\u00b4`")


def llm_foundry_normalize(text: str) -> str:
    """LLM Foundry's answer normalisation (TriviaQA's): underscores to spaces, lower case, each ASCII punctuation
    character (and the quotes ‘ ’ ´) to a space, the words a/an/the to a space, whitespace collapsed.

    Unlike `normalize_answer`, non-ASCII punctuation (e.g. an em dash) is kept, as in LLM Foundry.
    """
    text = text.replace("_", " ").lower()
    text = "".join(" " if ch in _LF_PUNCTUATION else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split()).strip()


@dataclass(frozen=True)
class AnswerRule:
    """How a generated output becomes the answer that is matched (a task's LLM Foundry settings).

    stop: the output is cut before the first stop sequence; cot_delimiter: then only what follows its last
    occurrence is kept; normalize: LLM Foundry's normalisation of the answer and of every alias (else both are
    only stripped of surrounding whitespace).
    """

    stop: tuple[str, ...] = ()
    cot_delimiter: str = ""
    normalize: bool = True

    def extract(self, output: str) -> str:
        """The answer part of an output, before normalisation."""
        answer = output
        if self.stop:
            # LLM Foundry splits on '|'.join(stops) as a regular expression; escaped here (equal for its stops)
            answer = re.split("|".join(re.escape(s) for s in self.stop), answer)[0]
        if self.cot_delimiter:
            answer = answer.split(self.cot_delimiter)[-1]
        return answer

    def clean(self, text: str) -> str:
        return llm_foundry_normalize(text) if self.normalize else text.strip()

    def correct(self, output: str, answers: Sequence[str]) -> float:
        """1.0 when the cleaned answer starts with any cleaned accepted answer (LLM Foundry's rule: a prefix
        match, so "paris france" matches "Paris"), else 0.0."""
        cleaned = self.clean(self.extract(output))
        return 1.0 if any(cleaned.startswith(self.clean(a)) for a in answers) else 0.0
