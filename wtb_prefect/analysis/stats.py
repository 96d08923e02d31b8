"""Small statistics for comparing variants: means with confidence intervals,
percentiles and the difference of two means (Welch's t-test).

scipy (a dependency of MLflow) gives the t-distribution; without it the
intervals fall back to the normal approximation and the test to a bootstrap.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DifferenceTest", "MeanCI", "mean_ci", "percentile", "welch_difference"]


@dataclass(frozen=True)
class MeanCI:
    """A sample mean and its two-sided confidence interval (None below two values)."""

    n: int
    mean: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class DifferenceTest:
    """``mean(a) - mean(b)``, its confidence interval and the two-sided p-value."""

    difference: float
    low: float | None
    high: float | None
    p_value: float | None
    method: str


def _t_quantile(confidence: float, df: float) -> float:
    q = 0.5 + confidence / 2
    try:
        from scipy import stats

        return float(stats.t.ppf(q, df))
    except ImportError:
        return statistics.NormalDist().inv_cdf(q)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> MeanCI:
    """The mean of ``values`` with a t-interval at ``confidence``.

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("mean_ci needs at least one value")
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return MeanCI(n, mean, None, None)
    half = _t_quantile(confidence, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return MeanCI(n, mean, mean - half, mean + half)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation, like numpy's default.

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside 0-100.
    """
    if not values:
        raise ValueError("percentile needs at least one value")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be within 0-100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> DifferenceTest:
    """Compare the means of two independent samples (Welch's unequal-variance t-test).

    With fewer than two values on a side there is no interval and no p-value.
    Two samples without any spread differ for certain when their means
    differ (p = 0) and not at all when they are equal (p = 1).
    """
    if not a or not b:
        raise ValueError("welch_difference needs values on both sides")
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return DifferenceTest(diff, None, None, None, "none (fewer than 2 values)")
    va, vb = statistics.variance(a), statistics.variance(b)
    se2 = va / len(a) + vb / len(b)
    if se2 == 0:
        return DifferenceTest(diff, diff, diff, 0.0 if diff != 0 else 1.0, "exact (no spread)")
    se = math.sqrt(se2)
    df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    try:
        from scipy import stats

        p_value = float(2 * stats.t.sf(abs(diff) / se, df))
        method = "welch t-test"
    except ImportError:
        p_value = _bootstrap_p(a, b, diff)
        method = "bootstrap"
    half = _t_quantile(confidence, df) * se
    return DifferenceTest(diff, diff - half, diff + half, p_value, method)


def _bootstrap_p(a: Sequence[float], b: Sequence[float], observed: float, rounds: int = 2000) -> float:
    """Two-sided p-value of the mean difference under the pooled null, by resampling."""
    rng = random.Random(0)
    shift_a = statistics.fmean(a)
    shift_b = statistics.fmean(b)
    centred_a = [x - shift_a for x in a]
    centred_b = [x - shift_b for x in b]
    extreme = 0
    for _ in range(rounds):
        da = statistics.fmean(rng.choices(centred_a, k=len(a)))
        db = statistics.fmean(rng.choices(centred_b, k=len(b)))
        if abs(da - db) >= abs(observed):
            extreme += 1
    return (extreme + 1) / (rounds + 1)
