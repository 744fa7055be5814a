"""Pairing two runs' samples files: the table's numbers, the flipped items, and the one-line refusals."""

from __future__ import annotations

import json

import pytest

from evalharness.errors import ConfigError
from evalharness.report.paired_tables import to_csv, to_json, to_markdown
from evalharness.report.pairing import pair_runs
from evalharness.report.runs import load_runs
from support.report_helpers import lm_sample, make_results, mc_sample, write_run

GOLD = [0, 1] * 10  # 20 piqa items


def _piqa(predictions: list[int]) -> list[dict]:
    return [mc_sample(i, f"question {i}", ["left", "right"], GOLD[i], p) for i, p in enumerate(predictions)]


def _lambada(logprobs: list[float], greedy: list[bool]) -> list[dict]:
    out = []
    for i, (lp, g) in enumerate(zip(logprobs, greedy)):
        s = lm_sample(i, f"passage {i}", "word", g)
        s["logprobs"], s["metrics"]["logprob"] = [lp], lp
        out.append(s)
    return out


def _run(folder, model, piqa, lambada=None, shots=0, limit=None):
    samples = {"piqa": piqa, **({"lambada_openai": lambada} if lambada else {})}
    values = {task: {"acc": 0.5} for task in samples}
    return write_run(folder, make_results(model, values, shots=shots, limit=limit), samples)


@pytest.fixture()
def runs(tmp_path):
    # A right on items 0-9 and 10-14; B flips 8 of A's right items (0-7) wrong and 2 wrong ones (15, 16) right
    a_right = set(range(15))
    b_right = (a_right - set(range(8))) | {15, 16}
    a = _run(tmp_path / "a", "model-a", _piqa([GOLD[i] if i in a_right else 1 - GOLD[i] for i in range(20)]),
             _lambada([-1.0, -3.0], [True, False]))
    b = _run(tmp_path / "b", "model-b", _piqa([GOLD[i] if i in b_right else 1 - GOLD[i] for i in range(20)]),
             _lambada([-1.0, -2.0], [True, True]))
    return a, b


def test_pairs_the_headline_of_each_shared_task(runs):
    pair = pair_runs(*load_runs(list(runs)), resamples=500)
    piqa, lambada = pair.tasks
    assert (piqa.task, piqa.metric, piqa.stats.n, piqa.stats.test) == ("piqa", "acc_token", 20, "mcnemar")
    assert (piqa.stats.a, piqa.stats.b, piqa.stats.worse, piqa.stats.better) == (0.75, 0.45, 8, 2)
    assert piqa.stats.p_value == pytest.approx(112 / 1024)  # McNemar b=8, c=2
    assert piqa.verdict == "not significant"
    assert (lambada.metric, lambada.stats.n, lambada.stats.a) == ("acc", 2, 0.5)  # lambada's headline: acc
    assert len(piqa.flips) == 10 and [f.better for f in piqa.flips].count(False) == 8
    first = piqa.flips[0]
    assert (first.doc_id, first.gold, first.a, first.b) == (0, "0: left", "0: left", "1: right")


def test_a_metric_override_and_the_text_formats(runs):
    pair = pair_runs(*load_runs(list(runs)), metrics={"lambada_openai": "perplexity"}, tasks=["lambada_openai"],
                     resamples=200)
    (lambada,) = pair.tasks
    assert lambada.metric == "perplexity" and lambada.stats.test == "bootstrap"
    assert lambada.stats.b < lambada.stats.a and lambada.stats.better == 1  # B's higher log-prob: lower perplexity
    text = to_markdown(pair, flips=5)
    assert "| lambada_openai | perplexity | 0 | 2 |" in text and "Not compared (only in A)" not in text
    assert "lambada_openai: first 1 of 1 items that differ" in text and "not greedy, log-prob -3.00" in text
    assert to_csv(pair).splitlines()[0] == "task,metric,shots,n,a,b,difference,stderr,p_value,test,better,worse,verdict"
    doc = json.loads(to_json(pair, flips=1))
    assert doc["tasks"][0]["resamples"] == 200 and doc["tasks"][0]["flips"][0]["doc_id"] == 1


def test_refuses_different_item_counts(tmp_path):
    a = _run(tmp_path / "a", "model-a", _piqa(GOLD), limit=20)
    b = _run(tmp_path / "b", "model-b", _piqa(GOLD[:10]), limit=10)
    with pytest.raises(ConfigError, match=r"^piqa: A has 20 items, B has 10; run both with the same --limit$"):
        pair_runs(*load_runs([a, b]))


def test_refuses_different_items_shots_gold_and_missing_samples(tmp_path):
    a = _run(tmp_path / "a", "model-a", _piqa(GOLD))
    other = _piqa(GOLD)
    other[3]["doc_id"] = 99
    b = _run(tmp_path / "b", "model-b", other)
    with pytest.raises(ConfigError, match=r"piqa: 1 of A's items are not in B \(first: doc_id 3\)"):
        pair_runs(*load_runs([a, b]))
    c = _run(tmp_path / "c", "model-c", _piqa(GOLD), shots=5)
    with pytest.raises(ConfigError, match="piqa: A ran 0-shot, B 5-shot; run both with the same --num-fewshot"):
        pair_runs(*load_runs([a, c]))
    regold = _piqa(GOLD)
    regold[2]["gold"] = 1
    d = _run(tmp_path / "d", "model-d", regold)
    with pytest.raises(ConfigError, match="piqa: item 2 has gold 0 in A and 1 in B"):
        pair_runs(*load_runs([a, d]))
    (tmp_path / "d" / "samples_piqa.jsonl").unlink()
    with pytest.raises(ConfigError, match=r"piqa: B \(.*d\) has no samples_piqa.jsonl"):
        pair_runs(*load_runs([a, d]))
    with pytest.raises(ConfigError, match=r"piqa: A's item 0 has no per-item 'bits' value \(it has: acc, acc_norm, acc_token\)"):
        pair_runs(*load_runs([a, a]), metrics={"piqa": "bits"})
    with pytest.raises(ConfigError, match="hellaswag: not a task both runs have"):
        pair_runs(*load_runs([a, c]), tasks=["hellaswag"])


def test_the_page_shows_the_paired_section(runs, tmp_path):
    from evalharness.report import render

    page = render(load_runs(list(runs)), fmt="html")  # two runs of one model family: shown unasked
    assert 'id="paired"' in page and "A vs B, item by item" in page
    assert "<td>piqa</td><td>acc_token</td><td>0</td><td>20</td><td>0.750</td>" in page and "0.109 (mcnemar)" in page
    assert "piqa: 10 items differ (first 5)" in page
    assert 'id="paired"' not in render(load_runs(list(runs)), fmt="html", paired=False)
    short = _run(tmp_path / "short", "model-c", _piqa(GOLD[:4]))
    page = render(load_runs([runs[0], short]), fmt="html")
    assert "Not compared item by item: piqa: A has 20 items, B has 4; run both with the same --limit" in page
    with pytest.raises(ConfigError, match="A has 20 items, B has 4"):
        render(load_runs([runs[0], short]), fmt="html", paired=True)
    with pytest.raises(ConfigError, match="exactly two runs, got 3"):
        render(load_runs([*runs, short]), fmt="html", paired=True)


def test_the_markdown_report_adds_the_table_when_asked(runs):
    from evalharness.report import render

    text = render(load_runs(list(runs)), fmt="md", paired=True)
    assert "| piqa | acc_token | 0 | 20 | 0.750 | 0.450 | -0.300 |" in text
    assert "| piqa | acc_token | 0 | 20 |" not in render(load_runs(list(runs)), fmt="md")
    with pytest.raises(ConfigError, match="evalharness compare --csv"):
        render(load_runs(list(runs)), fmt="csv", paired=True)


def test_flipped_items_are_escaped_on_the_page(tmp_path):
    from evalharness.report import render

    evil = '<script>window.__pwned = 1</script>'
    a = _run(tmp_path / "a", "model-a", [mc_sample(0, "q", ["fine", evil], gold=1, predicted=1)])
    b = _run(tmp_path / "b", "model-b", [mc_sample(0, "q", ["fine", evil], gold=1, predicted=0)])
    page = render(load_runs([a, b]), fmt="html", paired=True)
    assert "piqa: 1 item differs (first 1)" in page
    assert evil not in page and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
