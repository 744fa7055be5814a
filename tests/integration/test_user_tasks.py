"""A task written into a folder outside the package runs from the command line and from evaluate(), the same."""

from __future__ import annotations

import json

import torch

from evalharness import evaluate
from support.cli import cli

SPEC = """\
name: piqa_plain
description: PIQA with a prompt of my own
output_type: multiple_choice
dataset: {format: icl_multiple_choice, path: llm-foundry/piqa.jsonl}
prompt: {context: plain.jinja, choices: doc.choices, gold: doc.gold}
metrics:
  - acc
  - {name: acc_token, harnesses: [my-lab]}
headline: acc_token
baseline: 0.5
category: commonsense_reasoning
"""


def _folder(tmp_path):
    folder = tmp_path / "user_tasks"
    folder.mkdir()
    (folder / "piqa_plain.yaml").write_text(SPEC, encoding="utf-8")
    (folder / "plain.jinja").write_text("{{ doc.query | trim }}", encoding="utf-8")
    return folder


def test_user_task_from_the_cli_and_from_evaluate(tmp_path, tiny_mpt_dir, data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = _folder(tmp_path)
    listed = cli("list", "--include-path", str(folder), cwd=tmp_path)
    line = next(ln for ln in listed.stdout.splitlines() if ln.strip().startswith("piqa_plain"))
    assert f"[{folder}]" in line  # where the task comes from
    out = tmp_path / "out"
    proc = cli("run", "--model", str(tiny_mpt_dir), "--include-path", str(folder), "--tasks", "piqa_plain,piqa",
               "--limit", "8", "--dtype", "float32", "--output-dir", str(out), cwd=tmp_path, data_dir=data_dir)
    assert proc.returncode == 0, proc.stderr
    ran = json.loads((out / "results.json").read_text())
    info = ran["tasks"]["piqa_plain"]
    assert info["origin"] == str(folder) and info["headline_metric"] == "acc_token"
    assert info["metrics"]["acc_token"]["harnesses"] == ["my-lab"] and ran["tasks"]["piqa"]["origin"] == "shipped"
    sample = json.loads((out / "samples_piqa_plain.jsonl").read_text().splitlines()[0])
    first = json.loads((data_dir / "llm-foundry" / "piqa.jsonl").read_text().splitlines()[0])
    assert sample["requests"][0]["context"] == first["query"].strip()  # the user's template, not the shipped one

    model = AutoModelForCausalLM.from_pretrained(tiny_mpt_dir, dtype=torch.float32)
    got = evaluate(model, AutoTokenizer.from_pretrained(tiny_mpt_dir), "piqa_plain", task_paths=[folder], limit=8,
                   data_dir=data_dir)
    assert got.results["piqa_plain"] == ran["results"]["piqa_plain"]  # every value, stderr and n
