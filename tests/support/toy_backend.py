"""A backend written the way a user writes one: it registers itself and touches no evalharness code.

Log-likelihood: -scale x the continuation's characters (so the shortest choice wins) - context_scale x the
context's characters (0 by default; schema tasks share the continuation, so there the shortest context wins), one
token per word, greedy when the continuation is one character. No generation. Used by tests/integration/test_custom_backend.py as
`--backend support.toy_backend:toy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evalharness import Backend, Capabilities, LoglikelihoodResult, register_backend
from evalharness.backends import deliver


@dataclass(frozen=True)
class ToyOptions:
    scale: float = 1.0
    context_scale: float = 0.0


class ToyBackend(Backend):
    name = "toy"

    def __init__(self, options: ToyOptions = ToyOptions()) -> None:
        self.options = options
        self.calls = 0

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(generate=False, sampling=False)

    def identity(self) -> str:
        context = f"|context_scale={self.options.context_scale}" if self.options.context_scale else ""
        return f"toy|scale={self.options.scale}{context}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "scale": self.options.scale}

    def model_info(self) -> dict[str, Any]:
        return {"name": "toy", "dtype": None, "device": "nowhere"}

    def loglikelihood(self, requests, *, progress=None, on_results=None, known=None):
        results: list[Any] = [None] * len(requests)
        for i, r in enumerate(requests):
            if known is not None and known[i] is not None:
                deliver([(i, known[i])], results, None, progress)
                continue
            self.calls += 1
            logprob = -self.options.scale * len(r.continuation) - self.options.context_scale * len(r.context)
            res = LoglikelihoodResult(logprob, len(r.continuation) == 1,
                                      max(1, len(r.continuation.split())))
            deliver([(i, res)], results, on_results, progress)
        return results

    def generate_until(self, requests, *, progress=None, on_results=None, known=None):
        raise RuntimeError("the toy backend does not generate (its capabilities say so)")


register_backend("toy", lambda setup, options: ToyBackend(options), ToyOptions, "a test backend (tests/support)")
