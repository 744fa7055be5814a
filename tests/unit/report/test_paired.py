"""Paired statistics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from evalharness.report.paired import mcnemar_exact, paired_difference, paired_stderr


def test_mcnemar_exact_by_hand():
    # b=8, c=2: 2 * P(X <= 2), X ~ Bin(10, 1/2) = 2 * (1 + 10 + 45) / 1024
    assert mcnemar_exact(8, 2) == pytest.approx(112 / 1024)
    assert mcnemar_exact(2, 8) == pytest.approx(112 / 1024)
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0  # 2 * 42/64 > 1 is capped
    assert mcnemar_exact(0, 0) == 1.0


def test_paired_stderr_of_a_tiny_list():
    # d = 1, 0, -1, 0: mean 0, sample variance 2/3, se = sqrt(2/3) / 2
    assert paired_stderr([1, 0, -1, 0]) == pytest.approx(math.sqrt(2 / 3) / 2)
    assert paired_stderr([0.5]) is None


def test_paired_stderr_of_a_macro_average():
    # groups x: (1, 0) variance 1/2 over 2 items; y: (0, 0, 1) variance 1/3 over 3 items; two groups
    se = paired_stderr([1, 0, 0, 0, 1], ["x", "x", "y", "y", "y"])
    assert se == pytest.approx(math.sqrt(0.5 / 2 + (1 / 3) / 3) / 2)


def test_binary_items_use_mcnemar():
    # 8 items A right and B wrong, 2 the other way, 5 both right, 5 both wrong
    a = [1] * 8 + [0] * 2 + [1] * 5 + [0] * 5
    b = [0] * 8 + [1] * 2 + [1] * 5 + [0] * 5
    r = paired_difference(a, b)
    assert (r.n, r.a, r.b, r.test, r.better, r.worse) == (20, 0.65, 0.35, "mcnemar", 2, 8)
    assert r.difference == pytest.approx(-0.3)
    assert r.p_value == pytest.approx(112 / 1024)
    # differences: eight -1, two +1, ten 0; sum of squared deviations 8*0.49 + 2*1.69 + 10*0.09 = 8.2
    assert r.stderr == pytest.approx(math.sqrt(8.2 / 19 / 20))


def test_bootstrap_of_two_items_matches_the_enumeration():
    # d = (0.6, -0.2), observed 0.2; resampled means 0.6, 0.2, 0.2, -0.2 (each 1/4): half are >= 0.2 from 0.2
    r = paired_difference([0.0, 0.0], [0.6, -0.2], resamples=10_000, seed=1)
    assert r.test == "bootstrap" and (r.better, r.worse) == (1, 1)
    assert r.p_value == pytest.approx(0.5, abs=0.02)
    assert paired_difference([0.0, 0.0], [0.6, -0.2], resamples=10_000, seed=1).p_value == r.p_value  # seeded


def test_bootstrap_of_a_constant_shift_and_of_equal_runs():
    r = paired_difference([0.1, 0.2, 0.3], [0.6, 0.7, 0.8], resamples=999)
    assert r.p_value == pytest.approx(1 / 1000)  # every resample's difference is the observed one
    assert r.stderr == pytest.approx(0.0)
    assert paired_difference([0.1, 0.2, 0.3], [0.1, 0.2, 0.3], resamples=99).p_value == 1.0


def test_perplexity_of_log_probs():
    # A: mean log-prob -2 (perplexity e^2); B: -1.5 (e^1.5). Delta method: y_i = -e^1.5 * b_i + e^2 * a_i
    r = paired_difference([-1.0, -3.0], [-1.0, -2.0], aggregation="perplexity", resamples=200)
    assert r.a == pytest.approx(math.exp(2)) and r.b == pytest.approx(math.exp(1.5))
    assert r.difference == pytest.approx(math.exp(1.5) - math.exp(2))
    y = [math.exp(1.5) * 1 - math.exp(2) * 1, math.exp(1.5) * 2 - math.exp(2) * 3]
    assert r.stderr == pytest.approx(abs(y[0] - y[1]) / 2)  # two items: sd = |y1 - y2| / sqrt(2), over sqrt(2)
    assert (r.test, r.better, r.worse) == ("bootstrap", 1, 0)  # a higher log-prob is the better item


def test_lower_is_better_items_and_bad_input():
    r = paired_difference([0.5, 0.2], [0.4, 0.3], higher_is_better=False, resamples=10)
    assert (r.better, r.worse) == (1, 1)
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_difference([1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="unknown aggregation"):
        paired_difference([1.0], [1.0], aggregation="median")


def test_page_numbers_from_1000_up_are_whole_with_separators():
    from evalharness.report.paired_tables import _cell_number

    assert [_cell_number(0.4826), _cell_number(-0.002, "+"), _cell_number(0.0, "+")] == ["0.483", "-0.002", "+0.000"]
    assert [_cell_number(2463430.067), _cell_number(-1919982.608, "+"), _cell_number(999.9996)] == [
        "2,463,430", "-1,919,983", "1000.000"]
