"""benchmarks/parity_icl.py: evalharness's built items as lm-eval docs, the rendered task YAMLs, lm-eval's
samples read back, and the per-token prediction (hand-written values)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from evalharness.requests import GenerateRequest, LoglikelihoodRequest
from evalharness.tasks.task import Item

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "parity_icl.py"
_spec = importlib.util.spec_from_file_location("parity_icl", _PATH)
assert _spec is not None and _spec.loader is not None
icl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(icl)

MC = Item(7, None, (LoglikelihoodRequest("Q: sky?\nAnswer:", " blue"), LoglikelihoodRequest("Q: sky?\nAnswer:", " green")),
          1, (4, 5))
SCHEMA = Item(3, None, (LoglikelihoodRequest("A\nTom ate", " it."), LoglikelihoodRequest("A\nAnn ate", " it.")), 0, (3, 3))
GEN = Item(5, None, (GenerateRequest("Question: 1+1?\nAnswer:", ("\n",), 17),), ("two", "2"))


def test_multiple_choice_doc():
    doc = icl.item_to_doc("mc", MC)
    assert doc == {"doc_id": 7, "context": "Q: sky?\nAnswer:", "choices": [" blue", " green"], "gold": 1}
    assert icl.doc_requests("mc", doc) == [("Q: sky?\nAnswer:", " blue"), ("Q: sky?\nAnswer:", " green")]


def test_schema_doc_is_lm_evals_multiple_input_form():
    doc = icl.item_to_doc("schema", SCHEMA)
    assert doc == {"doc_id": 3, "contexts": ["A\nTom ate", "A\nAnn ate"], "continuation": " it.", "gold": 0}
    assert icl.doc_requests("schema", doc) == [("A\nTom ate", " it."), ("A\nAnn ate", " it.")]


def test_schema_needs_one_shared_continuation():
    bad = Item(3, None, (LoglikelihoodRequest("a", " x"), LoglikelihoodRequest("b", " y")), 0)
    with pytest.raises(ValueError, match="shared continuation"):
        icl.item_to_doc("schema", bad)


def test_generation_doc_and_yaml(tmp_path):
    doc = icl.item_to_doc("gen", GEN)
    assert doc == {"doc_id": 5, "prompt": "Question: 1+1?\nAnswer:", "until": ["\n"], "max_gen_toks": 17,
                   "answer": "two", "answers": ["two", "2"]}
    assert icl.doc_requests("gen", doc) == [("Question: 1+1?\nAnswer:", '{"until": ["\\n"], "max_gen_toks": 17}')]
    text = icl.render_task_yaml("triviaqa_sm_sub", [doc], tmp_path / "t.jsonl")
    assert text == ("include: _eh_icl_gen_template_yaml\ntask: eh_triviaqa_sm_sub\ndataset_kwargs:\n  data_files:\n"
                    f'    test: "{tmp_path / "t.jsonl"}"\ngeneration_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 17\n'
                    "  do_sample: false\n  temperature: 0.0\n")
    with pytest.raises(ValueError, match="one set of generation settings"):
        icl.render_task_yaml("triviaqa_sm_sub", [doc, {**doc, "max_gen_toks": 9}], tmp_path / "t.jsonl")


def test_choice_yaml_names_its_template(tmp_path):
    assert icl.render_task_yaml("winogrande", [], tmp_path / "w.jsonl").splitlines()[:2] == [
        "include: _eh_icl_schema_template_yaml", "task: eh_winogrande"]
    assert icl.render_task_yaml("copa", [], tmp_path / "c.jsonl").splitlines()[0] == "include: _eh_icl_mc_template_yaml"


def test_lm_eval_samples_read_back():
    # lm-eval 0.4.13 logs doc_id as the line number; the exported doc carries evalharness's
    doc_id, item = icl.lm_eval_item("copa", {"doc_id": 0, "doc": {"doc_id": 41, "gold": 1}})
    assert (doc_id, item) == (41, {"gold": 1})
    s = {"doc_id": 0, "doc": {"doc_id": 5}, "resps": [["  two\nthree"]],
         "arguments": {"gen_args_0": {"arg_0": "P", "arg_1": {"until": ["\n"], "max_gen_toks": 17, "do_sample": False}}}}
    doc_id, item = icl.lm_eval_item("triviaqa_sm_sub", s)
    assert doc_id == 5 and item["output"] == "  two\nthree"
    assert item["requests"] == [("P", json.dumps({"until": ["\n"], "max_gen_toks": 17}))]


def test_per_token_argmax():
    # sums -6 and -8 over 3 and 5 tokens: acc picks 0, per token -2 vs -1.6 picks 1; ties go to the first
    lls, ntok = [-6.0, -8.0], [3, 5]
    assert icl.argmax(lls) == 0
    assert icl.argmax([ll / n for ll, n in zip(lls, ntok)]) == 1
    assert icl.argmax([-1.0, -1.0]) == 0
