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
