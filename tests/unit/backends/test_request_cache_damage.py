"""The request cache checks itself: a damaged file is named in one line and set aside, a changed value or one
stored without a checksum is computed again, never used."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from evalharness.backends.cache import CachedBackend, RequestCache, checksum, request_key
from evalharness.backends.cache_health import is_damage, quick_check
from evalharness.requests import LoglikelihoodRequest, LoglikelihoodResult
from support.toy_backend import ToyBackend

REQUESTS = [LoglikelihoodRequest(f"context {i} " * 30, f" continuation {i}") for i in range(300)]


def _answer(i: int) -> LoglikelihoodResult:
    return LoglikelihoodResult(-1.0 - i / 7, i % 2 == 0, 3)


def _filled(path: Path) -> Path:
    cache = RequestCache(path, "model")
    cache.put_many([(r, _answer(i)) for i, r in enumerate(REQUESTS)])
    cache.close()
    return path


def _garbage_in_header(data: bytearray) -> None:
    data[:16] = b"not sqlite at all"[:16]


def _truncated(data: bytearray) -> None:
    del data[len(data) // 2:]


def _garbage_in_a_page(data: bytearray) -> None:
    data[4096 * 3:4096 * 3 + 300] = b"\x5a" * 300


@pytest.mark.parametrize("damage", [_garbage_in_header, _truncated, _garbage_in_a_page])
def test_a_damaged_file_is_named_set_aside_and_started_afresh(tmp_path, caplog, damage):
    path = _filled(tmp_path / "requests.sqlite")
    data = bytearray(path.read_bytes())
    damage(data)
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="evalharness"):
        cache = RequestCache(path, "model")
    lines = [r.getMessage() for r in caplog.records]
    aside = sorted(tmp_path.glob("requests.sqlite.damaged-*"))
    assert len(lines) == 1 and len(aside) == 1
    assert lines[0].startswith(f"request cache {path} is damaged (")
    assert lines[0].endswith(f"set aside as {aside[0].name}, its answers are computed again")
    assert aside[0].read_bytes() == bytes(data)  # kept as it was, for whoever wants to look
    assert cache.get_many(REQUESTS) == [None] * len(REQUESTS) and len(cache) == 0
    cache.put_many([(REQUESTS[0], _answer(0))])
    assert cache.get_many(REQUESTS[:1]) == [_answer(0)]


def test_a_changed_byte_in_a_value_is_computed_again_not_used(tmp_path, caplog):
    path = _filled(tmp_path / "requests.sqlite")
    stored = repr(_answer(17).logprob).encode()
    data = path.read_bytes()
    assert data.count(stored) == 1
    changed = stored[:-1] + (b"1" if stored[-1:] != b"1" else b"2")
    path.write_bytes(data.replace(stored, changed))
    inner = ToyBackend()
    backend = CachedBackend(inner, RequestCache(path, "model"))
    with caplog.at_level(logging.WARNING, logger="evalharness"):
        got = backend.loglikelihood(REQUESTS)
    assert [r.getMessage() for r in caplog.records] == [
        f"request cache {path}: 1 stored answer(s) fail their checksum (damaged); they are computed again"]
    assert inner.calls == 1 and (backend.hits, backend.misses) == (299, 1)
    assert got[17] != _answer(17) and got[16] == _answer(16)  # recomputed by the backend, the rest from the cache
    assert RequestCache(path, "model").get_many(REQUESTS[17:18]) == [got[17]]  # and stored again, checked


def test_a_cache_without_checksums_is_read_and_its_rows_computed_again(tmp_path, caplog):
    path = tmp_path / "requests.sqlite"
    with sqlite3.connect(path) as db:  # the schema before per-value checksums
        db.execute("CREATE TABLE results (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO results VALUES (?, ?)",
                   (request_key("model", REQUESTS[0]), '{"logprob": -1.0, "is_greedy": true, "num_tokens": 3}'))
    with caplog.at_level(logging.WARNING, logger="evalharness"):
        cache = RequestCache(path, "model")
    assert [r.getMessage() for r in caplog.records] == [
        f"request cache {path}: 1 answer(s) stored without a checksum (an older evalharness); they are computed again"]
    assert cache.get_many(REQUESTS[:1]) == [None]
    cache.put_many([(REQUESTS[0], _answer(0))])
    assert cache.get_many(REQUESTS[:1]) == [_answer(0)]


def test_damage_found_mid_run_sets_the_file_aside_and_goes_on(tmp_path, caplog):
    path = _filled(tmp_path / "requests.sqlite")
    cache = RequestCache(path, "model")
    cache._db.close()
    cache._db = _Corrupt()  # what sqlite raises when a page read mid-run turns out malformed
    with caplog.at_level(logging.WARNING, logger="evalharness"):
        assert cache.get_many(REQUESTS[:3]) == [None] * 3
    assert "is damaged (database disk image is malformed); set aside as requests.sqlite.damaged-" in caplog.text
    cache.put_many([(REQUESTS[0], _answer(0))])
    assert cache.get_many(REQUESTS[:1]) == [_answer(0)] and len(cache) == 1


class _Corrupt:
    def execute(self, *args: object) -> None:
        raise sqlite3.DatabaseError("database disk image is malformed")

    def close(self) -> None:
        pass


def test_only_damage_counts_as_damage():
    assert is_damage(sqlite3.DatabaseError("file is not a database"))
    with sqlite3.connect(":memory:") as db:
        with pytest.raises(sqlite3.OperationalError) as busy:
            db.execute("SELECT * FROM no_such_table")
    assert not is_damage(busy.value)  # busy, full, read-only, a wrong query: not a reason to drop the cache


def test_checksum_covers_key_and_value():
    assert checksum("a", "1") != checksum("b", "1") and checksum("a", "1") != checksum("a", "2")


def test_quick_check_findings_are_one_line():
    class Findings:
        def execute(self, sql: str) -> Findings:
            assert sql == "PRAGMA quick_check"
            return self

        def fetchall(self) -> list[tuple[str]]:
            return [("*** in database main ***\nPage 5: btreeInitPage() returns error code 11",), ("Page 6: never used",)]

    assert quick_check(Findings()) == "quick_check: *** in database main *** Page 5: btreeInitPage() returns error code 11"
    with sqlite3.connect(":memory:") as db:
        assert quick_check(db) is None
