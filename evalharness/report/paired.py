"""Paired statistics of two runs' per-item scores on the same items: is B really better than A?

`paired_difference(a, b, ...)` gives the task's score under each run, the difference B - A, its paired standard
error, a p-value and how many items moved each way:

- the score is the mean of the per-item values (`mean`), or exp(-mean) of per-item log-probs (`perplexity`);
  with `groups` it is the mean of the group means (a macro average over subsets);
- the paired standard error is the delta-method one over the per-item differences: for a mean,
  sd(b_i - a_i) / sqrt(n); with groups, sqrt(sum_g var_g / n_g) / k;
- the p-value is McNemar's exact test (a two-sided binomial test on the discordant pairs) when every value is
  0 or 1, else a seeded paired bootstrap (items resampled with replacement, within each group) of the
  difference, centred on the observed one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

AGGREGATIONS = ("mean", "perplexity")
BOOTSTRAP_RESAMPLES = 10_000
CHUNK_VALUES = 2_000_000  # resampled values held at once by the bootstrap


@dataclass(frozen=True)
class PairedDifference:
    """One task's paired comparison. `better`/`worse`: items where B's value beats / trails A's."""

    n: int
    a: float
    b: float
    difference: float
    stderr: float | None
    p_value: float
    test: str  # "mcnemar" or "bootstrap"
    better: int
    worse: int
    resamples: int = 0
    seed: int | None = None


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs: 2 * P(X <= min(b, c)), X ~ Bin(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_stderr(differences: Sequence[float], groups: Sequence[str] | None = None) -> float | None:
    """sd(d) / sqrt(n) (sample sd); with groups, the standard error of the mean of group means. None if a group
    has fewer than two items."""
    d = np.asarray(differences, dtype=float)
    strata = _strata(len(d), groups)
    if any(len(ix) < 2 for ix in strata):
        return None
    return math.sqrt(sum(float(np.var(d[ix], ddof=1)) / len(ix) for ix in strata)) / len(strata)


def paired_difference(a: Sequence[float], b: Sequence[float], *, aggregation: str = "mean",
                      groups: Sequence[str] | None = None, higher_is_better: bool = True,
                      resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> PairedDifference:
    """Compare per-item values `a` and `b` (the same items, in the same order).

    higher_is_better: the direction of the per-item values (log-probs: higher is better even though perplexity
    is lower-better), for counting the items that moved each way.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r} (choose from {', '.join(AGGREGATIONS)})")
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"paired values need two equal, non-empty lists (got {len(x)} and {len(y)})")
    strata = _strata(len(x), groups)
    f, slope = _STATISTICS[aggregation]
    mean_a, mean_b = _macro(x, strata), _macro(y, strata)
    value_a, value_b = float(f(mean_a)), float(f(mean_b))
    # delta method: the difference f(mB) - f(mA) moves like f'(mB) * b_i - f'(mA) * a_i per item
    stderr = paired_stderr(slope(mean_b) * y - slope(mean_a) * x, groups)
    ahead = y > x if higher_is_better else y < x
    behind = y < x if higher_is_better else y > x
    better, worse = int(ahead.sum()), int(behind.sum())
    binary = bool(np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all())
    if binary and aggregation == "mean":
        return PairedDifference(len(x), value_a, value_b, value_b - value_a, stderr, mcnemar_exact(better, worse),
                                "mcnemar", better, worse)
    p = bootstrap_p_value(x, y, f, strata, resamples, seed)
    return PairedDifference(len(x), value_a, value_b, value_b - value_a, stderr, p, "bootstrap", better, worse,
                            resamples, seed)


def bootstrap_p_value(a: np.ndarray, b: np.ndarray, f: Callable[[np.ndarray], np.ndarray], strata: list[np.ndarray],
                      resamples: int, seed: int) -> float:
    """Two-sided paired bootstrap: (1 + #{|d* - d| >= |d|}) / (1 + resamples), d = f(mean b) - f(mean a)."""
    observed = float(f(_macro(b, strata)) - f(_macro(a, strata)))
    rng = np.random.default_rng(seed)
    extreme = 0
    chunk = max(1, CHUNK_VALUES // len(a))
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        sum_a, sum_b = np.zeros(size), np.zeros(size)
        for ix in strata:
            pick = ix[rng.integers(0, len(ix), size=(size, len(ix)))]
            sum_a += a[pick].mean(axis=1)
            sum_b += b[pick].mean(axis=1)
        diffs = f(sum_b / len(strata)) - f(sum_a / len(strata))
        extreme += int(np.count_nonzero(np.abs(diffs - observed) >= abs(observed) - 1e-12))
    return (1 + extreme) / (1 + resamples)


def _strata(n: int, groups: Sequence[str] | None) -> list[np.ndarray]:
    """Item indices per group (one group of all items without `groups`)."""
    if groups is None:
        return [np.arange(n)]
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group labels for {n} items")
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    return [np.asarray(ix) for ix in by_group.values()]


def _macro(values: np.ndarray, strata: list[np.ndarray]) -> float:
    return float(np.mean([values[ix].mean() for ix in strata]))


_STATISTICS: dict[str, tuple[Callable, Callable]] = {
    "mean": (lambda m: m, lambda m: 1.0),
    "perplexity": (lambda m: np.exp(-m), lambda m: -math.exp(-m)),
}
