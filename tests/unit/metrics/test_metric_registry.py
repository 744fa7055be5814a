"""The metric registry: every registered metric's per-item value, aggregation and direction, by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from evalharness.metrics import AGGREGATIONS, Metric, Outcome, get_metric, metric_names, register_metric
from evalharness.requests import GenerateResult, LoglikelihoodResult

# two choices: " no" (-1.0 over 1 token, 2 chars) and " maybe so" (-1.5 over 3 tokens, 8 chars); gold is 1
MC = Outcome((LoglikelihoodResult(-1.0, False, 1), LoglikelihoodResult(-1.5, False, 3)), gold=1, choice_lengths=(2, 8))


def test_multiple_choice_metrics_by_hand():
    # acc: argmax(-1.0, -1.5) = 0 (wrong); acc_norm: argmax(-0.5, -0.1875) = 1; acc_token: argmax(-1.0, -0.5) = 1
    assert get_metric("acc", "multiple_choice").value(MC) == 0.0
    assert get_metric("acc_norm", "multiple_choice").value(MC) == 1.0
    assert get_metric("acc_token", "multiple_choice").value(MC) == 1.0
    assert [get_metric(m, "multiple_choice").predict(MC) for m in ("acc", "acc_norm", "acc_token")] == [0, 1, 1]


def test_language_modelling_and_generation_metrics_by_hand():
    greedy = Outcome((LoglikelihoodResult(-2.25, True, 2),), gold="Paris")
    assert get_metric("acc", "language_modeling").value(greedy) == 1.0
    ppl = get_metric("perplexity", "language_modeling")
    assert ppl.value(greedy) == -2.25 and ppl.key == "logprob" and not ppl.higher_is_better
    assert ppl.aggregation == "perplexity" and not AGGREGATIONS["perplexity"].by_subset
    gen = Outcome((GenerateResult(("The Paris!",), (3,), (True,)),), gold="paris")
    assert get_metric("exact_match", "generation").value(gen) == 1.0  # lower case, punctuation and "the" dropped


def test_pass_at_k_for_any_k():
    runs = tuple(SimpleNamespace(passed=p) for p in (True, False, False, True))
    out = Outcome((GenerateResult(("a", "b", "c", "d"), (1,) * 4, (True,) * 4),), gold="", executions=runs)
    assert get_metric("pass@1", "generation").value(out) == pytest.approx(0.5)  # 2 of 4 pass
    # pass@2 = 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert get_metric("pass@2", "generation").value(out) == pytest.approx(5 / 6)
    assert get_metric("pass@3", "generation").needs_execution


def test_unknown_and_misplaced_names_say_what_exists():
    with pytest.raises(KeyError, match="did you mean 'acc_norm'"):
        get_metric("acc_nrom", "multiple_choice")
    with pytest.raises(KeyError, match="not defined for multiple_choice"):
        get_metric("perplexity", "multiple_choice")
    assert "pass@<k>" in metric_names()


def test_a_registered_metric_is_usable_by_name():
    def brier(o: Outcome) -> float:  # (1 - p(gold))^2 with p from the two log-probs' softmax: hand-checked below
        import math

        ps = [math.exp(r.logprob) for r in o.results]
        return (1 - ps[o.gold] / sum(ps)) ** 2

    register_metric(Metric("brier", frozenset({"multiple_choice"}), brier, higher_is_better=False))
    # p(gold) = e^-1.5 / (e^-1 + e^-1.5) = 1 / (1 + e^0.5) = 0.3775; (1 - 0.3775)^2 = 0.3875
    assert get_metric("brier", "multiple_choice").value(MC) == pytest.approx(0.38750, abs=1e-4)
    with pytest.raises(ValueError, match="unknown aggregation"):
        register_metric(Metric("odd", frozenset({"multiple_choice"}), brier, aggregation="median"))
