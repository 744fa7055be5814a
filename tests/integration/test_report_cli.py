"""`evalharness report` and the report at the end of `evalharness run`, as a user runs them."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from support.cli import cli, one_error_line
from support.report_helpers import make_results, write_run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    a = write_run(root / "a", make_results("model-a", {"piqa": {"acc_token": 0.7}, "lambada_openai": {"acc": 0.4}}))
    b = write_run(root / "b", make_results("model-b", {"piqa": {"acc_token": 0.6}, "lambada_openai": {"acc": 0.5}}))
    return root, a, b


def test_report_markdown_to_stdout(two_runs):
    root, a, b = two_runs
    proc = cli("report", str(a / "results.json"), str(b), "--compare", "mpt-7b,gpt3-175b", cwd=root)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "| task | metric | shots | chance | protocol | model-a | model-b | MPT-7B | GPT-3 175B |"
    assert lines[2].startswith("| piqa | acc_token | 0 | 0.500 | llm-foundry | 0.700 ± 0.010 | 0.600 ± 0.010 | **0.803** |")
    assert "Not comparable with the row's protocol" in proc.stdout



def test_report_title_and_alias(two_runs):
    root, a, b = two_runs
    proc = cli("report", str(a), str(b), "--compare", "llama-33b", "--title", "Checkpoints <1 & 2>", "-o",
               str(root / "t.html"), cwd=root)
    assert proc.returncode == 0, proc.stderr
    html = (root / "t.html").read_text(encoding="utf-8")
    assert "<title>Checkpoints &lt;1 &amp; 2&gt;</title>" in html and "LLaMA-30B" in html
    proc = cli("report", str(a), "--title", "Checkpoints", cwd=root)
    assert proc.returncode == 0 and proc.stdout.startswith("**Checkpoints**\n")
    assert "| average | 2/2 tasks |" in proc.stdout


def test_report_csv_and_html_files(two_runs):
    root, a, b = two_runs
    proc = cli("report", str(a), str(b), "--format", "csv", "--output", str(root / "table.csv"), cwd=root)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(io.StringIO((root / "table.csv").read_text(encoding="utf-8")), keep_default_na=False)
    assert set(table.column) == {"model-a", "model-b"} and set(table.task) == {"piqa", "lambada_openai"}
    proc = cli("report", str(a), str(b), "-o", str(root / "board.html"), "--metric", "piqa=acc_token", cwd=root)
    assert proc.returncode == 0, proc.stderr
    html = (root / "board.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "model-a" in html and "model-b" in html


def test_report_errors_are_one_line(two_runs, tmp_path):
    root, a, _ = two_runs
    assert "did you mean 'llama-7b'" in one_error_line(cli("report", str(a), "--compare", "lama-7b", cwd=root))
    assert "not found" in one_error_line(cli("report", str(tmp_path / "nothing"), cwd=root))
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    assert "not an evalharness results.json" in one_error_line(cli("report", str(tmp_path / "bad.json"), cwd=root))
    assert "TASK=METRIC" in one_error_line(cli("report", str(a), "--metric", "piqa", cwd=root))


def test_run_prints_the_table_and_writes_report_html(tiny_mpt_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    proc = cli("run", "--model", str(tiny_mpt_dir), "--tasks", "piqa,lambada_openai", "--limit", "3", "--dtype",
               "float32", "--compare", "mpt-7b", "--output-dir", str(out), cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "| task | metric | shots | chance | protocol |" in proc.stdout
    row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("| piqa | acc_token | 0 | 0.500 | llm-foundry |"))
    assert row.endswith("0.803 |") or row.endswith("**0.803** |")
    acc_token = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]["piqa"]["acc_token"]
    assert f"{acc_token:.3f} ± " in row
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "MPT-7B" in html and "samples" in html and "report.html" in proc.stdout


def test_run_with_unknown_compare_fails_before_loading(data_dir, tmp_path):
    line = one_error_line(cli("run", "--tasks", "piqa", "--compare", "gpt-3", "--model", "/nonexistent/model",
                              "--output-dir", str(tmp_path / "out"), cwd=tmp_path, data_dir=data_dir))
    assert "no published scores for model 'gpt-3'" in line
    assert not (tmp_path / "out").exists()


def test_report_layouts_from_the_command_line(two_runs):
    root, a, _ = two_runs
    proc = cli("report", str(a), "--layout", "mpt-7b-table", cwd=root)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2] == "| task | metric | shots | chance | protocol | model-a | MPT-7B | LLaMA-7B | Falcon-7B |"
    assert [ln.split(" | ")[0] for ln in lines[4:16]] == [
        "| lambada_openai", "| piqa", "| copa", "| boolq", "| arc_challenge", "| arc_easy", "| hellaswag",
        "| jeopardy", "| mmlu", "| triviaqa", "| winograd", "| winogrande"]
    proc = cli("report", "--layout", "gauntlet", "--format", "csv", cwd=root)  # published models alone
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(io.StringIO(proc.stdout))
    assert table.model.nunique() == 16 and set(table.composite) == {"gauntlet-v0"}
    assert "unknown report layout 'mpt'" in one_error_line(cli("report", str(a), "--layout", "mpt", cwd=root))
    assert "at least one results.json" in one_error_line(cli("report", cwd=root))
