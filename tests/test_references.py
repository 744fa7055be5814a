"""The shipped published scores (transcribed from ../shared/reference) and user reference files."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from evalharness.errors import ConfigError
from evalharness.report.references import builtin_reference_file, check_models, load_references, read_reference_file

REPO = Path(__file__).resolve().parent.parent
SHARED_CSV = REPO.parent / "shared" / "reference" / "published_scores.csv"
TASKS = {"lambada_openai", "piqa", "hellaswag", "mmlu", "jeopardy", "humaneval"}
METRICS = {"acc", "acc_token", "pass@1"}
HARNESSES = {"llm-foundry", "lm-eval@e47e01b", "helm", "original", "paper"}


def test_script_reproduces_the_shipped_file(tmp_path):
    """reports/published_scores.csv is exactly what the normalisation script makes of the shared file."""
    assert SHARED_CSV.is_file(), f"shared reference scores not found at {SHARED_CSV}"
    out = tmp_path / "published_scores.csv"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "normalize_published_scores.py"), str(SHARED_CSV),
                           str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == builtin_reference_file().read_bytes()


def test_every_shared_row_is_kept_with_its_source():
    with SHARED_CSV.open(encoding="utf-8", newline="") as f:
        shared = list(csv.DictReader(f))
    refs = load_references()
    assert len(refs) == len(shared) == 132
    for src, ref in zip(shared, refs):
        assert ref.source == src["source"] and ref.source
        scale = 100 if "_pct" in src["metric"].split(" ")[0] else 1
        assert ref.value == pytest.approx(float(src["value"]) / scale, abs=1e-9)
        assert ref.num_fewshot == int(src["num_fewshot"])


def test_shipped_rows_are_normalised():
    refs = load_references()
    assert {r.task for r in refs} == TASKS
    assert {r.metric for r in refs} == METRICS
    assert {r.harness for r in refs} == HARNESSES
    assert all(0.0 <= r.value <= 1.0 for r in refs)
    models = {r.model for r in refs}
    assert "llama-30b" in models and not any("33" in m for m in models)  # LLaMA-30B = LLaMA-33B, one name
    assert {r.display_name for r in refs if r.model == "llama-30b"} == {"LLaMA-30B"}
    assert all(m == m.lower() and " " not in m for m in models)
    foundry_piqa = [r for r in refs if r.model == "mpt-7b" and r.task == "piqa" and r.num_fewshot == 0]
    assert [(r.metric, r.harness, r.value) for r in foundry_piqa] == [("acc_token", "llm-foundry", 0.802503)]
    llama_paper = next(r for r in refs if r.model == "llama-30b" and r.task == "piqa" and r.harness == "paper")
    assert llama_paper.value == pytest.approx(0.823)
    jeopardy = {r.aggregate for r in refs if r.task == "jeopardy"}
    assert jeopardy == {"macro"}


def test_check_models_suggests_close_names():
    refs = load_references()
    assert check_models(["LLaMA-7B", "gpt3-175b"], refs) == ["llama-7b", "gpt3-175b"]
    with pytest.raises(ConfigError, match=r"no published scores for model 'falcon7b'; did you mean 'falcon-7b'\?"):
        check_models(["falcon7b"], refs)


def test_user_reference_file_is_added(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("model,task,metric,num_fewshot,value,source\nMy-Model,piqa,acc,0,0.5,my notebook\n", encoding="utf-8")
    refs = load_references([path])
    mine = refs[-1]
    assert (mine.model, mine.display_name, mine.harness, mine.aggregate) == ("my-model", "My-Model", "unknown", None)
    assert check_models(["my-model"], refs) == ["my-model"]


@pytest.mark.parametrize("body, message", [
    ("model,task,metric,value,source\nm,piqa,acc,0.5,s\n", "lacks column(s) num_fewshot"),
    ("model,task,metric,num_fewshot,value,source\nm,piqa,acc,0,75.1,s\n", ":2: field 'value': 75.1 is not a fraction"),
    ("model,task,metric,num_fewshot,value,source\nm,piqa,acc,0,0.5,s\nm,piqa,acc,five,0.5,s\n",
     ":3: field 'num_fewshot': 'five' is not a whole number"),
    ("model,task,metric,num_fewshot,value,source\nm,piqa,acc,0,0.5,\n", ":2: field 'source' is empty"),
    ("model,task,metric,num_fewshot,value,source,aggregate\nm,mmlu,acc,0,0.5,s,mean\n", "field 'aggregate': 'mean'"),
    ("model,task,metric,num_fewshot,value,source\nm,piqa,acc,0,abc,s\n", "field 'value': 'abc' is not a number"),
])
def test_bad_reference_files_name_file_line_and_field(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        read_reference_file(path)
    assert str(path) in str(info.value)


def test_missing_reference_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_references([tmp_path / "nope.csv"])
