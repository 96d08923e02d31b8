"""Small statistics of one variant's values: the mean with its confidence interval, percentiles.

scipy (a dependency of MLflow) gives the t-distribution; without it the
intervals fall back to the normal approximation. Comparisons of variants are
paired (:mod:`wtb_prefect.analysis.paired`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MeanCI", "mean_ci", "percentile"]


@dataclass(frozen=True)
class MeanCI:
    """A sample mean and its two-sided confidence interval (None below two values)."""

    n: int
    mean: float
    low: float | None
    high: float | None


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
