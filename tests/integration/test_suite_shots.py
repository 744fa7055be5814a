"""A suite's own shot count (as mpt-table's zero shots) through the command line, with the toy backend."""

from __future__ import annotations

import json
import os

from support.cli import cli
from support.paths import REPO

SUITES = """\
zero:
  num_fewshot: 0
  tasks: [copa, winograd]
  absent: [squad]
"""


def _winograd_toy_acc(data_dir, n: int) -> float:
    """Zero-shot winograd under the toy backend with context_scale=1: the continuation is the same under both
    options, so the shorter option (the first on a tie) is predicted."""
    rows = [json.loads(line) for line in (data_dir / "llm-foundry" / "winograd_wsc.jsonl").read_text().split("\n")[:n]]
    hits = 0
    for row in rows:
        lengths = [len(o) for o in row["context_options"]]
        hits += lengths.index(min(lengths)) == row["gold"]
    return hits / n


def test_suite_shots_and_absent_benchmarks(tmp_path, data_dir, monkeypatch):
    # this checkout's package (not another installed copy) and the toy backend
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{REPO / 'tests'}")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "suites.yaml").write_text(SUITES)
    out = tmp_path / "out"
    args = ("run", "--backend", "support.toy_backend:toy", "--backend-option", "context_scale=1", "--include-path",
            str(folder), "--suite", "zero", "--limit", "6")
    proc = cli(*args, "--output-dir", str(out), cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "suite zero: no data here for squad (not run)" in proc.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["num_fewshot"] == 0 and res["config"]["extra"] == {"suite": "zero", "suite_absent": ["squad"]}
    assert res["tasks"]["winograd"]["fewshot"]["num_fewshot"] == 0  # the task's own default is 3
    assert res["results"]["winograd"]["acc_token"] == _winograd_toy_acc(data_dir, 6)
    # --num-fewshot wins over the suite's
    again = cli(*args, "--num-fewshot", "1", "--output-dir", str(tmp_path / "again"), cwd=tmp_path, data_dir=data_dir)
    assert again.returncode == 0, again.stderr
    res = json.loads((tmp_path / "again" / "results.json").read_text())
    assert res["tasks"]["winograd"]["fewshot"]["num_fewshot"] == 1 and res["tasks"]["copa"]["fewshot"]["num_fewshot"] == 1


def test_per_task_suite_shots(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{REPO}{os.pathsep}{REPO / 'tests'}")
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "suites.yaml").write_text("some:\n  num_fewshot: {copa: 2}\n  tasks: [copa, winograd]\n")
    proc = cli("run", "--backend", "support.toy_backend:toy", "--include-path", str(folder), "--suite", "some",
               "--limit", "2", "--output-dir", str(tmp_path / "out"), cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    # copa at the suite's 2 shots, winograd at its own 3
    assert res["config"]["num_fewshot"] == {"copa": 2, "winograd": 3}
    assert res["tasks"]["copa"]["fewshot"]["num_fewshot"] == 2 and res["tasks"]["winograd"]["fewshot"]["num_fewshot"] == 3
    bad = folder / "suites.yaml"
    bad.write_text("some:\n  num_fewshot: {piqa: 2}\n  tasks: [copa]\n")
    err = cli("run", "--backend", "support.toy_backend:toy", "--include-path", str(folder), "--suite", "some",
              cwd=tmp_path, data_dir=data_dir)
    assert err.returncode == 2 and "field 'num_fewshot' names task(s) not in the suite: ['piqa']" in err.stderr
