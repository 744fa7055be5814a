"""Metrics: data-driven cases with hand-computed expected values."""

from __future__ import annotations

import pytest

from evalharness.metrics import (
    AGGREGATIONS,
    MetricValue,
    lm_acc,
    macro_mean,
    mc_predictions,
    mc_scores,
    mean_with_stderr,
    micro_mean,
    perplexity,
)
from evalharness.requests import LoglikelihoodResult

TOL = 1e-12


def R(logprob: float, num_tokens: int = 1, is_greedy: bool = False) -> LoglikelihoodResult:
    """Shorthand for one choice's result."""
    return LoglikelihoodResult(logprob=logprob, is_greedy=is_greedy, num_tokens=num_tokens)


def assert_metric(got: MetricValue, expected: tuple[float, float | None, int], tol: float) -> None:
    value, stderr, n = expected
    assert got.value == pytest.approx(value, abs=tol)
    if stderr is None:
        assert got.stderr is None
    else:
        assert got.stderr == pytest.approx(stderr, abs=tol)
    assert got.n == n


# --- lm_acc ---------------------------------------------------------------------------

LM_ACC_CASES = [
    (R(-0.5, is_greedy=True), 1.0),
    (R(-0.5, is_greedy=False), 0.0),
]


@pytest.mark.parametrize("result, expected", LM_ACC_CASES)
def test_lm_acc(result: LoglikelihoodResult, expected: float) -> None:
    assert lm_acc(result) == expected


# --- mean_with_stderr -------------------------------------------------------------------

# (values, (value, stderr, n), tolerance)
MEAN_CASES = [
    # mean 3/4 = 0.75; stderr = sqrt((3*0.25^2 + 0.75^2)/3/4) = sqrt(0.75/3/4) = 0.25
    ([1.0, 0.0, 1.0, 1.0], (0.75, 0.25, 4), TOL),
    # mean 3; stderr = sqrt((1^2 + 1^2)/1/2) = 1
    ([2.0, 4.0], (3.0, 1.0, 2), TOL),
    # mean 3; stderr = sqrt((4+1+0+1+4)/4/5) = sqrt(0.5) = 0.7071067811865476
    ([1.0, 2.0, 3.0, 4.0, 5.0], (3.0, 0.7071067811865476, 5), TOL),
    # constant values: stderr = sqrt(0/2/3) = 0
    ([1.0, 1.0, 1.0], (1.0, 0.0, 3), TOL),
    # one value: stderr undefined -> None
    ([0.5], (0.5, None, 1), TOL),
]


@pytest.mark.parametrize("values, expected, tol", MEAN_CASES)
def test_mean_with_stderr(values: list[float], expected: tuple, tol: float) -> None:
    assert_metric(mean_with_stderr(values), expected, tol)


def test_mean_with_stderr_empty_raises() -> None:
    with pytest.raises(ValueError, match="zero values"):
        mean_with_stderr([])


# --- perplexity ---------------------------------------------------------------------

# (per-item summed logprobs, (value, stderr, n), tolerance)
PERPLEXITY_CASES = [
    # exp(-mean) = exp(2) = 7.38905609893065;
    # stderr = e^2 * sqrt(((1)^2 + (1)^2)/1/2) = e^2 * 1 = 7.38905609893065
    ([-1.0, -3.0], (7.38905609893065, 7.38905609893065, 2), 1e-9),
    # exp(2); SEM = sqrt((1+0+1)/2/3) = 1/sqrt(3); stderr = e^2/sqrt(3) = 4.266073527774857
    ([-1.0, -2.0, -3.0], (7.38905609893065, 4.266073527774857, 3), 1e-9),
    # exp(-0) = 1; identical items: stderr = 1 * 0 = 0
    ([0.0, 0.0], (1.0, 0.0, 2), TOL),
    # exp(-(-1)) = e = 2.718281828459045; one item: stderr None
    ([-1.0], (2.718281828459045, None, 1), 1e-9),
]


@pytest.mark.parametrize("logprobs, expected, tol", PERPLEXITY_CASES)
def test_perplexity(logprobs: list[float], expected: tuple, tol: float) -> None:
    assert_metric(perplexity(logprobs), expected, tol)


def test_perplexity_empty_raises() -> None:
    with pytest.raises(ValueError, match="zero values"):
        perplexity([])


def test_aggregations_registry() -> None:
    # mean of [1, 0] = 0.5; stderr = sqrt((0.25+0.25)/1/2) = 0.5
    assert AGGREGATIONS["mean"].fn([1.0, 0.0]) == MetricValue(0.5, 0.5, 2)
    # exp(-(-0.0)) = 1.0 for identical zero logprobs; stderr 0
    assert AGGREGATIONS["perplexity"].fn([0.0, 0.0]) == MetricValue(1.0, 0.0, 2)
    assert set(AGGREGATIONS) == {"mean", "perplexity"}


# --- multiple choice ----------------------------------------------------------------

# (results, choice lengths in characters, expected predictions)
MC_PRED_CASES = [
    pytest.param(
        # acc: -4 > -6 -> 0; acc_norm: -4/2=-2 < -6/6=-1 -> 1; acc_token: -4/1 > -6/1 -> 0
        [R(-4.0, 1), R(-6.0, 1)], [2, 6], {"acc": 0, "acc_norm": 1, "acc_token": 0},
        id="acc_vs_acc_norm",
    ),
    pytest.param(
        # acc: -3 > -4 -> 0; acc_norm: -3/3=-1 > -4/3=-1.33 -> 0; acc_token: -3/1=-3 < -4/4=-1 -> 1
        [R(-3.0, 1), R(-4.0, 4)], [3, 3], {"acc": 0, "acc_norm": 0, "acc_token": 1},
        id="acc_token",
    ),
    pytest.param(
        # acc: max(-2,-3,-4) -> 0; acc_norm: (-2/1, -3/6, -4/4) = (-2, -0.5, -1) -> 1;
        # acc_token: (-2/1, -3/3, -4/8) = (-2, -1, -0.5) -> 2
        [R(-2.0, 1), R(-3.0, 3), R(-4.0, 8)], [1, 6, 4],
        {"acc": 0, "acc_norm": 1, "acc_token": 2},
        id="all_three_differ",
    ),
    pytest.param(
        # full tie on every metric: -2 == -2, -2/4 == -2/4, -2/2 == -2/2 -> lowest index 0
        [R(-2.0, 2), R(-2.0, 2)], [4, 4], {"acc": 0, "acc_norm": 0, "acc_token": 0},
        id="tie_all_lowest",
    ),
    pytest.param(
        # tie between 1 and 2, index 0 worse: acc (-3, -1, -1) -> 1;
        # acc_norm (-3/1, -1/2, -1/2) = (-3, -0.5, -0.5) -> 1; acc_token (-3, -1, -1) -> 1
        [R(-3.0, 1), R(-1.0, 1), R(-1.0, 1)], [1, 2, 2],
        {"acc": 1, "acc_norm": 1, "acc_token": 1},
        id="tie_later_lowest",
    ),
    pytest.param(
        # acc: -4 < -2 -> 1; acc_norm tie: -4/2 == -2/1 == -2 -> 0; acc_token: -4/1 < -2/1 -> 1
        [R(-4.0, 1), R(-2.0, 1)], [2, 1], {"acc": 1, "acc_norm": 0, "acc_token": 1},
        id="tie_acc_norm_only",
    ),
    pytest.param(
        # acc: -6 < -3 -> 1; acc_norm: -6/1 < -3/1 -> 1; acc_token tie: -6/2 == -3/1 == -3 -> 0
        [R(-6.0, 2), R(-3.0, 1)], [1, 1], {"acc": 1, "acc_norm": 1, "acc_token": 0},
        id="tie_acc_token_only",
    ),
    pytest.param(
        # a single choice is always predicted
        [R(-9.0, 3)], [5], {"acc": 0, "acc_norm": 0, "acc_token": 0},
        id="single_choice",
    ),
]


@pytest.mark.parametrize("results, lengths, expected", MC_PRED_CASES)
def test_mc_predictions(results: list, lengths: list[int], expected: dict[str, int]) -> None:
    assert mc_predictions(results, lengths) == expected


# (results, lengths, gold, expected scores incl. predictions)
MC_SCORE_CASES = [
    pytest.param(
        # predictions acc=0, acc_norm=1, acc_token=0 (see acc_vs_acc_norm); gold 1
        [R(-4.0, 1), R(-6.0, 1)], [2, 6], 1,
        {"acc": 0.0, "acc_norm": 1.0, "acc_token": 0.0,
         "pred_acc": 0, "pred_acc_norm": 1, "pred_acc_token": 0},
        id="gold_1",
    ),
    pytest.param(
        # same predictions; gold 0
        [R(-4.0, 1), R(-6.0, 1)], [2, 6], 0,
        {"acc": 1.0, "acc_norm": 0.0, "acc_token": 1.0,
         "pred_acc": 0, "pred_acc_norm": 1, "pred_acc_token": 0},
        id="gold_0",
    ),
    pytest.param(
        # predictions acc=0, acc_norm=1, acc_token=2 (see all_three_differ); gold 2
        [R(-2.0, 1), R(-3.0, 3), R(-4.0, 8)], [1, 6, 4], 2,
        {"acc": 0.0, "acc_norm": 0.0, "acc_token": 1.0,
         "pred_acc": 0, "pred_acc_norm": 1, "pred_acc_token": 2},
        id="gold_2",
    ),
]


@pytest.mark.parametrize("results, lengths, gold, expected", MC_SCORE_CASES)
def test_mc_scores(results: list, lengths: list[int], gold: int, expected: dict) -> None:
    assert mc_scores(results, lengths, gold) == expected


# (results, lengths, gold, error message fragment)
MC_ERROR_CASES = [
    pytest.param([R(-1.0, 1), R(-2.0, 1)], [3, 0], 0, "choice 1 has 0 characters", id="zero_chars"),
    pytest.param([R(-1.0, 0), R(-2.0, 1)], [3, 3], 0, "choice 0 has 0 tokens", id="zero_tokens"),
    pytest.param([R(-1.0, 1), R(-2.0, 1)], [3], 0, "2 results but 1 choice lengths", id="mismatch"),
    pytest.param([], [], 0, "out of range", id="empty"),
    pytest.param([R(-1.0, 1), R(-2.0, 1)], [3, 3], 2, "gold index 2", id="gold_out_of_range"),
    pytest.param([R(float("nan"), 1), R(-2.0, 1)], [3, 3], 0, "NaN", id="nan_logprob"),
]


@pytest.mark.parametrize("results, lengths, gold, match", MC_ERROR_CASES)
def test_mc_scores_errors(results: list, lengths: list[int], gold: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mc_scores(results, lengths, gold)


def test_mc_predictions_empty_raises() -> None:
    with pytest.raises(ValueError, match="no choices"):
        mc_predictions([], [])


def test_mc_predictions_zero_length_raises() -> None:
    with pytest.raises(ValueError, match="0 characters"):
        mc_predictions([R(-1.0, 1)], [0])


# --- macro vs micro -----------------------------------------------------------------

# (groups of per-item values, expected micro, expected macro, tolerance)
GROUP_CASES = [
    (
        {"a": [1.0, 1.0, 1.0, 0.0], "b": [0.0, 0.0]},
        # micro: pooled [1,1,1,0,0,0]: mean 3/6 = 0.5;
        #   stderr = sqrt(6*0.5^2/5/6) = sqrt(0.05) = 0.22360679774997896
        (0.5, 0.22360679774997896, 6),
        # macro: a = 0.75 (se 0.25, as MEAN_CASES), b = 0 (se 0): (0.75+0)/2 = 0.375;
        #   stderr = sqrt(0.25^2 + 0^2)/2 = 0.125
        (0.375, 0.125, 6),
        TOL,
    ),
    (
        {"a": [1.0, 0.0], "b": [1.0, 0.0]},
        # micro: [1,0,1,0]: mean 0.5; stderr = sqrt(4*0.25/3/4) = sqrt(1/12) = 0.28867513459481287
        (0.5, 0.28867513459481287, 4),
        # macro: a = b = 0.5, each se = sqrt(0.5/1/2) = 0.5: value 0.5;
        #   stderr = sqrt(0.25+0.25)/2 = 0.35355339059327373
        (0.5, 0.35355339059327373, 4),
        TOL,
    ),
    (
        {"a": [1.0, 0.0, 1.0], "b": [1.0]},
        # micro: [1,0,1,1]: mean 0.75, stderr 0.25 (as MEAN_CASES)
        (0.75, 0.25, 4),
        # macro: a = 2/3, b = 1 (n=1, se None): value (2/3+1)/2 = 0.8333333333333334; stderr None
        (0.8333333333333334, None, 4),
        TOL,
    ),
]


@pytest.mark.parametrize("groups, micro, macro, tol", GROUP_CASES)
def test_micro_mean(groups: dict, micro: tuple, macro: tuple, tol: float) -> None:
    assert_metric(micro_mean(groups), micro, tol)


@pytest.mark.parametrize("groups, micro, macro, tol", GROUP_CASES)
def test_macro_mean(groups: dict, micro: tuple, macro: tuple, tol: float) -> None:
    per_group = {name: mean_with_stderr(vals) for name, vals in groups.items()}
    assert_metric(macro_mean(per_group), macro, tol)


def test_macro_mean_of_given_values() -> None:
    # (0.6 + 0.4)/2 = 0.5; stderr = sqrt(0.03^2 + 0.04^2)/2 = 0.05/2 = 0.025; n = 100+50
    got = macro_mean({"x": MetricValue(0.6, 0.03, 100), "y": MetricValue(0.4, 0.04, 50)})
    assert_metric(got, (0.5, 0.025, 150), TOL)


def test_macro_and_micro_empty_raise() -> None:
    with pytest.raises(ValueError, match="zero groups"):
        macro_mean({})
    with pytest.raises(ValueError, match="zero values"):
        micro_mean({})
