"""Report layouts: the MPT-7B table's and MPT-30B-vs-GPT-3 shapes, and the gauntlet table (runs' composites
beside the published ones), on hand-made results.json files and the shipped published scores."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from evalharness.errors import ConfigError
from evalharness.report.gauntlet import build_gauntlet
from evalharness.report.layouts import get_layout, layout_names, load_layouts
from evalharness.report.make import render
from evalharness.report.references import load_references
from evalharness.report.runs import label_runs
from evalharness.report.tables import build_comparison
from support.paths import REPO
from support.report_helpers import make_results

MPT7B_TASKS = ["lambada_openai", "piqa", "copa", "boolq", "arc_challenge", "arc_easy", "hellaswag", "jeopardy", "mmlu",
               "triviaqa", "winograd", "winogrande"]


def declared(results: dict, task: str, headline: str, harnesses: list[str], category: str, baseline: float,
             subset_average: str | None = None) -> dict:
    """Give a hand-made results.json task the declarations a schema-2 file records."""
    results["tasks"][task].update(headline_metric=headline, subset_average=subset_average, category=category,
                                  baseline=baseline, protocol="",
                                  metrics={headline: {"aggregation": "mean", "higher_is_better": True,
                                                      "harnesses": harnesses}})
    return results


def published(model: str, task: str, shots: str = "0") -> float:
    with (REPO / "reports" / "published_scores.csv").open(encoding="utf-8", newline="") as f:
        return next(float(r["value"]) for r in csv.DictReader(f)
                    if r["model"] == model and r["task"] == task and r["num_fewshot"] == shots
                    and r["harness"] in ("llm-foundry", "paper"))


@pytest.fixture(scope="module")
def refs():
    return load_references()


def test_layout_names_and_errors(tmp_path):
    assert layout_names() == ["mpt-7b-table", "mpt-30b-vs-gpt3", "gauntlet"]
    assert list(get_layout("mpt-7b-table").rows) == MPT7B_TASKS
    assert len(get_layout("mpt-30b-vs-gpt3").rows) == 9
    with pytest.raises(ConfigError, match="unknown report layout 'mpt-7b'.*mpt-7b-table"):
        get_layout("mpt-7b")
    bad = tmp_path / "layouts.yaml"
    bad.write_text("x: {tasks: [a], run_tasks: {b: {c: d}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="run_tasks"):
        load_layouts(bad)


def test_mpt_7b_table_shape_with_a_run(refs):
    run = make_results("ours", {"piqa": {"acc_token": 0.7}, "triviaqa_sm_sub": {"exact_match": 0.2},
                                "humaneval": {"pass@1": 0.1}})
    declared(run, "piqa", "acc_token", ["llm-foundry"], "commonsense_reasoning", 0.5)
    declared(run, "triviaqa_sm_sub", "exact_match", ["llm-foundry"], "world_knowledge", 0.0)
    layout = get_layout("mpt-7b-table")
    comp = build_comparison(label_runs([(run, None)]), refs, list(layout.compare), layout=layout)
    assert comp.tasks == MPT7B_TASKS  # the layout's rows in its order; humaneval is not one of them
    assert [c.label for c in comp.columns] == ["ours", "MPT-7B", "LLaMA-7B", "Falcon-7B"]
    piqa = comp.cell("piqa", "ours")
    assert piqa.value == 0.7 and piqa.comparable
    assert comp.cell("piqa", "MPT-7B").value == published("mpt-7b", "piqa") and comp.cell("piqa", "MPT-7B").best
    # our triviaqa_sm_sub stands on the triviaqa row, marked: another file than the published rows
    tqa = comp.cell("triviaqa", "ours")
    assert tqa.value == 0.2 and not tqa.comparable and tqa.reason.startswith("our task triviaqa_sm_sub: another file")
    assert comp.cell("triviaqa", "LLaMA-7B").value == published("llama-7b", "triviaqa")
    # a row no run has: the published values, under the first compared model's protocol
    copa = comp.protocols["copa"]
    assert (copa.metric, copa.num_fewshot, set(copa.harnesses)) == ("acc_token", 0, {"llm-foundry"})
    assert comp.cell("copa", "ours").value != comp.cell("copa", "ours").value  # NaN: not run
    assert comp.cell("copa", "Falcon-7B").best
    text = render(label_runs([(run, None)]), layout="mpt-7b-table")
    assert text.startswith("**MPT-7B's comparison table: twelve tasks, zero-shot (MosaicML, May 2023)**")
    assert "| task | metric | shots | chance | protocol | ours | MPT-7B | LLaMA-7B | Falcon-7B |" in text
    assert "| triviaqa | exact_match | 0 | 0.000 | llm-foundry | 0.200 ± 0.010 [" in text


def test_mpt_30b_vs_gpt3_shape_published_only():
    text = render([], layout="mpt-30b-vs-gpt3", fmt="csv")
    table = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert list(dict.fromkeys(table.task)) == list(get_layout("mpt-30b-vs-gpt3").rows)
    assert set(table.column) == {"MPT-30B", "GPT-3 175B"}
    gpt3 = table[table.column == "GPT-3 175B"].set_index("task")
    assert float(gpt3.loc["winograd", "value"]) == published("gpt3-175b", "winograd")
    assert float(gpt3.loc["boolq", "value"]) == published("gpt3-175b", "boolq")
    assert (table[table.column == "MPT-30B"].value == "").all()  # no published MPT-30B value for these nine


def _lu_run(model: str, values: tuple[float, float, float, float]) -> dict:
    """language_understanding complete at gauntlet v0.3's shots (lambada 0, hellaswag 0, winograd 3,
    winogrande 5), plus jeopardy at 3 shots (world_knowledge incomplete)."""
    tasks = {"lambada_openai": {"acc": values[0]}, "hellaswag": {"acc_token": values[1]},
             "winograd": {"acc_token": values[2]}, "winogrande": {"acc_token": values[3]}, "jeopardy": {"acc": 0.3}}
    run = make_results(model, tasks, shots={"lambada_openai": 0, "hellaswag": 0, "winograd": 3, "winogrande": 5,
                                            "jeopardy": 3})
    declared(run, "lambada_openai", "acc", ["llm-foundry"], "language_understanding", 0.0)
    declared(run, "hellaswag", "acc_token", ["llm-foundry"], "language_understanding", 0.25)
    declared(run, "winograd", "acc_token", ["llm-foundry"], "language_understanding", 0.5)
    declared(run, "winogrande", "acc_token", ["llm-foundry"], "language_understanding", 0.5)
    declared(run, "jeopardy", "acc", ["llm-foundry"], "world_knowledge", 0.0, "macro")
    return run


def test_gauntlet_table_runs_and_published(refs):
    # a: (0.6 + (0.55-0.25)/0.75 + (0.8-0.5)/0.5 + (0.6-0.5)/0.5) / 4 = (0.6 + 0.4 + 0.6 + 0.2) / 4 = 0.45
    # b: (0.7 + 0.6 + 0.8 + 0.4) / 4 = 0.625, from 0.7, 0.7, 0.9, 0.7
    runs = label_runs([(_lu_run("a", (0.6, 0.55, 0.8, 0.6)), None), (_lu_run("b", (0.7, 0.7, 0.9, 0.7)), None)])
    table = build_gauntlet(runs, refs, ["mpt-7b"])
    assert [r[0] for r in table.rows] == ["a", "b", "MPT-7B"]
    assert table.protocol == "LLM Foundry Eval Gauntlet v0.3"
    a, b = table.cell("a", "language_understanding"), table.cell("b", "language_understanding")
    assert a.value == pytest.approx(0.45, abs=1e-12) and b.value == pytest.approx(0.625, abs=1e-12)
    assert a.comparable and b.best and not a.best
    wk = table.cell("a", "world_knowledge")  # only jeopardy present: left out, the known mean in the footnote
    assert wk.value != wk.value and "world_knowledge left out: 5 of 6 benchmarks absent" in wk.reason
    avg = table.cell("b", "average")  # core_average over language_understanding alone: shown, marked
    assert avg.value == pytest.approx(0.625, abs=1e-12) and not avg.comparable
    assert avg.reason.startswith("core_average over 1 of 5 categories")
    mpt = table.cell("MPT-7B", "average")  # the published v0 composite, another definition: marked
    assert mpt.value == published("mpt-7b", "gauntlet:average", "") and not mpt.comparable
    assert "Model Gauntlet v0" in mpt.reason
    text = render(runs, layout="gauntlet", compare="mpt-7b")
    assert "| model | composite | world_knowledge | commonsense_reasoning |" in text
    assert "| b | gauntlet-v0.3, 5 of 31 benchmarks |" in text and "**0.625**" in text


def test_gauntlet_table_of_published_models_alone(refs):
    table = build_gauntlet([], refs)
    assert len(table.rows) == 16 and table.protocol.startswith("LLM Foundry Model Gauntlet v0")
    assert table.cells.comparable.all() and table.footnotes == []  # all under the one published definition
    best = table.cells[table.cells.best]
    assert set(best.row) == {"LLaMA-30B", "Falcon-40B"}  # the best of every column
    assert table.cell("Falcon-40B", "commonsense_reasoning").best


def test_gauntlet_html_section(tmp_path):
    runs = label_runs([(_lu_run("a", (0.6, 0.55, 0.8, 0.6)), None)])
    html = render(runs, layout="gauntlet", compare="mpt-7b", fmt="html")
    assert 'id="gauntlet-board"' in html and "Ranked under LLM Foundry Eval Gauntlet v0.3" in html
    assert 'href="#gfn-1"' in html and 'id="gfn-1"' in html
    plain = render(runs, fmt="html")  # the default page of a run with a complete category has the section too
    assert 'id="gauntlet-board"' in plain
    none = render(label_runs([(make_results("c", {"piqa": {"acc_token": 0.7}}), None)]), fmt="html")
    assert 'id="gauntlet-board"' not in none  # no complete category: no section
