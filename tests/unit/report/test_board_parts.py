"""The leaderboard's parts: the wide CSV, standard errors of 0, the samples' per-metric scores, chart label room,
column headers and --title."""

from __future__ import annotations

import csv
import io
from urllib.parse import unquote

import pytest

from evalharness.report.charts import CHAR_WIDTH, MIN_LABEL_WIDTH, bar_chart, label_width
from evalharness.report.make import render
from evalharness.report.protocol import Protocol
from evalharness.report.references import load_references
from evalharness.report.runs import label_runs
from evalharness.report.sample_scores import choice_scores
from evalharness.report.tables import build_comparison, format_value
from evalharness.report.wide import data_uri, wide_csv
from support.report_helpers import make_results


def _runs():
    return label_runs([(make_results("a", {"piqa": {"acc_token": 0.7}, "lambada_openai": {"acc": 0.0, "acc_stderr": 0.0}}), None),
                       (make_results("b", {"piqa": {"acc_token": 0.6, "acc_token_stderr": 0.02}}), None)])


def test_wide_csv_one_line_per_model():
    comp = build_comparison(_runs(), load_references(), ["gpt3-175b"])
    rows = list(csv.reader(io.StringIO(wide_csv(comp))))
    assert rows[0] == ["model", "kind", "piqa acc_token 0-shot", "piqa acc_token 0-shot stderr",
                       "piqa acc_token 0-shot comparable", "lambada_openai acc 0-shot",
                       "lambada_openai acc 0-shot stderr", "lambada_openai acc 0-shot comparable"]
    assert rows[1] == ["a", "ours", "0.7", "0.01", "1", "0.0", "0.0", "1"]
    assert rows[2] == ["b", "ours", "0.6", "0.02", "1", "", "", ""]
    gpt3 = rows[3]
    assert gpt3[:2] == ["GPT-3 175B", "published"] and gpt3[3] == "" and gpt3[4] == "0"  # the paper's protocol


def test_data_uri_round_trips():
    text = "model,x\nA & B,0.5\n"
    uri = data_uri(text)
    assert uri.startswith("data:text/csv;charset=utf-8,") and " " not in uri and "\n" not in uri
    assert unquote(uri.split(",", 1)[1]) == text


def test_zero_stderr_is_not_printed():
    assert format_value(0.0, 0.0) == "0.000"
    assert format_value(0.5, 0.01) == "0.500 ± 0.010"
    assert format_value(0.5, float("nan")) == "0.500"
    md = render(_runs(), fmt="md")
    assert "± 0.000" not in md and "| 0.000 |" in md


def test_choice_scores_follow_the_metric():
    record = {"logprobs": [-3.0, -4.0], "num_tokens": [1, 4]}
    texts = ["ab", "abcdefgh"]
    assert choice_scores(record, "acc", texts) == ([-3.0, -4.0], "log-probability (sum)")
    assert choice_scores(record, "acc_token", texts) == ([-3.0, -1.0], "log-probability per token")
    assert choice_scores(record, "acc_norm", texts) == ([-1.5, -0.5], "log-probability per character")
    assert choice_scores({"logprobs": [-1.0]}, "acc_token", ["x", "y"])[0] == [None, None]


def test_chart_labels_get_room():
    long = "x" * 40
    assert label_width(["ab"]) == MIN_LABEL_WIDTH
    assert label_width([long, "ab"]) >= 40 * CHAR_WIDTH
    entry = {"kind": "run", "value": 0.5, "stderr": None, "best": False, "footnote": 0, "text": "0.500"}
    chart = bar_chart("t", "acc", [{**entry, "label": long}])
    assert chart.plot_left == label_width([long]) and chart.width > chart.plot_left + chart.plot_width
    assert chart.bars[0].label == long


def test_headers_and_title():
    assert Protocol("acc", "macro", 5, frozenset()).short() == "acc (macro) · 5-shot"
    html = render(_runs(), fmt="html", title="Checkpoint <board>")
    assert "<title>Checkpoint &lt;board&gt;</title>" in html and "acc_token · 0-shot" in html
    assert render(_runs(), fmt="md", title="Checkpoints").startswith("**Checkpoints**\n")


def test_chance_levels():
    from evalharness.report.chance import near_chance, row_baselines

    runs = _runs()
    comp = build_comparison(runs, load_references(), [], {"lambada_openai": "acc"})
    assert row_baselines(runs, comp.protocols) == {"piqa": 0.5, "lambada_openai": 0.0}  # the shipped declarations
    other = build_comparison(runs, load_references(), [], {"piqa": "acc"})
    assert row_baselines(runs, other.protocols)["piqa"] is None  # the baseline is the headline metric's
    assert near_chance(0.51, 0.02, 0.5) and not near_chance(0.53, 0.02, 0.5)
    assert near_chance(0.5, None, 0.5) and not near_chance(0.51, None, 0.5)
    assert near_chance(9.0, 0.5, 8.8, higher_is_better=False) and not near_chance(8.0, 0.5, 8.8, higher_is_better=False)
    assert not near_chance(0.1, 0.0, None)
    md = render(runs, fmt="md")
    assert "| piqa | acc_token | 0 | 0.500 | llm-foundry |" in md


def test_fair_average_and_composite_by_hand():
    from evalharness.report.averages import board_averages
    from evalharness.report.chance import with_baselines

    x = make_results("x", {"piqa": {"acc_token": 0.7}, "hellaswag": {"acc_token": 0.55}, "lambada_openai": {"acc": 0.4},
                           "copa": {"acc": 0.9}})
    y = make_results("y", {"piqa": {"acc_token": 0.6}, "hellaswag": {"acc_token": 0.4}, "lambada_openai": {"acc": 0.6}})
    runs = label_runs([(x, None), (y, None)])
    comp = with_baselines(build_comparison(runs, load_references(), []), runs)
    summary = board_averages(comp)
    assert summary.tasks == ["piqa", "hellaswag", "lambada_openai"] and summary.coverage == "3/4 tasks"  # y lacks copa
    assert summary.averages["x"] == pytest.approx((0.7 + 0.55 + 0.4) / 3)
    assert summary.averages["y"] == pytest.approx((0.6 + 0.4 + 0.6) / 3)
    # piqa (commonsense, chance 0.5), hellaswag (chance 0.25) and lambada (chance 0) in language understanding:
    # x: (0.4 + mean(0.4, 0.4)) / 2 = 0.4; y: (0.2 + mean(0.2, 0.6)) / 2 = 0.3
    assert summary.categories == ["commonsense_reasoning", "language_understanding"]
    assert summary.composites["x"] == pytest.approx(0.4) and summary.composites["y"] == pytest.approx(0.3)
    assert summary.composite_coverage == "3 tasks, 2 categories" and summary.ranking_key("y") == pytest.approx(0.3)
    md = render(runs, fmt="md")
    assert "| average | 3/4 tasks |  |  | piqa, hellaswag, lambada_openai | 0.550 | 0.533 |" in md
    assert "| composite | 3 tasks, 2 categories |  |  | chance subtracted, rescaled, by category | 0.400 | 0.300 |" in md


def test_no_fair_task_no_average():
    from evalharness.report.averages import board_averages
    from evalharness.report.chance import with_baselines

    runs = _runs()
    comp = with_baselines(build_comparison(runs, load_references(), ["gpt3-175b"]), runs)  # the paper's protocol
    summary = board_averages(comp)
    assert summary.tasks == [] and summary.coverage == "0/2 tasks" and summary.composite_tasks == []
    assert set(summary.averages.values()) == {None} and summary.ranking_key("a") is None


def test_limited_jeopardy_over_fewer_categories_is_marked():
    """A --limit run written before Jeopardy's items were taken per category averages one category: footnoted and
    not ranked beside LLM Foundry's five-category average; a run that records per-category limits is not."""
    groups = {"jeopardy": {"world_history": {"acc": 0.1, "acc_stderr": 0.05, "n": 30}}}
    old = make_results("old", {"jeopardy": {"acc": 0.1, "num_subsets": 1}}, groups=groups, limit=30)
    new = make_results("new", {"jeopardy": {"acc": 0.1, "num_subsets": 5}}, groups=groups, limit=30)
    new["tasks"]["jeopardy"]["limit_per_subset"] = True
    full = make_results("full", {"jeopardy": {"acc": 0.1, "num_subsets": 5}}, groups=groups)
    comp = build_comparison(label_runs([(old, None), (new, None), (full, None)]), load_references(), ["mpt-7b"])
    cell = comp.cell("jeopardy", "old")
    assert not cell.comparable and "a macro average over 1 subset, not all of them" in cell.reason
    assert comp.cell("jeopardy", "new").comparable and comp.cell("jeopardy", "full").comparable
    assert comp.cell("jeopardy", "MPT-7B").comparable
