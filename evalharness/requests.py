"""Plain request/result types where tasks and backends meet.

Tasks build requests from documents; backends answer them. Neither side knows the other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score `continuation` given `context`: log P(continuation | context)."""

    context: str
    continuation: str


@dataclass(frozen=True)
class LoglikelihoodResult:
    """The answer to one LoglikelihoodRequest.

    logprob: sum of the natural-log probabilities of the continuation tokens.
    is_greedy: every continuation token is the argmax of the model's distribution.
    num_tokens: number of continuation tokens scored.
    truncated: the context was cut on the left to fit the model's length.
    """

    logprob: float
    is_greedy: bool
    num_tokens: int
    truncated: bool = False


@dataclass(frozen=True)
class GenerateRequest:
    """Generate text after `prompt` until a stop sequence or `max_new_tokens`.

    temperature 0 is greedy decoding (deterministic); otherwise sampling with top_p, `num_samples`
    completions, reproducible from `seed`.
    """

    prompt: str
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    num_samples: int = 1
    seed: int = 1234


@dataclass(frozen=True)
class GenerateResult:
    """The completions for one GenerateRequest, each cut before its earliest stop sequence."""

    texts: tuple[str, ...]
    num_tokens: tuple[int, ...]  # tokens generated per completion (before cutting at the stop sequence)
    stopped: tuple[bool, ...]  # whether each completion ended at a stop sequence (else EOS or the length limit)


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """`text` up to the earliest occurrence of any stop sequence, and whether one occurred."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
