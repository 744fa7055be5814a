"""Comparison-table logic on hand-made results: protocol marking, best values, missing values, formats."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pytest

from evalharness.errors import ConfigError
from evalharness.report.make import parse_metrics, render
from evalharness.report.protocol import Protocol, differences, split_metric_key
from evalharness.report.references import load_references
from evalharness.report.runs import label_runs
from evalharness.report.tables import build_comparison, clear_lead, to_csv, to_markdown
from support.report_helpers import make_results

REF_HEADER = "model,display_name,task,metric,aggregate,num_fewshot,value,harness,note,source\n"
REF_ROWS = [
    # same protocol as the runs' piqa row (acc_token, 0-shot, llm-foundry)
    "ref-a,Ref A,piqa,acc_token,,0,0.70,llm-foundry,,paper A table 1",
    # ref-a also has a 10-shot piqa score: the 0-shot one must be chosen
    "ref-a,Ref A,piqa,acc_token,,10,0.95,llm-foundry,,paper A table 2",
    "ref-a,Ref A,lambada_openai,acc,,0,0.60,lm-eval,,paper A table 3",
    # ref-b: higher but another metric and harness -> marked, not ranked
    "ref-b,Ref B,piqa,acc,,0,0.90,paper,normalisation not stated,paper B",
    # ref-b MMLU: macro average under LLM Foundry, rows are micro/lm-eval
    "ref-b,Ref B,mmlu,acc,macro,0,0.40,llm-foundry,,paper B",
    # ref-b lambada, 5-shot only
    "ref-b,Ref B,lambada_openai,acc,,5,0.99,lm-eval,,paper B",
]


@pytest.fixture()
def refs(tmp_path: Path):
    path = tmp_path / "refs.csv"
    path.write_text(REF_HEADER + "\n".join(REF_ROWS) + "\n", encoding="utf-8")
    return load_references([path], builtin=False)


def runs_of(*results: dict) -> list:
    return label_runs([(r, None) for r in results])


def test_protocol_differences_name_what_differs():
    row = Protocol("acc_token", None, 0, frozenset({"llm-foundry"}))
    assert differences(row, row) == []
    assert differences(row, Protocol("acc_token", None, 0, frozenset({"llm-foundry", "lm-eval"}))) == []
    other = Protocol("acc", "macro", 10, frozenset({"paper"}))
    assert differences(row, other) == ["metric acc (row: acc_token)", "10-shot (row: 0-shot)",
                                       "harness paper (row: llm-foundry)"]
    micro = Protocol("acc", "micro", 0, frozenset({"lm-eval"}))
    assert differences(micro, Protocol("acc", "macro", 0, frozenset({"lm-eval"}))) == ["macro average (row: micro)"]
    assert differences(micro, Protocol("acc", None, None, frozenset({"lm-eval"}))) == ["unknown shots (row: 0-shot)"]
    assert split_metric_key("acc_token_macro") == ("acc_token", "macro")
    assert split_metric_key("acc") == ("acc", None)


def test_reference_with_other_protocol_is_marked_with_reason(refs):
    runs = runs_of(make_results("mine", {"piqa": {"acc": 0.5, "acc_token": 0.65},
                                         "mmlu": {"acc": 0.3, "acc_macro": 0.31}}))
    comp = build_comparison(runs, refs, ["ref-a", "ref-b"])
    a = comp.cell("piqa", "Ref A")
    assert a.comparable and a.value == 0.70 and a.num_fewshot == 0 and a.footnote == 0  # the 0-shot row was picked
    b = comp.cell("piqa", "Ref B")
    assert not b.comparable and b.footnote > 0
    assert b.reason == "metric acc (row: acc_token); harness paper (row: llm-foundry)"
    assert comp.footnotes[b.footnote - 1] == b.reason + " — normalisation not stated"
    mmlu = comp.cell("mmlu", "Ref B")
    assert mmlu.reason == "macro average (row: micro); harness llm-foundry (row: lm-eval)"
    assert comp.cell("mmlu", "mine").value == 0.3  # our micro headline, not acc_macro


def test_best_value_is_the_best_comparable_one(refs):
    runs = runs_of(make_results("mine", {"piqa": {"acc_token": 0.65}}), make_results("yours", {"piqa": {"acc_token": 0.72}}))
    comp = build_comparison(runs, refs, ["ref-a", "ref-b"])
    best = comp.cells[(comp.cells.task == "piqa") & comp.cells.best]
    assert list(best.column) == ["yours"]  # Ref B's 0.90 is higher but not comparable; Ref A 0.70 < 0.72
    md = to_markdown(comp, runs)
    assert "**0.720 ± 0.010**" in md and "0.900 [1]" in md and "**0.900" not in md


def test_ties_and_single_values_not_highlighted(refs):
    runs = runs_of(make_results("x", {"piqa": {"acc_token": 0.70}, "hellaswag": {"acc_token": 0.4}}))
    comp = build_comparison(runs, refs, ["ref-a"])
    assert not comp.cell("piqa", "x").best and not comp.cell("piqa", "Ref A").best  # a tie leads nobody
    assert not comp.cell("hellaswag", "x").best  # nothing to compare with


def test_clear_lead_by_hand():
    # the combined standard error sqrt(0.03^2 + 0.04^2) = 0.05: a lead of 0.04 is inside it, 0.06 beyond
    assert not clear_lead(0.74, 0.03, 0.70, 0.04)
    assert clear_lead(0.76, 0.03, 0.70, 0.04)
    assert clear_lead(0.71, 0.005, 0.70, None)  # a published value counts as exact: 0.01 > 0.005
    assert not clear_lead(0.70, None, 0.70, None)


def test_best_only_beyond_the_combined_standard_error(refs):
    # 0.72 ± 0.05 leads 0.65 ± 0.05 by 0.07 < sqrt(2) * 0.05 = 0.0707: no best; with ± 0.04 (0.0566) it is
    close = runs_of(make_results("a", {"piqa": {"acc_token": 0.72, "acc_token_stderr": 0.05}}),
                    make_results("b", {"piqa": {"acc_token": 0.65, "acc_token_stderr": 0.05}}))
    comp = build_comparison(close, refs, [])
    assert not comp.cells.best.any()
    assert "**" not in to_markdown(comp, close).split("\n\n")[0]
    clear = runs_of(make_results("a", {"piqa": {"acc_token": 0.72, "acc_token_stderr": 0.04}}),
                    make_results("b", {"piqa": {"acc_token": 0.65, "acc_token_stderr": 0.04}}))
    comp = build_comparison(clear, refs, [])
    assert comp.cell("piqa", "a").best and not comp.cell("piqa", "b").best
    # the lead counts against the second value, not the last: 0.72 ± 0.04 vs 0.70 ± 0.04 (and 0.5)
    three = runs_of(make_results("a", {"piqa": {"acc_token": 0.72, "acc_token_stderr": 0.04}}),
                    make_results("b", {"piqa": {"acc_token": 0.70, "acc_token_stderr": 0.04}}),
                    make_results("c", {"piqa": {"acc_token": 0.50, "acc_token_stderr": 0.04}}))
    assert not build_comparison(three, refs, []).cells.best.any()


def test_lower_is_better_metric(refs):
    runs = runs_of(make_results("a", {"lambada_openai": {"acc": 0.3, "perplexity": 20.0}}),
                   make_results("b", {"lambada_openai": {"acc": 0.4, "perplexity": 12.0}}))
    comp = build_comparison(runs, refs, [], {"lambada_openai": "perplexity"})
    assert comp.cell("lambada_openai", "b").best and not comp.cell("lambada_openai", "a").best


def test_missing_values(refs):
    runs = runs_of(make_results("full", {"piqa": {"acc_token": 0.6}, "lambada_openai": {"acc": 0.5}}),
                   make_results("partial", {"piqa": {"acc_token": 0.55}}))
    comp = build_comparison(runs, refs, ["ref-a", "ref-b"])
    missing = comp.cell("lambada_openai", "partial")
    assert math.isnan(missing.value) and not missing.best and missing.comparable
    assert comp.tasks == ["piqa", "lambada_openai"]
    assert comp.average("full") == pytest.approx(0.55)
    assert comp.average("partial") is None  # a task is missing
    assert comp.average("Ref B") is None  # values under other protocols are never averaged
    assert comp.average("Ref A") == pytest.approx(0.65)
    ref_b_lambada = comp.cell("lambada_openai", "Ref B")
    assert ref_b_lambada.num_fewshot == 5 and "5-shot (row: 0-shot)" in ref_b_lambada.reason
    md = to_markdown(comp, runs)
    line = next(ln for ln in md.splitlines() if ln.startswith("| lambada_openai |"))
    assert line.split(" | ")[5] == "—"  # the 'partial' column
    comp2 = build_comparison(runs, refs, ["ref-a"])
    hella = build_comparison(runs_of(make_results("x", {"hellaswag": {"acc_token": 0.3}})), refs, ["ref-a"])
    assert math.isnan(hella.cell("hellaswag", "Ref A").value)  # ref-a has no hellaswag score
    assert comp2.cell("piqa", "Ref A").value == 0.70


def test_runs_under_different_protocols_are_marked_too():
    runs = runs_of(make_results("m", {"piqa": {"acc_token": 0.6}}, shots=0),
                   make_results("m", {"piqa": {"acc_token": 0.8}}, shots=10))
    assert [r.label for r in runs] == ["m (0-shot)", "m (10-shot)"]
    comp = build_comparison(runs, [], [])
    ten = comp.cell("piqa", "m (10-shot)")
    assert ten.reason == "10-shot (row: 0-shot)" and not ten.best
    assert not comp.cell("piqa", "m (0-shot)").best  # the only comparable value


def test_metric_override_and_aggregate_suffix(refs):
    runs = runs_of(make_results("m", {"mmlu": {"acc": 0.30, "acc_macro": 0.28}, "piqa": {"acc": 0.5, "acc_token": 0.6}}))
    comp = build_comparison(runs, refs, ["ref-b"], parse_metrics("mmlu=acc_macro,piqa=acc"))
    assert comp.cell("mmlu", "m").value == 0.28
    assert comp.protocols["mmlu"].aggregate == "macro"
    assert comp.cell("mmlu", "Ref B").reason == "harness llm-foundry (row: lm-eval)"  # the average now agrees
    assert comp.cell("piqa", "m").value == 0.5 and comp.protocols["piqa"].harnesses == {"lm-eval"}
    assert comp.cell("piqa", "Ref B").reason == "harness paper (row: lm-eval)"


def test_subset_drilldown(refs):
    groups = {"mmlu": {"anatomy": {"acc": 0.2, "acc_stderr": 0.1, "n": 10}, "virology": {"acc": 0.6, "acc_stderr": 0.1, "n": 10}}}
    runs = runs_of(make_results("a", {"mmlu": {"acc": 0.4}}, groups=groups),
                   make_results("b", {"mmlu": {"acc": 0.35}}, groups={"mmlu": {"anatomy": {"acc": 0.5, "n": 10},
                                                                                 "virology": {"acc": 0.2, "n": 10}}}))
    comp = build_comparison(runs, refs, [])
    assert comp.subsets("mmlu") == ["anatomy", "virology"]
    assert comp.cell("mmlu", "b", "anatomy").best and comp.cell("mmlu", "a", "virology").best
    md = to_markdown(comp, runs, subsets=True)
    assert "mmlu by subset (acc):" in md and "| anatomy | 0.200 ± 0.100 | **0.500** |" in md


def test_csv_round_trips_every_cell(refs):
    runs = runs_of(make_results("m", {"piqa": {"acc_token": 0.6}}))
    comp = build_comparison(runs, refs, ["ref-a", "ref-b"])
    table = pd.read_csv(io.StringIO(to_csv(comp)), keep_default_na=False)
    assert list(table.column) == ["m", "Ref A", "Ref B"]
    assert list(table.kind) == ["run", "reference", "reference"]
    assert table.loc[2, "source"] == "paper B" and not table.loc[2, "comparable"]
    assert float(table.loc[1, "value"]) == 0.70


def test_render_rejects_bad_options(tmp_path):
    runs = runs_of(make_results("m", {"piqa": {"acc_token": 0.6}}))
    with pytest.raises(ConfigError, match="did you mean 'llama-7b'"):
        render(runs, compare="llama7b")
    with pytest.raises(ConfigError, match="no run has metric 'acc_norm_macro'"):
        render(runs, metrics="piqa=acc_norm_macro")
    with pytest.raises(ConfigError, match="TASK=METRIC"):
        render(runs, metrics="piqa")
    with pytest.raises(ConfigError, match="unknown report format"):
        render(runs, fmt="pdf")


def test_builtin_references_compare_end_to_end():
    runs = runs_of(make_results("m", {"lambada_openai": {"acc": 0.4}, "piqa": {"acc_token": 0.7},
                                      "hellaswag": {"acc_token": 0.5}, "mmlu": {"acc": 0.3}, "jeopardy": {"acc": 0.1}}))
    md = render(runs, compare="llama-7b,falcon-7b,gpt3-175b")
    header = md.splitlines()[0]
    assert header == "| task | metric | shots | protocol | m | LLaMA-7B | Falcon-7B | GPT-3 175B |"
    piqa = next(ln for ln in md.splitlines() if ln.startswith("| piqa |"))
    assert "0.785" in piqa and "0.798" in piqa  # LLM Foundry 0-shot, same protocol: unmarked
    assert "**0.798**" in piqa  # Falcon-7B is the best comparable value
    assert "0.810 [" in piqa  # GPT-3's own evaluation: marked
    assert "mosaicml/llm-foundry@4b31ff039" in md


def test_reference_column_never_shares_a_run_label(refs):
    runs = runs_of(make_results("Ref A", {"piqa": {"acc_token": 0.6}}))
    comp = build_comparison(runs, refs, ["ref-a", "ref-a"])
    assert [c.label for c in comp.columns] == ["Ref A", "Ref A (published)"]
    assert comp.cell("piqa", "Ref A").kind == "run" and comp.cell("piqa", "Ref A (published)").value == 0.70


def test_generation_protocols_are_labelled_as_such():
    """Results written before tasks declared their metrics take the shipped tasks' declarations."""
    from evalharness.report.declarations import from_results

    assert from_results("jeopardy_em", {}, []).harnesses_of("exact_match") == frozenset(
        {"generation: greedy, normalised exact match"})
    assert from_results("jeopardy", {"headline": "macro"}, []).harnesses_of("acc") == frozenset({"llm-foundry"})
    assert "sandboxed" in next(iter(from_results("humaneval", {}, []).harnesses_of("pass@1")))


def test_declarations_recorded_in_results_json_are_what_reports_use():
    from evalharness.report.declarations import from_results

    info = {"headline_metric": "bits", "subset_average": None, "baseline": 0.25, "category": "mine",
            "metrics": {"bits": {"aggregation": "mean", "higher_is_better": False, "harnesses": ["lab-x"]}}}
    d = from_results("piqa", info, ["bits", "bits_stderr", "n"])  # a user's piqa: its own declarations win
    assert (d.headline_metric, d.baseline, d.category) == ("bits", 0.25, "mine")
    assert not d.is_higher_better("bits") and d.harnesses_of("bits") == frozenset({"lab-x"})
    unknown = from_results("not_a_shipped_task", {}, ["score", "score_stderr", "n"])
    assert unknown.headline_metric == "score" and unknown.harnesses_of("score") == frozenset({"evalharness"})
    assert not unknown.is_higher_better("perplexity")  # the metric registry's direction


def test_best_follows_the_declared_direction(refs):
    results = [make_results(m, {"lambada_openai": {"perplexity": v}}) for m, v in (("A", 20.0), ("B", 30.0))]
    comp = build_comparison(runs_of(*results), refs, [], {"lambada_openai": "perplexity"})
    assert comp.cell("lambada_openai", "A").best and not comp.cell("lambada_openai", "B").best


def test_chat_formatted_runs_are_another_protocol(refs):
    """A run with a chat template (recorded per task in results.json) is labelled apart from the plain run of the
    same model, marked as not comparable with plain prompts and never ranked beside published (plain) scores."""
    chat = make_results("m", {"piqa": {"acc_token": 0.9}})
    chat["tasks"]["piqa"]["prompt_format"] = {
        "chat_template": {"name": "mpt-chat", "source": "builtin", "sha256": "ab12cd34" + "0" * 56},
        "system_instruction": None, "fewshot_as_multiturn": True}
    runs = runs_of(make_results("m", {"piqa": {"acc_token": 0.6}}), chat)
    assert [r.label for r in runs] == ["m (plain)", "m (chat mpt-chat ab12cd34 multiturn)"]
    comp = build_comparison(runs, refs, ["ref-a"])
    cell = comp.cell("piqa", "m (chat mpt-chat ab12cd34 multiturn)")
    assert cell.reason == "prompt format chat mpt-chat ab12cd34 multiturn (row: plain)" and not cell.best
    assert comp.cell("piqa", "Ref A").best  # the plain run and the published score are ranked; the chat run is not
    chat_first = build_comparison(list(reversed(runs)), refs, ["ref-a"])
    assert chat_first.protocols["piqa"].describe() == "acc_token, 0-shot, llm-foundry, chat mpt-chat ab12cd34 multiturn"
    assert "prompt format plain (row: chat mpt-chat ab12cd34 multiturn)" in chat_first.cell("piqa", "Ref A").reason
    assert "| piqa | acc_token | 0 | llm-foundry, chat mpt-chat ab12cd34 multiturn |" in to_markdown(chat_first)
