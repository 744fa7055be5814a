"""The HTML leaderboard: escaping and self-containment, then end to end in headless Chromium (playwright)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evalharness.report import report
from evalharness.report.html import environment
from support.report_helpers import lm_sample, make_results, mc_sample, write_run

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EVIL_PROMPT = 'Question: <script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">\nAnswer:'
EVIL_CHOICE = '</pre><b onclick="x()">bold</b>'
EVIL_MODEL = 'evil<b>&"\''


@pytest.fixture(scope="module")
def page_file(tmp_path_factory) -> Path:
    """A leaderboard of three runs (one with hostile text everywhere) and one published model."""
    root = tmp_path_factory.mktemp("board")
    alpha = write_run(root / "alpha", make_results(EVIL_MODEL, {"piqa": {"acc_token": 0.80}, "lambada_openai": {"acc": 0.20}}),
                      {"piqa": [mc_sample(0, EVIL_PROMPT, ["fine", EVIL_CHOICE], gold=1, predicted=0),
                                mc_sample(1, "Question: q2\nAnswer:", ["a", "b"], gold=0, predicted=0)],
                       "lambada_openai": [lm_sample(0, "The cat sat on the", "mat <br>", greedy=True)]})
    beta = write_run(root / "beta", make_results("beta", {"piqa": {"acc_token": 0.60}, "lambada_openai": {"acc": 0.50}}))
    gamma = write_run(root / "gamma", make_results("gamma", {"lambada_openai": {"acc": 0.90}}))
    out = root / "leaderboard.html"
    report([alpha, beta, gamma], output=out, compare="gpt3-125m")
    return out


def test_autoescape_is_on():
    assert environment().autoescape is True


def test_text_is_escaped_and_page_is_self_contained(page_file):
    html = page_file.read_text(encoding="utf-8")
    assert "<script>window.__pwned" not in html and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html
    assert '<img src="x"' not in html and EVIL_CHOICE not in html
    assert "evil&lt;b&gt;&amp;&#34;&#39;" in html
    assert html.count("<script") == 1  # ours, inline
    assert not re.search(r'<(link|script|img|iframe)[^>]*\b(src|href)="(?!data:|#)', html)  # nothing to fetch
    assert "@import" not in html and "url(http" not in html


def _launch(playwright):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} not found: install Debian's chromium (see .ci/run)"
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def _watched_page(browser):
    """A 1200x900 page, the URLs it requests and the console errors/warnings and page errors it reports."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    requests, problems = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return page, requests, problems


def _board_order(page) -> list[str]:
    return page.locator("#board tbody tr td.model .name").all_inner_texts()


def test_in_headless_chromium(page_file, tmp_path):
    from playwright.sync_api import sync_playwright

    url = page_file.resolve().as_uri()
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page, requests, problems = _watched_page(browser)
            page.goto(url, wait_until="load")

            assert requests == [url]  # nothing but the file itself
            assert problems == []
            assert page.evaluate("window.__pwned") is None  # hostile text stayed text
            assert EVIL_PROMPT.split("\n")[0] in page.locator("#samples").text_content()

            # no task is comparable in every row (gamma lacks piqa, GPT-3 125M's values are the paper's): no average
            # (0/2 tasks), and the rows keep their order
            assert _board_order(page) == [EVIL_MODEL, "beta", "gamma", "GPT-3 125M"]
            assert page.locator("#board thead th").nth(1).inner_text().split() == ["Average", "0/2", "tasks"]
            # GPT-3 125M's piqa (0.648, the paper's protocol) is footnoted: after the comparable values either way
            page.get_by_role("button", name="piqa").click()
            assert _board_order(page) == [EVIL_MODEL, "beta", "GPT-3 125M", "gamma"]  # descending, missing last
            assert page.locator("#board th[aria-sort]").get_attribute("aria-sort") == "descending"
            page.get_by_role("button", name="piqa").click()
            assert _board_order(page) == ["beta", EVIL_MODEL, "GPT-3 125M", "gamma"]  # ascending, same groups
            page.get_by_role("button", name="Model").click()
            assert _board_order(page) == ["beta", EVIL_MODEL, "gamma", "GPT-3 125M"]  # names, A to Z

            shot = tmp_path / "leaderboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

            light = page.evaluate("getComputedStyle(document.body).backgroundColor")
            page.emulate_media(color_scheme="dark")
            dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert light != dark

            page.set_viewport_size({"width": 380, "height": 800})
            assert page.evaluate("document.documentElement.scrollWidth") <= 380  # wide tables scroll inside their box
            assert problems == [] and requests == [url]
        finally:
            browser.close()


def test_gauntlet_layout_in_headless_chromium(tmp_path):
    """The gauntlet page: our run's composite beside the published ones, sortable, nothing fetched."""
    from playwright.sync_api import sync_playwright

    values = {"lambada_openai": {"acc": 0.6}, "hellaswag": {"acc_token": 0.55}, "winograd": {"acc_token": 0.8},
              "winogrande": {"acc_token": 0.6}}
    run = make_results("ours", values, shots={"lambada_openai": 0, "hellaswag": 0, "winograd": 3, "winogrande": 5})
    for task, (category, baseline) in {"winograd": ("language_understanding", 0.5),
                                       "winogrande": ("language_understanding", 0.5)}.items():
        run["tasks"][task].update(headline_metric="acc_token", subset_average=None, category=category,
                                  baseline=baseline, metrics={"acc_token": {"harnesses": ["llm-foundry"]}})
    out = tmp_path / "gauntlet.html"
    report([write_run(tmp_path / "run", run)], output=out, layout="gauntlet", compare="mpt-7b,llama-30b")
    url = out.resolve().as_uri()
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page, requests, problems = _watched_page(browser)
            page.goto(url, wait_until="load")
            names = lambda: page.locator("#gauntlet-board tbody tr td.model .name").all_inner_texts()  # noqa: E731
            assert names() == ["ours", "MPT-7B", "LLaMA-30B"]
            # (0.6 + 0.4 + 0.6 + 0.2) / 4 = 0.45 for ours; the published v0 composites are marked, not ranked
            lu = page.locator("#gauntlet-board tbody tr").nth(0).locator("td").nth(3)
            assert lu.locator(".v").inner_text() == "0.450"
            page.locator("#gauntlet-board").get_by_role("button", name="language_understanding").click()
            # descending: ours (comparable) first, then the marked published v0 values 0.549, 0.380
            assert names() == ["ours", "LLaMA-30B", "MPT-7B"]
            page.screenshot(path=str(tmp_path / "gauntlet.png"), full_page=True)
            assert problems == [] and requests == [url]
        finally:
            browser.close()


LONG_LABEL = "a-rather-long-run-label-ba12000"


@pytest.fixture(scope="module")
def visual_page(tmp_path_factory) -> Path:
    """Two runs (one with a long label, a zero score and an acc_token item whose per-token and summed rankings
    disagree) beside six published models, under a --title."""
    root = tmp_path_factory.mktemp("visual")
    item = mc_sample(0, "Question: q\nAnswer:", ["short", "a much longer answer"], gold=1, predicted=1)
    item.update(logprobs=[-3.0, -4.0], num_tokens=[1, 4])  # sums pick choice 0, per-token means (-3, -1) choice 1
    item["predictions"] = {"acc": 0, "acc_norm": 1, "acc_token": 1}
    long_run = write_run(root / "long", make_results(LONG_LABEL, {
        "piqa": {"acc_token": 0.70}, "lambada_openai": {"acc": 0.0, "acc_stderr": 0.0}}), {"piqa": [item]})
    beta = write_run(root / "beta", make_results("beta", {"piqa": {"acc_token": 0.60}, "lambada_openai": {"acc": 0.5}}))
    out = root / "visual.html"
    report([long_run, beta], output=out, compare="mpt-7b,llama-33b,falcon-7b,pythia-12b", title="Visual checks")
    return out


def test_visual_fixes_in_headless_chromium(visual_page, tmp_path):
    """Title, headers with metric and shots, the CSV download, no '± 0.000', whole chart labels, per-token
    scores for acc_token, and at 420 px the sticky header row and model column."""
    import csv
    from urllib.parse import unquote

    from playwright.sync_api import sync_playwright

    url = visual_page.resolve().as_uri()
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page, requests, problems = _watched_page(browser)
            page.goto(url, wait_until="load")
            assert page.title() == "Visual checks" and page.locator("h1").inner_text() == "Visual checks"
            heads = page.locator("#board thead th").all_inner_texts()
            assert heads[3].strip().startswith("piqa\nacc_token · 0-shot")

            # the zero score: "0.000" and no "± 0.000"
            row = page.locator("#board tbody tr", has=page.locator(f"td.model:has-text('{LONG_LABEL}')"))
            lambada = row.locator("td").nth(4)  # model, average, composite, piqa, lambada_openai
            assert lambada.locator(".v").inner_text() == "0.000" and lambada.locator(".se").count() == 0
            assert "± 0.000" not in page.locator("#board").inner_text()
            # chance levels (the shipped tasks' baselines): in the headers, on the zero score, in both charts
            assert "chance 0.500" in heads[3] and "chance 0.000" in heads[4]
            assert lambada.locator(".at-chance").inner_text() == "≈ chance"
            assert row.locator("td").nth(3).locator(".at-chance").count() == 0  # 0.70 ± 0.01 against 0.5
            assert page.locator("#charts svg line.chance").count() == 2
            assert "0.000 ± 0.000" not in page.locator("#charts").inner_text()

            # the wide CSV: a data: URI with one line per model
            link = page.get_by_role("link", name="Download this table (CSV, models × tasks)")
            href = link.get_attribute("href")
            assert href.startswith("data:text/csv;charset=utf-8,") and link.get_attribute("download") == "leaderboard.csv"
            table = list(csv.reader(unquote(href.split(",", 1)[1]).splitlines()))
            assert table[0][:3] == ["model", "kind", "piqa acc_token 0-shot"]
            assert [r[0] for r in table[1:]] == [LONG_LABEL, "beta", "MPT-7B", "LLaMA-30B", "Falcon-7B", "Pythia-12B"]

            # every row is comparable on both tasks: average 2/2, composite over piqa (commonsense, chance 0.5)
            # and lambada (language understanding, chance 0), rows ranked by the composite
            assert heads[1].split() == ["Average", "2/2", "tasks"] and heads[2].split()[:3] == ["Composite", "2", "tasks,"]
            shown = []
            for tr in page.locator("#board tbody tr").all():
                cells = [float(v) for v in tr.locator("td .v").all_inner_texts()]  # average, composite, piqa, lambada
                assert cells[0] == pytest.approx((cells[2] + cells[3]) / 2, abs=1e-3)
                assert cells[1] == pytest.approx(((cells[2] - 0.5) / 0.5 + cells[3]) / 2, abs=2e-3)
                shown.append(cells[1])
            assert shown == sorted(shown, reverse=True) and len(shown) == 6

            # chart labels whole, their first letter inside the chart
            for label in page.locator("#charts svg text.label").all():
                box, svg = label.bounding_box(), label.locator("xpath=ancestor::*[local-name()='svg']").bounding_box()
                assert box["x"] >= svg["x"] - 0.5
            assert LONG_LABEL in page.locator("#charts svg text.label").all_text_contents()  # not cut

            # acc_token: the numbers shown are per-token means and "predicted" sits on the highest
            page.locator("#samples summary", has_text="piqa").click()
            choices = page.locator("#samples ol.choices li")
            assert choices.locator(".lp").all_inner_texts() == ["-3.000", "-1.000"]
            assert choices.nth(1).locator(".badge.run").inner_text() == "predicted"
            assert "per token" in page.locator("#samples .scorelabel").first.inner_text()

            # 420 px: the wrap scrolls; the header row stays at its top, the model header over its column
            page.set_viewport_size({"width": 420, "height": 500})
            wrap = page.locator("#board").locator("xpath=..")
            wrap.evaluate("w => { w.scrollLeft = 100; w.scrollTop = 160; }")
            assert wrap.evaluate("w => [w.scrollLeft, w.scrollTop]") == [100, 160]  # it did scroll both ways
            wrap_box = wrap.bounding_box()
            model_head = page.locator("#board thead th").first.bounding_box()
            model_cell = page.locator("#board tbody td.model").first.bounding_box()
            piqa_head = page.locator("#board thead th").nth(2).bounding_box()
            assert abs(model_head["x"] - model_cell["x"]) < 1 and abs(model_head["width"] - model_cell["width"]) < 1
            assert abs(model_head["y"] - wrap_box["y"] - 1) < 2 and abs(piqa_head["y"] - model_head["y"]) < 1
            page.screenshot(path=str(tmp_path / "narrow.png"))
            assert problems == [] and requests == [url]
        finally:
            browser.close()


def test_training_curves_in_headless_chromium(tmp_path):
    """Three evaluations of one training run: one curve per task through its points in step order, the band,
    the chance line inside the plot, the curves CSV, nothing fetched, and a narrow window."""
    import csv
    from urllib.parse import unquote

    from playwright.sync_api import sync_playwright

    folders = []
    for batch, piqa, lambada in ((100, 0.52, 0.0), (200, 0.61, 0.03), (300, 0.58, 0.05)):
        data = make_results("tiny", {"piqa": {"acc_token": piqa, "acc_token_stderr": 0.05},
                                     "lambada_openai": {"acc": lambada, "acc_stderr": 0.02 if lambada else 0.0}})
        data["model"]["composer"] = {"run_name": "tiny-run", "epoch": 0, "batch": batch}
        folders.append(write_run(tmp_path / f"ep0-ba{batch}", data))
    out = tmp_path / "curves.html"
    report(folders, output=out, title="Curves")
    url = out.resolve().as_uri()
    with sync_playwright() as p:
        browser = _launch(p)
        try:
            page, requests, problems = _watched_page(browser)
            page.goto(url, wait_until="load")
            charts = page.locator("#curves .chart")
            assert charts.count() == 2 and charts.locator("h3").all_inner_texts() == ["piqa", "lambada_openai"]
            piqa = charts.nth(0)
            dots = [d.bounding_box() for d in piqa.locator("circle.dot").all()]
            assert len(dots) == 3 and dots[0]["x"] < dots[1]["x"] < dots[2]["x"]  # batches 100, 200, 300
            assert dots[1]["y"] < dots[2]["y"] < dots[0]["y"]  # 0.61 highest, then 0.58, then 0.52
            assert piqa.locator("polygon.band").count() == 1 and piqa.locator("path.curve").count() == 1
            chance = piqa.locator("line.chance").bounding_box()
            grid = [g.bounding_box()["y"] for g in piqa.locator("line.grid").all()]
            assert min(grid) <= chance["y"] <= max(grid) and dots[0]["y"] < chance["y"]  # 0.5 under every point
            assert piqa.locator("ul.last").inner_text() == "tiny-run: 0.580 ± 0.050 at batch 300"
            link = page.get_by_role("link", name=re.compile("Download the curves"))
            rows = list(csv.reader(unquote(link.get_attribute("href").split(",", 1)[1]).splitlines()))
            assert rows[0] == ["series", "step", "epoch", "tokens", "task", "metric", "value", "stderr", "n"]
            assert [r[1] for r in rows[1:]] == ["100", "200", "300"] * 2 and len(rows) == 7
            assert page.locator("#board tbody td.model .name").all_inner_texts() == [
                "tiny (ba200)", "tiny (ba300)", "tiny (ba100)"]  # ranked by the composite
            page.screenshot(path=str(tmp_path / "curves.png"), full_page=True)
            page.set_viewport_size({"width": 380, "height": 800})
            assert page.evaluate("document.documentElement.scrollWidth") <= 380
            assert charts.nth(0).locator("svg").bounding_box()["width"] <= 380
            assert problems == [] and requests == [url]
        finally:
            browser.close()
