"""`evalharness.evaluate` on an in-memory model gives the same numbers as `evalharness run` on its saved weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import evalharness
from support.cli import cli
from support.tiny_models import build_tiny_mpt

TASKS = ["piqa", "lambada_openai", "jeopardy"]


def _train_in_memory(model: torch.nn.Module, tokenizer) -> None:
    """A few optimiser steps, so the evaluated weights exist only in memory (not those on disk)."""
    torch.manual_seed(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    batch = tokenizer(["The quick brown fox jumps over the lazy dog.", "Question: where is Paris?\nAnswer: France"],
                      return_tensors="pt", padding=True)
    model.train()
    for _ in range(3):
        loss = model(**batch, labels=batch["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()


def _without_timing(tasks: dict) -> dict:
    return {name: {k: v for k, v in info.items() if k != "seconds"} for name, info in tasks.items()}


def test_evaluate_in_memory_equals_cli_run(tmp_path, neox_tokenizer_dir, data_dir, monkeypatch):
    from transformers import AutoTokenizer, MptForCausalLM

    start = build_tiny_mpt(tmp_path / "start", neox_tokenizer_dir)
    model = MptForCausalLM.from_pretrained(start, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(start)
    tokenizer.pad_token = tokenizer.eos_token
    _train_in_memory(model, tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    result = evalharness.evaluate(model, tokenizer, TASKS, limit=6, num_fewshot=1, batch_size=4, data_dir=data_dir)
    out = result.to_dict()
    assert list(work.iterdir()) == []  # no output_dir: no files
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    saved = tmp_path / "trained"
    model.save_pretrained(saved)
    AutoTokenizer.from_pretrained(start).save_pretrained(saved)
    proc = cli("run", "--model", str(saved), "--tasks", ",".join(TASKS), "--limit", "6", "--num-fewshot", "1",
               "--batch-size", "4", "--dtype", "float32", "--device", "cpu", "--output-dir", str(tmp_path / "out"),
               cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    ran = json.loads((tmp_path / "out" / "results.json").read_text())

    assert set(out["results"]) == set(TASKS)
    assert out["results"] == ran["results"]  # every metric, stderr and n, exactly
    assert out["groups"] == ran["groups"] and set(out["groups"]["jeopardy"]) == set(ran["groups"]["jeopardy"])
    assert _without_timing(out["tasks"]) == _without_timing(ran["tasks"])
    assert out["data"] == ran["data"]
    assert out["results"]["piqa"]["n"] == 6 and out["tasks"]["piqa"]["fewshot"]["num_fewshot"] == 1
    # the trained weights score differently from the saved starting point: the in-memory weights were used
    start_out = evalharness.evaluate(MptForCausalLM.from_pretrained(start, dtype=torch.float32), tokenizer, ["lambada_openai"],
                                     limit=6, batch_size=4, data_dir=data_dir)
    assert start_out.results["lambada_openai"]["perplexity"] != out["results"]["lambada_openai"]["perplexity"]


def test_evaluate_writes_files_only_when_asked(tmp_path, tiny_mpt_dir, data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_mpt_dir)
    out_dir = tmp_path / "out"
    out = evalharness.evaluate(model, tokenizer, "piqa", limit=3, data_dir=data_dir, output_dir=out_dir)
    # the same files as `evalharness run` writes (no request cache: nothing to resume in memory)
    assert sorted(p.name for p in out_dir.iterdir()) == ["report.html", "results.json", "samples_piqa.jsonl"]
    assert json.loads((out_dir / "results.json").read_text())["results"] == out.results
    assert len(Path(out_dir / "samples_piqa.jsonl").read_text().splitlines()) == 3


def test_run_from_python_writes_what_the_cli_writes(tmp_path, tiny_mpt_dir, data_dir):
    from evalharness import RunConfig, run

    config = RunConfig(model=str(tiny_mpt_dir), tasks=("piqa", "jeopardy"), limit=4, dtype="float32", device="cpu",
                       data_dir=str(data_dir), output_dir=str(tmp_path / "py"))
    out = run(config, show_progress=False)
    proc = cli("run", "--model", str(tiny_mpt_dir), "--tasks", "piqa,jeopardy", "--limit", "4", "--dtype", "float32",
               "--device", "cpu", "--output-dir", str(tmp_path / "cli"), cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    files = ["report.html", "requests.sqlite", "results.json", "samples_jeopardy.jsonl", "samples_piqa.jsonl"]
    assert sorted(p.name for p in (tmp_path / "py").iterdir()) == files
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == files
    ran = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert out.results == ran["results"] and out.output_dir == tmp_path / "py"
    for name in ("samples_piqa.jsonl", "samples_jeopardy.jsonl"):
        assert (tmp_path / "py" / name).read_text() == (tmp_path / "cli" / name).read_text()
    # --limit 4: Jeopardy's first 4 of each of its five categories, recorded as such
    assert ran["tasks"]["jeopardy"]["limit_per_subset"] is True and ran["tasks"]["piqa"]["limit_per_subset"] is False
    assert ran["tasks"]["jeopardy"]["num_items"] == 20 and ran["results"]["jeopardy"]["num_subsets"] == 5
