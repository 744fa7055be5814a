"""A finished run's files are moved aside, never overwritten, when a different run would replace them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from evalharness.results import EvalResults, TaskResult, write_samples


def _finished_run(folder, tasks=("piqa", "hellaswag")):
    folder.mkdir(exist_ok=True)
    results = EvalResults({t: TaskResult(t, {"acc": 0.5, "n": 2}) for t in tasks}, config={},
                          created="2026-12-06T10:00:00+00:00")
    for t in tasks:
        write_samples(folder / f"samples_{t}.jsonl", [{"doc_id": 0, "acc": 1}, {"doc_id": 1, "acc": 0}])
    results.write(folder)
    (folder / "report.html").write_text("<html></html>")
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_the_same_samples_again_move_nothing(tmp_path):
    before = _finished_run(tmp_path / "out")
    write_samples(tmp_path / "out" / "samples_piqa.jsonl", [{"doc_id": 0, "acc": 1}, {"doc_id": 1, "acc": 0}])
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


def test_different_samples_move_the_finished_run_aside_whole(tmp_path, caplog):
    out = tmp_path / "out"
    before = _finished_run(out)
    with caplog.at_level(logging.WARNING, logger="evalharness"):
        write_samples(out / "samples_piqa.jsonl", [{"doc_id": 0, "acc": 0}])
    earlier = out / "earlier-2026-12-06T100000Z"
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["earlier-2026-12-06T100000Z", "samples_piqa.jsonl"]
    assert caplog.messages == [f"{out}: this run's samples_piqa.jsonl differs from the finished run's; the finished "
                               "run's files are kept in earlier-2026-12-06T100000Z/"]


def test_results_with_fewer_tasks_move_the_finished_run_aside(tmp_path, caplog):
    out = tmp_path / "out"
    _finished_run(out)
    fewer = EvalResults({"piqa": TaskResult("piqa", {"acc": 0.5, "n": 2})}, config={}, created="2026-12-06T11:00:00+00:00")
    with caplog.at_level(logging.WARNING, logger="evalharness"):
        fewer.write(out)
    assert "this run lacks hellaswag of the finished run" in caplog.text
    kept = json.loads((out / "earlier-2026-12-06T100000Z" / "results.json").read_text())
    assert set(kept["results"]) == {"piqa", "hellaswag"}
    assert set(json.loads((out / "results.json").read_text())["results"]) == {"piqa"}


def test_results_with_the_same_or_more_tasks_replace_in_place(tmp_path):
    out = tmp_path / "out"
    _finished_run(out)
    more = EvalResults({t: TaskResult(t, {"acc": 0.5, "n": 2}) for t in ("piqa", "hellaswag", "mmlu")}, config={})
    more.write(out)
    assert not list(out.glob("earlier-*"))


def test_this_runs_own_samples_stay_when_the_finished_run_is_moved_aside(tmp_path):
    """A run of other tasks: the finished run's files go aside, the samples this run wrote stay (a task both
    runs wrote with the same lines is also copied aside, so the finished run stays whole)."""
    import os
    import time

    out = tmp_path / "out"
    before = _finished_run(out)
    old = time.time() - 10  # the finished run ended earlier
    for p in out.iterdir():
        os.utime(p, (old, old))
    write_samples(out / "samples_piqa.jsonl", [{"doc_id": 0, "acc": 1}, {"doc_id": 1, "acc": 0}])  # same lines
    write_samples(out / "samples_mmlu.jsonl", [{"doc_id": 0, "acc": 1}])
    EvalResults({t: TaskResult(t, {"acc": 0.5, "n": 2}) for t in ("piqa", "mmlu")}, config={}).write(out)
    earlier = out / "earlier-2026-12-06T100000Z"
    assert {p.name: p.read_bytes() for p in earlier.iterdir()} == before
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["results.json", "samples_mmlu.jsonl",
                                                                   "samples_piqa.jsonl"]
    assert set(json.loads((out / "results.json").read_text())["results"]) == {"piqa", "mmlu"}


def test_a_copy_aside_that_fails_leaves_no_half_file(tmp_path, monkeypatch):
    import errno
    import shutil

    import pytest

    from evalharness.earlier_run import copy_whole
    from evalharness.write_failure import WriteError

    source = tmp_path / "samples_piqa.jsonl"
    source.write_text("line\n" * 100)

    def half_then_full(src, dst):
        Path(dst).write_text("li")
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    monkeypatch.setattr(shutil, "copy2", half_then_full)
    (tmp_path / "earlier").mkdir()
    with pytest.raises(WriteError) as info:
        copy_whole(source, tmp_path / "earlier" / source.name)
    assert info.value.filename == str(tmp_path / "earlier" / source.name)
    assert list((tmp_path / "earlier").iterdir()) == []
