"""The shipped published scores (transcribed from ../shared/reference) and user reference files."""

from __future__ import annotations

import csv
import re
import subprocess
import sys

import pytest

from evalharness.errors import ConfigError
from evalharness.report.references import builtin_reference_file, check_models, load_references, read_reference_file
from support.paths import REPO

SHARED_CSV = REPO.parent / "shared" / "reference" / "published_scores.csv"
BIGBENCH = {"conceptual_combinations", "conlang_translation", "cs_algorithms", "dyck_languages", "elementary_math_qa",
            "language_identification", "logical_deduction", "misconceptions", "movie_recommendation", "novel_concepts",
            "operators", "qa_wikidata", "repeat_copy_logic", "strange_stories", "strategy_qa", "understanding_fables"}
GAUNTLET = {"gauntlet:average", "gauntlet:world_knowledge", "gauntlet:commonsense_reasoning",
            "gauntlet:language_understanding", "gauntlet:symbolic_problem_solving", "gauntlet:reading_comprehension"}
TASKS = ({"lambada_openai", "piqa", "hellaswag", "mmlu", "jeopardy", "humaneval", "copa", "boolq", "arc_easy",
          "arc_challenge", "winograd", "winogrande", "triviaqa", "openbook_qa", "coqa", "squad", "logi_qa", "math_qa",
          "pubmed_qa_labeled", "simple_arithmetic_nospaces", "simple_arithmetic_withspaces"}
         | {f"bigbench_{x}" for x in BIGBENCH} | GAUNTLET)
METRICS = {"acc", "acc_token", "exact_match", "pass@1", "composite"}
HARNESSES = {"llm-foundry", "lm-eval@e47e01b", "helm", "original", "paper"}
SHARED_ROWS = 994


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
    assert len(refs) == len(shared) == SHARED_ROWS
    for src, ref in zip(shared, refs):
        assert ref.source == src["source"] and ref.source
        scale = 100 if "_pct" in src["metric"].split(" ")[0] else 1
        assert ref.value == pytest.approx(float(src["value"]) / scale, abs=1e-9)
        if src["num_fewshot"]:
            assert ref.num_fewshot == int(src["num_fewshot"])
        else:  # only the gauntlet composites mix shot counts
            assert ref.num_fewshot is None and ref.task in GAUNTLET and ref.metric == "composite"


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
    assert {r.task for r in refs if r.metric == "composite"} == GAUNTLET
    assert all(r.num_fewshot is None for r in refs if r.task in GAUNTLET)
    schema = {r.metric for r in refs if r.task in ("winograd", "winogrande") and r.harness == "llm-foundry"}
    assert schema == {"acc_token"}
    assert {(r.metric, r.harness) for r in refs if r.task == "triviaqa"} == {("exact_match", "llm-foundry"),
                                                                            ("exact_match", "paper")}


def test_hand_checked_rows():
    """Values checked by hand against ../shared/reference/published_scores.csv (and LLM Foundry's results.md)."""
    refs = load_references()

    def one(model: str, task: str, harness: str, shots: int | None):
        hits = [r for r in refs if (r.model, r.task, r.harness, r.num_fewshot) == (model, task, harness, shots)]
        assert len(hits) == 1, hits
        return hits[0]

    copa = one("mpt-7b", "copa", "llm-foundry", 0)  # shared CSV line 183: 0.8
    assert (copa.metric, copa.value, copa.display_name) == ("acc_token", 0.8, "MPT-7B")
    winograd = one("mpt-7b", "winograd", "llm-foundry", 0)  # line 188: schema task, 0.868132
    assert (winograd.metric, winograd.value) == ("acc_token", 0.868132)
    dyck = one("llama-30b", "bigbench_dyck_languages", "llm-foundry", 10)  # line 712: LM accuracy, 0.369
    assert (dyck.metric, dyck.value) == ("acc", 0.369)
    average = one("mpt-7b", "gauntlet:average", "llm-foundry", None)  # line 824: 0.310326, num_fewshot empty
    assert (average.metric, average.aggregate, average.value) == ("composite", "macro", 0.310326)
    gpt3_copa = one("gpt3-175b", "copa", "paper", 0)  # line 960: 91.0 (SuperGLUE COPA, dev)
    assert (gpt3_copa.metric, gpt3_copa.value) == ("acc_token", pytest.approx(0.91))
    assert "dev" in gpt3_copa.note
    gpt3_arc = one("gpt3-175b", "arc_challenge", "paper", 0)  # line 975: 51.4 (ARC-Challenge, test)
    assert (gpt3_arc.metric, gpt3_arc.value) == ("acc", pytest.approx(0.514))
    assert "unconditional" in gpt3_arc.note and "test" in gpt3_arc.note
    gpt3_trivia = one("gpt3-175b", "triviaqa", "paper", 0)  # line 985: 64.3, closed-book exact match
    assert (gpt3_trivia.metric, gpt3_trivia.value) == ("exact_match", pytest.approx(0.643))
    models = {r.model for r in refs}
    assert {"mpt-7b-instruct", "mpt-7b-chat", "falcon-7b-instruct", "pythia-6.9b", "pythia-12b", "gpt-j-6b",
            "opt-6.7b", "redpajama-incite-7b-base", "redpajama-incite-7b-instruct", "stablelm-tuned-alpha-7b"} <= models


def test_script_rejects_rows_no_rule_knows(tmp_path):
    """An unknown model, task or metric, or an empty shot count outside the gauntlet, stops the script."""
    header = "model,task,metric,num_fewshot,value,source\n"
    good = "MPT-7B [mosaicml/mpt-7b],COPA,accuracy_frac (llm-foundry InContextLearningMultipleChoiceAccuracy),0,0.8,s\n"
    cases = {
        "unknown model": good.replace("MPT-7B [mosaicml/mpt-7b]", "MPT-8B"),
        "unknown task": good.replace("COPA", "SIQA"),
        "no normalisation rule": good.replace("InContextLearningMultipleChoiceAccuracy", "SomethingElse"),
        "is not a whole number": good.replace(",0,0.8,", ",,0.8,"),
        "unknown task 'BIG-bench": good.replace("COPA", "BIG-bench made_up"),
    }
    script = REPO / "scripts" / "normalize_published_scores.py"
    for message, row in cases.items():
        src = tmp_path / "in.csv"
        src.write_text(header + good + row, encoding="utf-8")
        proc = subprocess.run([sys.executable, str(script), str(src), str(tmp_path / "out.csv")], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode != 0, message
        assert "in.csv:3: " in proc.stderr and message in proc.stderr, (message, proc.stderr)


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


def test_empty_or_unknown_shots_read_as_none(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("model,task,metric,num_fewshot,value,source\nm,piqa,acc,,0.5,s\nm,piqa,acc,?,0.5,s\n"
                    "m,gauntlet:average,composite,,-0.1,s\n", encoding="utf-8")
    assert [(r.num_fewshot, r.value) for r in read_reference_file(path)] == [(None, 0.5), (None, 0.5), (None, -0.1)]


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
