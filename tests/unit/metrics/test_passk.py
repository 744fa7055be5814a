"""The unbiased pass@k estimator against hand-computed values and exact binomials."""

from __future__ import annotations

import math

import pytest

from evalharness.execution import pass_at_k


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (5, 2, 1, 0.4),              # c / n
    (5, 2, 2, 0.7),              # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (5, 0, 3, 0.0),              # no correct sample
    (5, 3, 3, 1.0),              # n - c = 2 < k: every draw of 3 holds a correct one
    (5, 5, 1, 1.0),
    (10, 1, 10, 1.0),
    (10, 3, 5, 1 - 21 / 252),    # 1 - C(7,5)/C(10,5)
    (1000, 1, 100, 0.1),         # 1 - C(999,100)/C(1000,100) = 1 - 900/1000
])
def test_hand_computed_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_matches_exact_binomials() -> None:
    for n in range(1, 16):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12), (n, c, k)


def test_large_n_stays_finite_and_in_range() -> None:
    value = pass_at_k(200_000, 37, 1000)
    assert 0.0 < value < 1.0
    assert value == pytest.approx(1 - math.comb(200_000 - 37, 1000) / math.comb(200_000, 1000), rel=1e-9)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_invalid_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)
