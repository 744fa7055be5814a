"""Training curves: runs at several training batches grouped into series, the curve CSV and markdown, the chart
geometry (axes, line, band, chance level) and the page's curves section."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from evalharness.errors import ConfigError
from evalharness.report.curve_charts import curve_chart, log_axis, nice_step, step_axis, uses_log_scale, value_axis
from evalharness.report.curves import build_curves, curves_csv, curves_markdown, has_curves, series_of, training_step
from evalharness.report.make import render, report_files
from evalharness.report.runs import label_runs, load_runs
from support.report_helpers import make_results, write_run


def at_step(batch: int, values: dict, *, run_name: str = "r1", limit: int | None = 100) -> dict:
    """A results.json of the training run `run_name` evaluated at `batch` (4 sequences of 128 tokens per batch)."""
    data = make_results(run_name, values, limit=limit)
    data["model"].update(kind="composer-callback", composer={"run_name": run_name, "epoch": 0, "batch": batch,
                                                             "sample": 4 * batch, "token": 512 * batch})
    return data


def three_steps() -> list:
    return label_runs([
        (at_step(200, {"piqa": {"acc_token": 0.6, "acc_token_stderr": 0.05},
                       "lambada_openai": {"acc": 0.02, "acc_stderr": 0.014}}), None),
        (at_step(100, {"piqa": {"acc_token": 0.5, "acc_token_stderr": 0.05},
                       "lambada_openai": {"acc": 0.0, "acc_stderr": 0.0}}), None),
        (make_results("other", {"piqa": {"acc_token": 0.7}}), None),  # no training step: not on a curve
    ])


def test_series_group_runs_of_one_training_run_by_step():
    runs = three_steps()
    assert [training_step(r) for r in runs] == [200, 100, None]
    assert [r.label for r in runs] == ["r1 (ba200)", "r1 (ba100)", "other"]
    assert {name: [r.label for r in members] for name, members in series_of(runs).items()} == {
        "r1": ["r1 (ba200)", "r1 (ba100)"]}
    assert has_curves(runs)
    assert not has_curves(runs[:1] + runs[2:])  # one step is no curve
    # the same training run evaluated on other items is another series, named with its settings
    more = label_runs([(at_step(100, {"piqa": {"acc_token": 0.5}}), None),
                       (at_step(200, {"piqa": {"acc_token": 0.6}}, limit=None), None)])
    assert list(series_of(more)) == ["r1 (first 100, 0-shot, bfloat16)", "r1 (all items, 0-shot, bfloat16)"]
    assert not has_curves(more)


def test_curve_points_and_csv():
    curves = build_curves(three_steps())
    assert curves.series == ["r1"] and curves.tasks == ["piqa", "lambada_openai"]
    assert curves.metrics == {"piqa": "acc_token", "lambada_openai": "acc"}  # the headline metrics
    assert curves.baselines == {"piqa": 0.5, "lambada_openai": 0.0}
    assert [(p.step, p.value, p.stderr, p.n, p.tokens) for p in curves.line("r1", "piqa")] == [
        (100, 0.5, 0.05, 100, 51200), (200, 0.6, 0.05, 100, 102400)]
    assert curves_csv(curves) == (
        "series,step,epoch,tokens,task,metric,value,stderr,n\n"
        "r1,100,0,51200,piqa,acc_token,0.5,0.05,100\n"
        "r1,200,0,102400,piqa,acc_token,0.6,0.05,100\n"
        "r1,100,0,51200,lambada_openai,acc,0.0,0.0,100\n"
        "r1,200,0,102400,lambada_openai,acc,0.02,0.014,100\n")
    assert curves_markdown(curves) == (
        "**Training curve: r1**\n\n"
        "| batch | piqa acc_token | lambada_openai acc |\n|--:|--:|--:|\n"
        "| 100 | 0.500 ± 0.050 | 0.000 |\n"
        "| 200 | 0.600 ± 0.050 | 0.020 ± 0.014 |\n")
    # --metric: another metric, which has no chance level
    other = build_curves(three_steps(), {"lambada_openai": "acc_stderr"})
    assert other.metrics["lambada_openai"] == "acc_stderr" and other.baselines["lambada_openai"] is None


def test_no_training_step_is_an_error_when_curves_are_asked_for():
    with pytest.raises(ConfigError, match="no run records a training step"):
        build_curves(label_runs([(make_results("a", {"piqa": {"acc_token": 0.7}}), None)]))


def test_axes():
    # span 0.14 -> a quarter is 0.035 -> step 0.05; 0.48 .. 0.62 widened to 0.45 .. 0.65
    assert nice_step(0.14) == pytest.approx(0.05)
    low, high, ticks = value_axis([0.48, 0.62, 0.5])
    assert (low, high) == pytest.approx((0.45, 0.65)) and ticks == pytest.approx([0.45, 0.5, 0.55, 0.6, 0.65])
    # all equal (a zero accuracy with a zero standard error, chance 0): 0 .. 0.05, steps of 0.025
    low, high, ticks = value_axis([0.0, 0.0, 0.0])
    assert (low, high) == pytest.approx((0.0, 0.05)) and ticks == pytest.approx([0.0, 0.025, 0.05])
    # not fractions (a perplexity): 180 .. 950 -> a quarter of 770 is 192.5 -> step 200 -> 0 .. 1000
    low, high, ticks = value_axis([180.0, 950.0])
    assert (low, high) == (0.0, 1000.0) and ticks == pytest.approx([0, 200, 400, 600, 800, 1000])
    # batches from 0: the last one 320 -> a quarter is 80 -> ticks every 100 up to it
    assert step_axis([40, 80, 320]) == (0.0, 320.0, [0, 100, 200, 300])


def test_chart_geometry():
    # piqa: 0.5 ± 0.05 at batch 100, 0.6 ± 0.05 at 200, chance 0.5: values 0.45 .. 0.65 (ticks of 0.05) over
    # 190 px from y=10; batches 0 .. 200 over 454 px from x=52
    chart = curve_chart(build_curves(three_steps()), "piqa")
    assert chart.y_ticks == [(200.0, "0.45"), (152.5, "0.50"), (105.0, "0.55"), (57.5, "0.60"), (10.0, "0.65")]
    assert chart.x_ticks == [(52.0, "0"), (165.5, "50"), (279.0, "100"), (392.5, "150"), (506.0, "200")]
    assert chart.chance_y == 152.5
    (line,) = chart.lines
    assert line.path == "M279.0,152.5 L506.0,57.5"
    assert line.band == "279.0,105.0 506.0,10.0 506.0,105.0 279.0,200.0"  # value ± stderr, upper then lower
    assert [(d.x, d.y) for d in line.dots] == [(279.0, 152.5), (506.0, 57.5)]
    assert line.dots[1].title == "r1, batch 200: 0.600 ± 0.050 (n=100)"
    assert chart.last == ["r1: 0.600 ± 0.050 at batch 200"]


def test_perplexity_spanning_powers_of_ten_is_drawn_on_a_log_scale():
    assert log_axis([2000.0, 1e6]) == (1e3, 1e6, [1e3, 1e4, 1e5, 1e6])
    assert uses_log_scale([2000.0, 1e6], higher_is_better=False)
    assert not uses_log_scale([2000.0, 1e6], higher_is_better=True) and not uses_log_scale([200.0, 1000.0], False)
    runs = label_runs([(at_step(b, {"lambada_openai": {"acc": 0.0, "perplexity": v, "perplexity_stderr": se}}), None)
                       for b, v, se in ((100, 100_000.0, 150_000.0), (200, 1000.0, 0.0))])
    chart = curve_chart(build_curves(runs, {"lambada_openai": "perplexity"}), "lambada_openai")
    # 1e3 .. 1e5 (the band's upper end 250,000 rounds up to 1e6): four decades over 190 px from y=10
    assert chart.log and chart.chance_y is None  # perplexity has no declared chance level
    assert chart.y_ticks == [(200.0, "1k"), (136.67, "10k"), (73.33, "100k"), (10.0, "1M")]
    (line,) = chart.lines
    assert line.path == "M279.0,73.33 L506.0,200.0"
    # the band: 250,000 above (10 + (6 - 5.39794) / 3 * 190 = 48.13), and below -50,000, cut at the bottom (200)
    assert line.band == "279.0,48.13 506.0,200.0 506.0,200.0 279.0,200.0"
    assert line.dots[0].title == "r1, batch 100: 100,000 ± 150,000 (n=100)"
    assert chart.last == ["r1: 1,000 at batch 200"]
    # a linear axis of large values: short labels (0 .. 2M in steps of 500k)
    runs = label_runs([(at_step(b, {"lambada_openai": {"acc": 0.0, "perplexity": v, "perplexity_stderr": 0.0}}), None)
                       for b, v in ((100, 1_900_000.0), (200, 400_000.0))])
    chart = curve_chart(build_curves(runs, {"lambada_openai": "perplexity"}), "lambada_openai")
    assert not chart.log and [t for _, t in chart.y_ticks] == ["0", "500k", "1M", "1.5M", "2M"]


def test_page_markdown_and_csv_formats():
    runs = three_steps()
    page = render(runs, fmt="html")
    assert '<section id="curves">' in page and page.count('class="card chart curve"') == 2
    assert 'href="#curves"' in page and 'd="M279.0,152.5 L506.0,57.5"' in page
    href = page.split('download="curves.csv"')[0].rsplit('href="', 1)[1].split('"')[0]
    assert unquote(href.split(",", 1)[1]) == curves_csv(build_curves(runs))
    assert '<section id="curves">' not in render(runs, fmt="html", curves=False)
    plain = label_runs([(make_results("a", {"piqa": {"acc_token": 0.7}}), None),
                        (make_results("b", {"piqa": {"acc_token": 0.6}}), None)])
    assert '<section id="curves">' not in render(plain, fmt="html")  # without training steps: none
    with pytest.raises(ConfigError, match="no run records a training step"):
        render(plain, fmt="html", curves=True)
    assert "**Training curve: r1**" in render(runs, fmt="md")
    assert render(runs, fmt="csv", curves=True) == curves_csv(build_curves(runs))


def test_html_report_writes_the_curves_csv_beside_it(tmp_path):
    folders = [write_run(tmp_path / f"ep0-ba{b}", at_step(b, {"piqa": {"acc_token": v}})) for b, v in ((40, 0.5), (80, 0.55))]
    _, written = report_files(folders, output=tmp_path / "curves.html")
    assert written == [tmp_path / "curves.html", tmp_path / "curves.curves.csv"]
    assert written[1].read_text() == curves_csv(build_curves(load_runs(folders)))
    _, written = report_files(folders[:1], output=tmp_path / "one.html")
    assert written == [tmp_path / "one.html"]


def test_a_folder_of_run_folders_stands_for_them(tmp_path):
    for b, v in ((80, 0.55), (40, 0.5)):
        write_run(tmp_path / "evals" / f"ep0-ba{b}", at_step(b, {"piqa": {"acc_token": v}}))
    runs = load_runs([tmp_path / "evals"])
    assert [r.folder.name for r in runs] == ["ep0-ba40", "ep0-ba80"] and has_curves(runs)
    with pytest.raises(ConfigError, match="not found"):
        load_runs([tmp_path])  # no results.json in it nor in its subfolders
