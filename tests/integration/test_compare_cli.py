"""`evalharness compare` on real runs of two tiny random MPTs (the same items), as a user runs it."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from support.cli import cli, one_error_line
from support.tiny_models import build_tiny_mpt


def _run(model, tasks: str, limit: int, out, data_dir, cwd):
    proc = cli("run", "--model", str(model), "--tasks", tasks, "--limit", str(limit), "--dtype", "float32",
               "--output-dir", str(out), cwd=cwd, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def runs(tiny_mpt_dir, neox_tokenizer_dir, data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    other = build_tiny_mpt(root / "mpt-seed1", neox_tokenizer_dir, seed=1)
    a = _run(tiny_mpt_dir, "piqa,lambada_openai", 12, root / "a", data_dir, root)
    b = _run(other, "piqa,lambada_openai", 12, root / "b", data_dir, root)
    short = _run(other, "piqa", 5, root / "short", data_dir, root)
    return root, a, b, short


def test_compare_two_real_runs(runs):
    root, a, b, _ = runs
    proc = cli("compare", str(a), str(b), "--flips", "3", cwd=root)
    assert proc.returncode == 0, proc.stderr
    results_a = json.loads((a / "results.json").read_text(encoding="utf-8"))["results"]
    results_b = json.loads((b / "results.json").read_text(encoding="utf-8"))["results"]
    piqa = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| piqa | acc_token | 0 | 12 |"))
    cells = [c.strip() for c in piqa.strip("|").split("|")]
    # the paired table's A and B are the runs' own headline values, recomputed from the samples
    assert cells[4] == f"{results_a['piqa']['acc_token']:.3f}" and cells[5] == f"{results_b['piqa']['acc_token']:.3f}"
    assert cells[8].endswith("(mcnemar)")
    doc = json.loads(cli("compare", str(a), str(b), "--json", "--flips", "2", cwd=root).stdout)
    by_task = {t["task"]: t for t in doc["tasks"]}
    assert set(by_task) == {"piqa", "lambada_openai"}
    assert by_task["piqa"]["a"] == pytest.approx(results_a["piqa"]["acc_token"])
    assert by_task["lambada_openai"]["b"] == pytest.approx(results_b["lambada_openai"]["acc"])
    flipped = by_task["piqa"]["better"] + by_task["piqa"]["worse"]
    assert len(by_task["piqa"]["flips"]) == min(2, flipped)
    table = pd.read_csv(io.StringIO(cli("compare", str(a), str(b), "--csv", "--metric", "lambada_openai=perplexity",
                                        cwd=root).stdout))
    lambada = table[table.task == "lambada_openai"].iloc[0]
    assert lambada.metric == "perplexity" and lambada.test == "bootstrap"
    assert lambada.a == pytest.approx(results_a["lambada_openai"]["perplexity"], rel=1e-9)


def test_compare_refuses_runs_on_other_items(runs):
    root, a, _, short = runs
    line = one_error_line(cli("compare", str(a), str(short), cwd=root))
    assert line == "evalharness: error: piqa: A has 12 items, B has 5; run both with the same --limit"


def test_report_page_with_the_paired_section(runs):
    root, a, b, _ = runs
    proc = cli("report", str(a), str(b), "--paired", "-o", str(root / "board.html"), cwd=root)
    assert proc.returncode == 0, proc.stderr
    page = (root / "board.html").read_text(encoding="utf-8")
    assert 'id="paired"' in page and "<td>piqa</td><td>acc_token</td><td>0</td><td>12</td>" in page
