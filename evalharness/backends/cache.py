"""A request-level cache in SQLite, so an interrupted run recomputes only what is missing.

Keyed by the backend's identity (weights fingerprint, dtype, maximum length, scoring version) and the
exact request. Each backend batch is committed in its own transaction: a kill at any moment loses at
most the batch in flight, and the database stays readable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable, Sequence

from ..requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult
from .base import Backend, OnResults, Progress, WrappingBackend

_RESULT_TYPES = {"LoglikelihoodRequest": LoglikelihoodResult, "GenerateRequest": GenerateResult}


def request_key(model_key: str, request: LoglikelihoodRequest | GenerateRequest) -> str:
    payload = json.dumps([model_key, type(request).__name__, dataclasses.astuple(request)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class RequestCache:
    """Results of answered requests, stored as JSON rows keyed by request_key."""

    def __init__(self, path: Path, model_key: str) -> None:
        self.path = Path(path)
        self.model_key = model_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def get_many(self, requests: Sequence[LoglikelihoodRequest | GenerateRequest]) -> list[Any | None]:
        keys = [request_key(self.model_key, r) for r in requests]
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self._db.execute(f"SELECT key, value FROM results WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update(rows.fetchall())
        out: list[Any | None] = []
        for key, req in zip(keys, requests):
            raw = found.get(key)
            out.append(None if raw is None else _decode(type(req).__name__, raw))
        return out

    def put_many(self, pairs: Sequence[tuple[LoglikelihoodRequest | GenerateRequest, Any]]) -> None:
        rows = [(request_key(self.model_key, r), json.dumps(dataclasses.asdict(res))) for r, res in pairs]
        with self._db:  # one transaction
            self._db.executemany("INSERT OR REPLACE INTO results (key, value) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _decode(kind: str, raw: str) -> Any:
    cls = _RESULT_TYPES[kind]
    data = json.loads(raw)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


class CachedBackend(WrappingBackend):
    """A backend in front of another: answers from the cache where it can, stores each new batch as it is computed."""

    def __init__(self, backend: Backend, cache: RequestCache) -> None:
        super().__init__(backend)
        self.cache = cache
        self.hits = 0
        self.misses = 0

    def stats(self) -> dict[str, Any]:
        """For results.json: the cache file and how many answers it gave and took."""
        return {"file": self.cache.path.name, "hits": self.hits, "computed": self.misses}

    def close(self) -> None:
        self.cache.close()
        self.inner.close()

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: Progress | None = None,
                      on_results: OnResults | None = None, known: Sequence[Any | None] | None = None) -> list[Any]:
        return self._answer(self.inner.loglikelihood, requests, progress, on_results)

    def generate_until(self, requests: Sequence[GenerateRequest], *, progress: Progress | None = None,
                       on_results: OnResults | None = None, known: Sequence[Any | None] | None = None) -> list[Any]:
        return self._answer(self.inner.generate_until, requests, progress, on_results)

    def _answer(self, method: Callable[..., list[Any]], requests: Sequence[Any], progress: Progress | None,
                on_results: OnResults | None) -> list[Any]:
        """Cached answers are not passed to `on_results`; only newly computed batches are."""
        known = self.cache.get_many(requests)
        n_known = sum(r is not None for r in known)
        self.hits += n_known
        self.misses += len(requests) - n_known
        if n_known == len(requests) and not self.inner.capabilities.collective:  # other processes wait in a call
            if progress is not None:
                progress(len(requests))
            return known

        def store(batch: list[tuple[int, Any]]) -> None:
            self.cache.put_many([(requests[i], res) for i, res in batch])
            if on_results is not None:
                on_results(batch)

        return method(requests, progress=progress, on_results=store, known=known)
