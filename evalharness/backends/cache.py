"""A request-level cache in SQLite, so an interrupted run recomputes only what is missing.

Keyed by the backend's identity (weights fingerprint, dtype, maximum length, scoring version) and the
exact request. Each backend batch is committed in its own transaction: a kill at any moment loses at
most the batch in flight, and the database stays readable. Every row carries a checksum of its key and
value, verified on read; the file is checked when opened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any, Callable, Sequence

from ..requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult
from ..write_failure import naming_file
from .base import Backend, OnResults, Progress, WrappingBackend
from .cache_health import is_damage, quick_check, set_aside

log = logging.getLogger("evalharness")
_RESULT_TYPES = {"LoglikelihoodRequest": LoglikelihoodResult, "GenerateRequest": GenerateResult}


def request_key(model_key: str, request: LoglikelihoodRequest | GenerateRequest) -> str:
    payload = json.dumps([model_key, type(request).__name__, dataclasses.astuple(request)], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


class RequestCache:
    """Results of answered requests, stored as JSON rows keyed by request_key, each with its checksum.

    Checked on open (`PRAGMA quick_check`) and per value (the checksum, verified on every read). A damaged file
    is set aside (renamed `<name>.damaged-<time>`, see cache_health.py) and a fresh one started; a value that
    fails its checksum, or was stored without one by an older evalharness, is computed again, never used.
    """

    def __init__(self, path: Path, model_key: str) -> None:
        self.path = Path(path)
        self.model_key = model_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        """Connect, check the file and its schema; a damaged file is set aside once and a fresh one opened. Any
        other error (a read-only file, a full disk) is raised as a WriteError naming the file."""
        try:
            try:
                return self._connect()
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    raise
                self._set_aside(str(exc))
                return self._connect()
        except sqlite3.DatabaseError as exc:
            raise naming_file(exc, self.path) from exc

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            problem = quick_check(db)
            if problem is not None:
                raise sqlite3.DatabaseError(problem)
            db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL, checksum TEXT)")
            columns = {row[1] for row in db.execute("PRAGMA table_info(results)")}
            if "checksum" not in columns:  # written by an evalharness before per-value checksums
                db.execute("ALTER TABLE results ADD COLUMN checksum TEXT")
            db.commit()
            unverified = db.execute("SELECT COUNT(*) FROM results WHERE checksum IS NULL").fetchone()[0]
        except BaseException:
            db.close()
            raise
        if unverified:
            log.warning(f"request cache {self.path}: {unverified} answer(s) stored without a checksum (an older "
                        "evalharness); they are computed again")
        return db

    def _set_aside(self, why: str) -> None:
        """Rename the damaged file (and its journal files) out of the way and say so in one line."""
        db = getattr(self, "_db", None)  # None while the file is being opened
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        kept = set_aside(self.path)
        log.warning(f"request cache {self.path} is damaged ({why}); set aside as {kept.name}, its answers are "
                    "computed again")

    def _recover(self, exc: sqlite3.DatabaseError) -> None:
        """Damage found mid-run: set the file aside and go on with a fresh one; other errors (a full disk, a
        read-only file) are raised as a WriteError naming the file. What is stored stays: SQLite rolls back the
        transaction that failed."""
        if not is_damage(exc):
            raise naming_file(exc, self.path) from exc
        self._set_aside(str(exc))
        self._db = self._open()

    def get_many(self, requests: Sequence[LoglikelihoodRequest | GenerateRequest]) -> list[Any | None]:
        keys = [request_key(self.model_key, r) for r in requests]
        try:
            found = self._rows(keys)
        except sqlite3.DatabaseError as exc:
            self._recover(exc)
            return [None] * len(requests)
        out: list[Any | None] = []
        bad = 0
        for key, req in zip(keys, requests):
            row = found.get(key)
            value = None if row is None else _verified(type(req).__name__, key, *row)
            bad += int(row is not None and row[1] is not None and value is None)
            out.append(value)
        if bad:
            log.warning(f"request cache {self.path}: {bad} stored answer(s) fail their checksum (damaged); they are "
                        "computed again")
        return out

    def _rows(self, keys: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        found: dict[str, tuple[str, str | None]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self._db.execute(
                f"SELECT key, value, checksum FROM results WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update((key, (value, checksum)) for key, value, checksum in rows.fetchall())
        return found

    def put_many(self, pairs: Sequence[tuple[LoglikelihoodRequest | GenerateRequest, Any]]) -> None:
        rows = []
        for r, res in pairs:
            key, value = request_key(self.model_key, r), json.dumps(dataclasses.asdict(res))
            rows.append((key, value, checksum(key, value)))
        for attempt in range(2):
            try:
                with self._db:  # one transaction
                    self._db.executemany("INSERT OR REPLACE INTO results (key, value, checksum) VALUES (?, ?, ?)", rows)
                return
            except sqlite3.DatabaseError as exc:
                if attempt:
                    raise naming_file(exc, self.path) from exc
                self._recover(exc)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def checksum(key: str, value: str) -> str:
    """A row's checksum: its key and value together (a value moved to another key fails too)."""
    return hashlib.sha256(f"{key}\0{value}".encode()).hexdigest()[:32]


def _verified(kind: str, key: str, value: str, stored: str | None) -> Any | None:
    """The decoded result, or None when the row has no checksum or fails it."""
    if stored is None or stored != checksum(key, value):
        return None
    try:
        return _decode(kind, value)
    except (ValueError, TypeError):
        return None


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
