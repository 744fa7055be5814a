"""Two runs' folders compared item by item: the check every multi-process test makes against one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def samples(folder: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"samples_{task}.jsonl").read_text().splitlines()]


def assert_same_answers(one: Path, two: Path, tasks: tuple[str, ...]) -> None:
    """Every item present once, in order, with the same prediction and metrics; log-probs (and a log-prob metric)
    within 1e-4: a sharded model may run a layer through other kernels than one process does (last_layer.py)."""
    for task in tasks:
        a, b = samples(one, task), samples(two, task)
        assert [s["doc_id"] for s in b] == [s["doc_id"] for s in a], task
        assert len({(s["subset"], s["doc_id"]) for s in b}) == len(b), f"{task}: duplicated items"
        for x, y in zip(a, b):
            for key in ("requests", "prediction", "predictions", "completions", "is_greedy", "num_tokens"):
                assert y.get(key) == x.get(key), (task, x["doc_id"], key)
            assert y.get("metrics") == pytest.approx(x.get("metrics"), abs=1e-4), (task, x["doc_id"])
            assert y.get("logprobs", []) == pytest.approx(x.get("logprobs", []), abs=1e-4), (task, x["doc_id"])
    ra, rb = (json.loads((d / "results.json").read_text())["results"] for d in (one, two))
    for task in tasks:
        assert rb[task] == pytest.approx(ra[task], rel=1e-5, abs=1e-5), task
