"""A backend defined outside the package runs through the same orchestration: CLI, evaluate(), cache, errors."""

from __future__ import annotations

import json

from evalharness import evaluate
from support.cli import cli, one_error_line
from support.paths import REPO
from support.toy_backend import ToyBackend, ToyOptions


def _expected_piqa(data_dir, n: int) -> dict[str, float]:
    """acc / acc_norm / acc_token of the toy backend on the first n PIQA items, computed from the file alone."""
    rows = [json.loads(line) for line in (data_dir / "llm-foundry" / "piqa.jsonl").read_text().splitlines()[:n]]

    def first_best(scores):  # the first maximum wins ties, as the metrics do
        return max(range(len(scores)), key=lambda i: (scores[i], -i))

    hits = {"acc": 0, "acc_norm": 0, "acc_token": 0}
    for row in rows:
        conts = [" " + c for c in row["choices"]]
        lp = [-len(c) for c in conts]
        preds = {"acc": first_best(lp), "acc_norm": first_best([p / len(c) for p, c in zip(lp, row["choices"])]),
                 "acc_token": first_best([p / max(1, len(c.split())) for p, c in zip(lp, conts)])}
        for k, pred in preds.items():
            hits[k] += pred == row["gold"]
    return {k: v / n for k, v in hits.items()}



def test_cli_runs_a_registered_backend_with_typed_options(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))
    out = tmp_path / "out"
    proc = cli("run", "--backend", "support.toy_backend:toy", "--backend-option", "scale=2", "--tasks", "piqa",
               "--limit", "40", "--output-dir", str(out), cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((out / "results.json").read_text())
    expected = _expected_piqa(data_dir, 40)
    assert {k: res["results"]["piqa"][k] for k in expected} == expected
    assert res["backend"] == {"name": "toy", "scale": 2.0} and res["config"]["backend_options"] == {"scale": "2"}
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "requests.sqlite", "results.json",
                                                     "samples_piqa.jsonl"]
    again = cli("run", "--backend", "support.toy_backend:toy", "--backend-option", "scale=2", "--tasks", "piqa",
                "--limit", "40", "--output-dir", str(out), cwd=tmp_path, data_dir=data_dir)
    assert "request cache: 80 reused, 0 computed" in again.stdout


def test_cli_errors_for_a_backend_are_one_line(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO / "tests"))
    bad_key = one_error_line(cli("run", "--backend", "support.toy_backend:toy", "--backend-option", "scal=2",
                                 "--tasks", "piqa", cwd=tmp_path, data_dir=data_dir))
    assert "has no option 'scal'" in bad_key and "scale" in bad_key
    bad_value = one_error_line(cli("run", "--backend", "support.toy_backend:toy", "--backend-option", "scale=big",
                                   "--tasks", "piqa", cwd=tmp_path, data_dir=data_dir))
    assert "expected a number" in bad_value
    cannot = one_error_line(cli("run", "--backend", "support.toy_backend:toy", "--tasks", "jeopardy_em",
                                "--limit", "2", cwd=tmp_path, data_dir=data_dir))
    assert "needs generation requests" in cannot and "'toy'" in cannot
    unknown = one_error_line(cli("run", "--backend", "hff", "--tasks", "piqa", cwd=tmp_path, data_dir=data_dir))
    assert "unknown backend 'hff'" in unknown and "'hf'" in unknown
    assert not (tmp_path / "results").exists()  # nothing ran: no empty output folder left behind


def test_evaluate_takes_a_backend_instance(data_dir):
    backend = ToyBackend(ToyOptions(scale=3.0))
    out = evaluate(tasks="piqa", backend=backend, limit=40, data_dir=data_dir)
    expected = _expected_piqa(data_dir, 40)
    assert {k: out.results["piqa"][k] for k in expected} == expected
    assert backend.calls == 80 and out.backend == {"name": "toy", "scale": 3.0}
