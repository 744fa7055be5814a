"""End to end on the real embedded model (SmolLM2-135M-Instruct, float32) and real items.

Expected predictions were recorded from this harness and agree with lm-evaluation-harness on the same
items (benchmarks/parity_lm_eval.py); every request's log-prob is also checked here against the
independent one-at-a-time reference scorer.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from evalharness.api import evaluate
from evalharness.models.loading import load_model
from evalharness.resources import resource_dir
from evalharness.tasks import TaskRegistry
from support.reference_scoring import reference_loglikelihood

pytestmark = pytest.mark.slow

# predicted choice index per item (language modeling: 1 if the continuation is the greedy one)
EXPECTED = {
    "lambada_openai": [0, 0, 1, 1, 0, 0, 1, 1],
    "piqa": [0, 0, 0, 1, 0, 1, 1, 0],
    "hellaswag": [2, 1, 2, 0, 1, 2, 1, 3],
    "jeopardy": [0, 0, 0, 0, 0, 0, 0, 0],  # the first category's (world_history) first 8 items
    "mmlu": {
        "abstract_algebra": [0, 0, 0, 0, 0, 0, 0, 0],
        "high_school_geography": [3, 0, 0, 0, 0, 3, 0, 0],
        "marketing": [0, 0, 0, 0, 0, 0, 0, 0],
    },
}


@pytest.fixture(scope="module")
def embedded():
    return load_model("smollm2-135m", dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The shipped tasks, with MMLU cut to two subjects to keep the test short."""
    folder = tmp_path_factory.mktemp("tasks")
    for path in resource_dir("tasks").glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    spec = yaml.safe_load((folder / "mmlu.yaml").read_text())
    spec["dataset"]["subsets"] = list(EXPECTED["mmlu"])
    (folder / "mmlu.yaml").write_text(yaml.safe_dump(spec))
    return TaskRegistry(folder)


@pytest.fixture(scope="module")
def run(embedded, registry, data_dir, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("out")
    out = evaluate(embedded.model, embedded.tokenizer, list(EXPECTED), limit=8, batch_size=4, data_dir=data_dir,
                   output_dir=out_dir, registry=registry).to_dict()
    samples = {t: [json.loads(line) for line in (out_dir / f"samples_{t}.jsonl").open()] for t in EXPECTED}
    return out, samples


def _predictions(rows):
    return [r["prediction"] if r["prediction"] is not None else int(r["metrics"]["acc"]) for r in rows]


@pytest.mark.parametrize("task", ["lambada_openai", "piqa", "hellaswag"])
def test_predictions_on_real_items(run, task):
    _, samples = run
    assert _predictions(samples[task]) == EXPECTED[task]


def test_jeopardy_limit_takes_every_category(run):
    """--limit 8 takes the first 8 items of each of the five categories (as MMLU's per subject)."""
    out, samples = run
    rows = samples["jeopardy"]
    assert len(rows) == 40 and out["results"]["jeopardy"]["num_subsets"] == 5
    assert _predictions([r for r in rows if r["subset"] == rows[0]["subset"]]) == EXPECTED["jeopardy"]


def test_mmlu_predictions_per_subject(run):
    out, samples = run
    for subject, expected in EXPECTED["mmlu"].items():
        assert _predictions([r for r in samples["mmlu"] if r["subset"] == subject]) == expected
    assert set(out["groups"]["mmlu"]) == set(EXPECTED["mmlu"])


def test_every_request_matches_reference_scorer(run, embedded):
    _, samples = run
    model, tok = embedded.model, embedded.tokenizer
    for task, rows in samples.items():
        for row in rows[:4]:
            for req, lp, greedy in zip(row["requests"], row["logprobs"], row["is_greedy"]):
                ref_lp, ref_greedy, _ = reference_loglikelihood(model, tok, req["context"], req["continuation"], 8192)
                assert lp == pytest.approx(ref_lp, abs=1e-3), (task, row["doc_id"])
                assert greedy == ref_greedy


def test_aggregates_follow_from_samples(run):
    out, samples = run
    piqa = out["results"]["piqa"]
    assert piqa["n"] == 8
    assert piqa["acc"] == pytest.approx(sum(r["metrics"]["acc"] for r in samples["piqa"]) / 8)
    lam = out["results"]["lambada_openai"]
    mean_lp = sum(r["logprobs"][0] for r in samples["lambada_openai"]) / 8
    assert lam["perplexity"] == pytest.approx(float(torch.tensor(-mean_lp).exp()), rel=1e-6)


def test_cpu_plugin_on_and_off_give_the_same_predictions(embedded, registry, data_dir, tmp_path):
    """The plugin changes speed, not answers: float32, every item's predictions identical, log-probs within the
    plugin's stated float32 tolerance (1e-4, tests/unit/cpu_plugin), or 1e-5 relative for sums over long
    contexts (a 95-token HellaSwag ending differs by 1.3e-4 = 1.4e-6 relative: float32 summation order)."""
    from evalharness.backends.hf import HFOptions

    tasks = ["lambada_openai", "piqa", "hellaswag", "mmlu"]
    samples = {}
    for accelerator in ("auto", "none"):
        out = evaluate(embedded.model, embedded.tokenizer, tasks, limit=16, batch_size=8, data_dir=data_dir,
                       registry=registry, backend_options=HFOptions(accelerator=accelerator),
                       output_dir=tmp_path / accelerator)
        assert out.backend["accelerator"]["enabled"] == (accelerator == "auto")
        samples[accelerator] = {t: [json.loads(x) for x in (tmp_path / accelerator / f"samples_{t}.jsonl").open()]
                                for t in tasks}
    for task in tasks:
        on, off = samples["auto"][task], samples["none"][task]
        assert len(on) == len(off) > 0
        for a, b in zip(on, off):
            assert (a["doc_id"], a["subset"], a["predictions"], a["is_greedy"]) == \
                (b["doc_id"], b["subset"], b["predictions"], b["is_greedy"]), task
            assert a["logprobs"] == pytest.approx(b["logprobs"], rel=1e-5, abs=1e-4)
