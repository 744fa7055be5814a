"""Resumable runs: the request cache, and real runs killed with SIGKILL then resumed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evalharness.backends.base import Backend
from evalharness.backends.cache import CachedBackend, RequestCache
from evalharness.requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult


def test_cache_round_trip_and_model_key(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite", "model-A")
    ll = LoglikelihoodRequest("ctx", " cont")
    gen = GenerateRequest("prompt", ("\n",), 8)
    cache.put_many([(ll, LoglikelihoodResult(-1.5, True, 2)), (gen, GenerateResult(("x",), (3,), (True,)))])
    assert cache.get_many([ll, gen, LoglikelihoodRequest("ctx", " other")]) == [
        LoglikelihoodResult(-1.5, True, 2), GenerateResult(("x",), (3,), (True,)), None]
    cache.close()
    again = RequestCache(tmp_path / "c.sqlite", "model-A")
    assert len(again) == 2 and again.get_many([ll])[0].logprob == -1.5
    assert RequestCache(tmp_path / "c.sqlite", "model-B").get_many([ll]) == [None]  # other weights or dtype


class _CountingBackend(Backend):
    """A fake backend that records which requests it was asked to compute."""

    name = "counting"

    def __init__(self) -> None:
        self.computed: list[str] = []

    def identity(self) -> str:
        return "counting"

    def generate_until(self, requests, *, progress=None, on_results=None, known=None):
        raise AssertionError("not used")

    def loglikelihood(self, requests, *, progress=None, on_results=None, known=None):
        out = []
        for i, r in enumerate(requests):
            if known is not None and known[i] is not None:
                out.append(known[i])
                continue
            self.computed.append(r.continuation)
            res = LoglikelihoodResult(-float(len(r.continuation)), False, 1)
            if on_results:
                on_results([(i, res)])
            out.append(res)
        return out


def test_cached_backend_computes_only_missing(tmp_path):
    inner = _CountingBackend()
    backend = CachedBackend(inner, RequestCache(tmp_path / "c.sqlite", "m"))
    first = [LoglikelihoodRequest("c", x) for x in (" a", " bb")]
    backend.loglikelihood(first)
    res = backend.loglikelihood(first + [LoglikelihoodRequest("c", " ccc")])
    assert inner.computed == [" a", " bb", " ccc"]
    assert [r.logprob for r in res] == [-2.0, -3.0, -4.0]
    assert (backend.hits, backend.misses) == (2, 3)


RUN_ARGS = ["--tasks", "lambada_openai,piqa,hellaswag", "--limit", "12", "--batch-size", "2", "--threads", "1"]


def _run_cli(out_dir: Path, data_dir: Path, extra: list[str] = ()) -> subprocess.Popen:
    env = {**os.environ, "EVALHARNESS_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "evalharness", "run", *RUN_ARGS, "--output-dir", str(out_dir), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cached(out_dir: Path) -> int:
    """Rows in a run's request cache (0 before it exists); readable while the run writes (SQLite WAL)."""
    import sqlite3

    path = out_dir / "requests.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:  # created but the table not yet
        return 0


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_gives_identical_results(tmp_path, data_dir):
    reference = tmp_path / "uninterrupted"
    started = time.perf_counter()
    proc = _run_cli(reference, data_dir)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    full = time.perf_counter() - started

    resumed = tmp_path / "killed"
    rng = random.Random(20261122)
    # 1st kill at a random time (possibly while the model loads); 2nd and 3rd in the middle of scoring,
    # once a random number of new results has reached the cache.
    proc = _run_cli(resumed, data_dir)
    time.sleep(rng.uniform(0.1, 0.5) * full)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(2):
        before = _cached(resumed)
        target = before + rng.randint(2, 12)
        proc = _run_cli(resumed, data_dir, ["--resume"])
        while _cached(resumed) < target:
            assert proc.poll() is None, "the run finished before it could be killed"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _cached(resumed) < 84  # 12 + 2 x 12 + 4 x 12 requests: the run was cut short
    proc = _run_cli(resumed, data_dir, ["--resume"])
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    ref = json.loads((reference / "results.json").read_text())
    got = json.loads((resumed / "results.json").read_text())
    assert got["results"] == ref["results"]  # bit-identical metrics
    assert got["cache"]["hits"] > 0
    for task in ("lambada_openai", "piqa", "hellaswag"):
        assert (resumed / f"samples_{task}.jsonl").read_text() == (reference / f"samples_{task}.jsonl").read_text()
