"""The backend interface: what answers requests. A backend knows nothing about tasks.

A backend answers `LoglikelihoodRequest`s and `GenerateRequest`s (evalharness.requests) in the order given,
says what it supports (`Capabilities`), and names what decides its answers (`identity`, the request cache's
key). The request cache and the distributed layer are backends too, each wrapping another one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult

Progress = Callable[[int], None]
"""Called with the number of requests just answered."""

OnResults = Callable[[list[tuple[int, Any]]], None]
"""Called after each computed batch with its (request index, result) pairs (never for known results)."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports.

    loglikelihood / generate: which request kinds it answers.
    sampling: generation with temperature > 0 (several samples per request).
    plans_batches: `batches()` gives the batches it would form; the distributed layer deals these out.
    lockstep: every process must run a forward pass in every round (a sharded model's collectives).
    collective: every process must enter each call (the distributed layer); a cache in front may not
        answer for one process alone.
    """

    loglikelihood: bool = True
    generate: bool = True
    sampling: bool = True
    plans_batches: bool = False
    lockstep: bool = False
    collective: bool = False


@dataclass(frozen=True)
class BackendSetup:
    """What every backend factory is given: the run's model and how to place it.

    dist: this process's place in a multi-process run (evalharness.distributed.DistContext).
    fsdp: shard the model over the processes (None: only when it does not fit one device).
    owns_process: evalharness owns this process (the command line), so a backend may change process-wide
        settings; False when evalharness is a library inside someone else's program.
    """

    model: str
    dtype: str | None = None
    device: str | None = None
    batch_size: int = 16
    max_length: int | None = None
    trust_remote_code: bool = False
    dist: Any = None
    fsdp: bool | None = None
    owns_process: bool = False


class Backend(ABC):
    """Answers requests; see the module docstring. Subclasses implement the two request methods and `identity`.

    Both request methods take:
      progress: called with the number of requests answered after each batch;
      on_results: called with each newly computed batch's (request index, result) pairs;
      known: results already available (from a cache), None where not; a backend skips work it knows.
    and return one result per request, in the requests' order.
    """

    name: str = ""

    @abstractmethod
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: Progress | None = None,
                      on_results: OnResults | None = None,
                      known: Sequence[LoglikelihoodResult | None] | None = None) -> list[LoglikelihoodResult]:
        """log P(continuation | context) of each request."""

    @abstractmethod
    def generate_until(self, requests: Sequence[GenerateRequest], *, progress: Progress | None = None,
                       on_results: OnResults | None = None,
                       known: Sequence[GenerateResult | None] | None = None) -> list[GenerateResult]:
        """The completions of each request, cut at its stop sequences."""

    @abstractmethod
    def identity(self) -> str:
        """Everything that decides the answers (weights, dtype, settings that change numbers), as one string.

        The request cache keys results by it: two backends with the same identity must give the same answers.
        """

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()

    @property
    def max_length(self) -> int | None:
        """The longest input in tokens, if the backend has one (inputs beyond it are cut on the left)."""
        return None

    def batches(self, kind: str, requests: Sequence[Any]) -> list[list[int]]:
        """The request indices of each batch `loglikelihood` / `generate_until` (kind) would compute, in order.

        Any one list, passed alone (indices in increasing order), forms exactly that batch again. Only
        backends whose capabilities say `plans_batches` need it; the default is one request per batch.
        """
        return [[i] for i in range(len(requests))]

    def describe(self) -> dict[str, Any]:
        """What results.json records about the backend: its name and settings."""
        return {"name": self.name}

    def model_info(self) -> dict[str, Any]:
        """What results.json records about the model answering (name, kind, dtype, device, size, fingerprint)."""
        return {}

    def resource_usage(self) -> dict[str, Any]:
        """This process's resources that a report shows per process (e.g. parameter bytes, peak memory)."""
        return {}

    def chat_template(self, name: str) -> Any:
        """The chat template (evalharness.chat.ChatTemplate) `--apply-chat-template NAME` selects for this model;
        NAME "default" is the model's own. Backends without a tokenizer's templates may render built-in ones."""
        from ..errors import ConfigError

        raise ConfigError(f"backend {self.name!r} does not support chat templates (--apply-chat-template)")

    def close(self) -> None:
        """Release what the backend holds open (files, connections)."""


class WrappingBackend(Backend):
    """A backend in front of another (`inner`): everything is the inner backend's unless a subclass changes it."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: Progress | None = None,
                      on_results: OnResults | None = None,
                      known: Sequence[LoglikelihoodResult | None] | None = None) -> list[LoglikelihoodResult]:
        return self.inner.loglikelihood(requests, progress=progress, on_results=on_results, known=known)

    def generate_until(self, requests: Sequence[GenerateRequest], *, progress: Progress | None = None,
                       on_results: OnResults | None = None,
                       known: Sequence[GenerateResult | None] | None = None) -> list[GenerateResult]:
        return self.inner.generate_until(requests, progress=progress, on_results=on_results, known=known)

    def identity(self) -> str:
        return self.inner.identity()

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    @property
    def max_length(self) -> int | None:
        return self.inner.max_length

    def batches(self, kind: str, requests: Sequence[Any]) -> list[list[int]]:
        return self.inner.batches(kind, requests)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def model_info(self) -> dict[str, Any]:
        return self.inner.model_info()

    def resource_usage(self) -> dict[str, Any]:
        return self.inner.resource_usage()

    def chat_template(self, name: str) -> Any:
        return self.inner.chat_template(name)

    def close(self) -> None:
        self.inner.close()


def deliver(done: list[tuple[int, Any]], results: list[Any], on_results: OnResults | None,
            progress: Progress | None) -> None:
    """Place a batch's (request index, result) pairs in `results`, then tell `on_results` and `progress`."""
    for i, res in done:
        results[i] = res
    if on_results is not None:
        on_results(done)
    if progress is not None:
        progress(len(done))


def deliver_known(batch: Sequence[int], known: Sequence[Any | None] | None, results: list[Any],
                  progress: Progress | None) -> bool:
    """If every request of `batch` is known, place those results, count them as progress and return True."""
    if known is None or any(known[i] is None for i in batch):
        return False
    deliver([(i, known[i]) for i in batch], results, None, progress)
    return True


__all__ = ["Backend", "BackendSetup", "Capabilities", "OnResults", "Progress", "WrappingBackend", "deliver", "deliver_known"]
