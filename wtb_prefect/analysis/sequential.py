"""Anytime-valid statistics: verdicts that keep their error rate however often they are read.

The paired tests of :mod:`wtb_prefect.analysis.paired` are fixed-sample tests:
valid when read once, at the end. A race (:mod:`wtb_prefect.analysis.racing`)
and sequential repetitions read their verdicts after every case, so they use
the statistics here, which hold at every look (time-uniformly):

- :class:`BettingTest`: one-sided betting e-processes for the mean of values
  in a known range ``[lo, hi]`` (Waudby-Smith and Ramdas, 2024, "Estimating
  means of bounded random variables by betting"), with the predictable
  plug-in bet. Each null value ``m`` has two capital processes: one that grows
  when the mean is below ``m`` and one when it is above. By Ville's inequality
  a process reaches ``1 / alpha`` with probability at most ``alpha`` if its
  null holds, at any time. The bet scales with the inverse of the estimated
  variance, so paired differences that are mostly 0 (most cases solved or
  failed by every variant) decide far sooner than a worst-case bound would.
- :func:`betting_cs`: the confidence sequence those tests give (every null
  value not yet rejected), for plots and coverage checks.
- :class:`AsymptoticTest` and :func:`asymptotic_cs`: the asymptotic confidence
  sequence of Waudby-Smith et al. ("Time-uniform central limit theory and
  asymptotic confidence sequences") with the normal-mixture boundary of
  Howard et al. (2021), for unbounded metrics such as run time.
- :func:`e_bh` and :func:`bonferroni`: error control across a family.
- :class:`SequentialPassRate`: a cell's repetitions against a pass-rate
  threshold, decided ``pass`` / ``fail`` as soon as the evidence allows, else
  ``flaky`` at the cap.

Everything is vectorised with numpy over a leading shape of independent
streams (replays, pairs, cells), so a replay of hundreds of races is a few
array operations per case.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from wtb_prefect.errors import ConfigError

__all__ = [
    "AsymptoticTest",
    "BettingTest",
    "CellVerdict",
    "MeanTest",
    "SequentialPassRate",
    "asymptotic_cs",
    "betting_cs",
    "bonferroni",
    "e_bh",
    "repetitions_needed",
]

CellVerdict = Literal["pass", "fail", "flaky", "undecided"]
Bet = Literal["grapa", "plugin"]

BET_CAP = 0.75
"""The largest bet as a fraction of the most the capital can stake on a null value.

At the cap a single value at the far end of the range loses 75 % of the
capital; the variance-based plug-in bet reaches it only when the values have
been nearly constant (the usual case for paired 0/1 differences)."""


def _check_alpha(alpha: float, name: str = "alpha") -> None:
    if not 0 < alpha < 1:
        raise ConfigError(name, f"is {alpha}", "give a level strictly between 0 and 1, e.g. 0.05")


def bonferroni(alpha: float, tests: int) -> float:
    """The level of each of ``tests`` tests so that the family's error is at most ``alpha``."""
    _check_alpha(alpha)
    return alpha / max(1, tests)


def e_bh(e_values: Sequence[float] | np.ndarray, alpha: float) -> np.ndarray:
    """The e-Benjamini-Hochberg procedure (Wang and Ramdas, 2022): which hypotheses to reject.

    Rejects the ``k`` hypotheses with the largest e-values, for the largest
    ``k`` with ``e_(k) >= m / (k * alpha)``. It controls the false discovery
    rate at ``alpha`` under any dependence between the e-values, including
    e-processes read at a stopping time (such as the end of a race).
    """
    _check_alpha(alpha)
    e = np.asarray(e_values, dtype=float)
    m = e.size
    reject = np.zeros(m, dtype=bool)
    if m == 0:
        return reject
    order = np.argsort(-e, kind="stable")
    k = np.arange(1, m + 1)
    passing = np.nonzero(e[order] >= m / (k * alpha))[0]
    if passing.size:
        reject[order[: passing[-1] + 1]] = True
    return reject


class MeanTest:
    """The interface of the sequential tests of a mean the race uses (several streams at once).

    ``below[..., j]`` is True once the stream's mean has been shown to lie
    below ``nulls[j]`` (the null "mean >= nulls[j]" rejected), ``above`` once
    shown above it. Both stay True: a rejection is never taken back.
    """

    nulls: np.ndarray
    below: np.ndarray
    above: np.ndarray
    n: np.ndarray

    def update(self, x: np.ndarray, active: np.ndarray | None = None) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def mean(self) -> np.ndarray:
        """The running mean of each stream (nan before its first value)."""
        raise NotImplementedError  # pragma: no cover - interface


class BettingTest(MeanTest):
    """One-sided betting e-processes for bounded means at fixed null values, for many streams at once.

    Args:
        shape: the shape of the streams (e.g. ``(replays, pairs)``).
        nulls: the null values, in the values' own unit (inside ``[lo, hi]``).
        lo, hi: the range every value lies in (e.g. -1 and 1 for paired
            differences of a 0/1 metric).
        alpha: the level of each one-sided test (already split over the family).

    A value ``x`` is rescaled to ``y = (x - lo) / (hi - lo)`` in ``[0, 1]`` and
    the null ``m`` likewise. The capital betting that the mean is below ``m``
    multiplies by ``1 - lam * (y - m)`` per value, the one betting above by
    ``1 + lam * (y - m)``. The bet ``lam`` is predictable (it uses only earlier
    values): the plug-in of Waudby-Smith and Ramdas,
    ``sqrt(2 log(1/alpha) / (var * t * log(1 + t)))`` with a shrunk running
    variance, capped at :data:`BET_CAP` of the most the capital can stake.
    A null ``m`` is rejected when its capital reaches ``1 / alpha``; since each
    capital is a nonnegative supermartingale under its (composite, one-sided)
    null, this happens with probability at most ``alpha`` at any time.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        nulls: Sequence[float] | np.ndarray,
        lo: float,
        hi: float,
        alpha: float,
        cap: float = BET_CAP,
        bet: Bet = "grapa",
    ) -> None:
        _check_alpha(alpha)
        if bet not in ("grapa", "plugin"):
            raise ConfigError("bet", f"is {bet!r}", "use 'grapa' or 'plugin'")
        self.bet = bet
        if not hi > lo:
            raise ConfigError("hi", f"is {hi} with lo {lo}", "give a range with hi > lo")
        if not 0 < cap < 1:
            raise ConfigError("cap", f"is {cap}", "give a fraction strictly between 0 and 1")
        self.lo, self.hi, self.alpha, self.cap = float(lo), float(hi), float(alpha), float(cap)
        self.nulls = np.asarray(nulls, dtype=float)
        m = (self.nulls - self.lo) / (self.hi - self.lo)
        if np.any((m < 0) | (m > 1)):
            raise ConfigError("nulls", f"are {self.nulls.tolist()}", f"give null values inside [{lo}, {hi}]")
        # The most each side can stake and stay positive for every value in the range.
        self._m = m
        self._cap_below = cap / np.maximum(1 - m, 1e-12)
        self._cap_above = cap / np.maximum(m, 1e-12)
        self._threshold = math.log(1 / alpha)
        self._log_two_over = 2 * math.log(1 / alpha)
        self.n = np.zeros(shape, dtype=np.int64)
        self._sum = np.zeros(shape)
        self._sq = np.zeros(shape)  # sum of (y_i - shrunk mean before i)^2
        self.log_below = np.zeros((*shape, m.size))
        self.log_above = np.zeros((*shape, m.size))
        self.below = np.zeros((*shape, m.size), dtype=bool)
        self.above = np.zeros((*shape, m.size), dtype=bool)

    def _bets(self) -> tuple[np.ndarray, np.ndarray]:
        """The bets on "below" and "above" of each (stream, null), from earlier values only."""
        t = (self.n + 1)[..., None]  # the index of the value about to come
        var = (0.25 + self._sq[..., None]) / t  # shrunk towards the largest variance of a [0, 1] value
        if self.bet == "plugin":
            lam = np.sqrt(self._log_two_over / (var * t * np.log1p(t)))
            return lam, lam
        # aGRAPA: the growth-optimal (Kelly) bet of a value with this mean and variance
        gap = (0.5 + self._sum[..., None]) / t - self._m
        lam = gap / (var + gap * gap)
        return np.maximum(-lam, 0.0), np.maximum(lam, 0.0)

    def update(self, x: np.ndarray, active: np.ndarray | None = None) -> None:
        """Take one value per stream; streams where ``active`` is False are left as they are."""
        x = np.broadcast_to(np.asarray(x, dtype=float), self.n.shape)
        y = np.clip((x - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        bet_below, bet_above = self._bets()
        dy = y[..., None] - self._m
        below = np.log1p(-np.minimum(bet_below, self._cap_below) * dy)
        above = np.log1p(np.minimum(bet_above, self._cap_above) * dy)
        mu_before = (0.5 + self._sum) / (self.n + 1)
        if active is None:
            self.log_below += below
            self.log_above += above
            self._sq += (y - mu_before) ** 2
            self._sum += y
            self.n += 1
        else:
            on = np.broadcast_to(np.asarray(active, dtype=bool), self.n.shape)
            self.log_below += np.where(on[..., None], below, 0.0)
            self.log_above += np.where(on[..., None], above, 0.0)
            self._sq += np.where(on, (y - mu_before) ** 2, 0.0)
            self._sum += np.where(on, y, 0.0)
            self.n += on
        self.below |= self.log_below >= self._threshold
        self.above |= self.log_above >= self._threshold

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.lo + (self.hi - self.lo) * self._sum / self.n

    def e_values(self) -> tuple[np.ndarray, np.ndarray]:
        """The current capital of each (stream, null): (evidence below, evidence above)."""
        return np.exp(self.log_below), np.exp(self.log_above)


def _normal_mixture_radius(t: np.ndarray, alpha: float, t_star: float) -> np.ndarray:
    """The two-sided normal-mixture boundary for a unit-variance mean after ``t`` values.

    Robbins' mixture of ``exp(l S_t - l^2 t / 2)`` over ``l ~ N(0, rho^2)``
    is a martingale; Ville's inequality gives
    ``|S_t| / t < sqrt(2 (t rho^2 + 1) / (t^2 rho^2) * log(sqrt(t rho^2 + 1) / alpha))``
    at every time with probability ``1 - alpha``. ``rho`` makes the boundary
    tightest around ``t_star`` values (Howard et al., 2021).
    """
    la = -2 * math.log(alpha)
    rho2 = (la + math.log(la + 1)) / t_star
    t = np.maximum(t, 1)
    return np.sqrt(2 * (t * rho2 + 1) / (t * t * rho2) * np.log(np.sqrt(t * rho2 + 1) / alpha))


class AsymptoticTest(MeanTest):
    """Sequential tests of a mean from the asymptotic confidence sequence, for unbounded values.

    The sequence is ``mean_t +- sd_t * radius(t)`` with the normal-mixture
    radius (:func:`_normal_mixture_radius`) and the running standard deviation:
    time-uniform as the number of values grows (Waudby-Smith et al.), so its
    error rate is close to ``alpha`` for races of tens of cases or more, not
    exact at every size as the betting tests are: on right-skewed values (run
    times) the sample variance runs low early, so nothing is decided before
    ``min_n`` values. ``below[..., j]`` is set once
    the upper bound falls below ``nulls[j]``; ``above`` once the lower bound
    rises above it. ``alpha`` is two-sided.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        nulls: Sequence[float] | np.ndarray,
        alpha: float,
        t_star: float = 100.0,
        min_n: int = 30,
    ) -> None:
        _check_alpha(alpha)
        self.alpha, self.t_star, self.min_n = float(alpha), float(t_star), int(min_n)
        self.nulls = np.asarray(nulls, dtype=float)
        self.n = np.zeros(shape, dtype=np.int64)
        self._mean = np.zeros(shape)
        self._m2 = np.zeros(shape)
        self.below = np.zeros((*shape, self.nulls.size), dtype=bool)
        self.above = np.zeros((*shape, self.nulls.size), dtype=bool)

    def update(self, x: np.ndarray, active: np.ndarray | None = None) -> None:
        """Take one value per stream (Welford's update); inactive streams are left as they are."""
        x = np.broadcast_to(np.asarray(x, dtype=float), self.n.shape)
        on = np.ones(self.n.shape, dtype=bool) if active is None else np.broadcast_to(active, self.n.shape)
        n = self.n + on
        delta = np.where(on, x - self._mean, 0.0)
        self._mean = self._mean + np.where(on, delta / np.maximum(n, 1), 0.0)
        self._m2 = self._m2 + np.where(on, delta * (x - self._mean), 0.0)
        self.n = n
        low, high = self.bounds()
        ready = (self.n >= self.min_n)[..., None]
        self.below |= ready & (high[..., None] < self.nulls)
        self.above |= ready & (low[..., None] > self.nulls)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The current (not intersected) lower and upper bounds of each stream."""
        sd = np.sqrt(self._m2 / np.maximum(self.n - 1, 1))
        radius = sd * _normal_mixture_radius(self.n.astype(float), self.alpha, self.t_star)
        return self._mean - radius, self._mean + radius

    def mean(self) -> np.ndarray:
        return np.where(self.n > 0, self._mean, np.nan)


def betting_cs(
    x: Sequence[float] | np.ndarray,
    lo: float,
    hi: float,
    alpha: float = 0.05,
    resolution: int = 401,
    cap: float = BET_CAP,
) -> tuple[np.ndarray, np.ndarray]:
    """The betting confidence sequence of the mean of ``x`` (last axis = time), at every time.

    Two-sided at ``alpha`` (each side ``alpha / 2``), intersected over time:
    ``lower[..., t] <= mean <= upper[..., t]`` for every ``t`` at once with
    probability at least ``1 - alpha``. The bounds are the outermost rejected
    points of a grid of ``resolution`` null values over ``[lo, hi]``, so they
    are conservative by at most one grid step.
    """
    values = np.asarray(x, dtype=float)
    grid = np.linspace(lo, hi, resolution)
    test = BettingTest(values.shape[:-1], grid, lo, hi, alpha / 2, cap)
    steps = values.shape[-1]
    lower = np.empty(values.shape)
    upper = np.empty(values.shape)
    for t in range(steps):
        test.update(values[..., t])
        inside = ~(test.below | test.above)
        # the capitals are monotone in the null, so the non-rejected nulls form an interval
        first = np.argmax(inside, axis=-1)
        last = resolution - 1 - np.argmax(inside[..., ::-1], axis=-1)
        empty = ~inside.any(axis=-1)
        lower[..., t] = np.where(empty, np.nan, grid[np.maximum(first - 1, 0)])
        upper[..., t] = np.where(empty, np.nan, grid[np.minimum(last + 1, resolution - 1)])
    return lower, upper


def asymptotic_cs(
    x: Sequence[float] | np.ndarray, alpha: float = 0.05, t_star: float = 100.0, min_n: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """The asymptotic confidence sequence of the mean of ``x`` (last axis = time), intersected over time.

    See :class:`AsymptoticTest`. Bounds before ``min_n`` values are infinite: the
    guarantee is asymptotic, and a variance estimated from a handful of values
    would, once intersected, carry its error to every later time.
    """
    _check_alpha(alpha)
    values = np.asarray(x, dtype=float)
    t = np.arange(1, values.shape[-1] + 1, dtype=float)
    mean = np.cumsum(values, axis=-1) / t
    sq = np.cumsum(values**2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.maximum(sq - t * mean**2, 0.0) / np.maximum(t - 1, 1)
    radius = np.sqrt(var) * _normal_mixture_radius(t, alpha, t_star)
    radius[..., : max(min_n, 1) - 1] = np.inf
    lower = np.maximum.accumulate(mean - radius, axis=-1)
    upper = np.minimum.accumulate(mean + radius, axis=-1)
    return lower, upper


def repetitions_needed(threshold: float, alpha: float, margin: float = 0.0) -> int:
    """The fewest repetitions after which a cell can be decided ``pass`` at all.

    Passing needs evidence against "the rate is at most ``threshold - margin``";
    the most that ``k`` passes in a row can give is ``(1 / (threshold - margin)) ** k``
    (the likelihood ratio of a rate of 1), so ``k`` must reach
    ``log(1 / alpha) / log(1 / (threshold - margin))``, whatever the test.
    """
    null = threshold - margin
    if null <= 0:
        return 1
    return math.ceil(math.log(1 / alpha) / math.log(1 / null) - 1e-12)


class SequentialPassRate:
    """Sequential repetitions of (variant, case) cells against a pass-rate threshold.

    Each cell's 0/1 outcomes arrive one repetition at a time. The cell is
    ``pass`` once its rate is shown above ``threshold - margin`` and ``fail``
    once shown below ``threshold + margin`` (betting e-processes at level
    ``alpha`` each, :class:`BettingTest`), and then stops repeating; a cell still
    undecided after ``max_repetitions`` is ``flaky``, never pass or fail.
    With ``margin`` 0 a cell whose true rate is below the threshold is passed
    with probability at most ``alpha``; with a margin, one whose rate is below
    ``threshold - margin`` (the indifference zone sits around the threshold).

    The error guarantee has a price the cap cannot lift: see
    :func:`repetitions_needed`.
    """

    def __init__(
        self,
        cells: int | tuple[int, ...],
        threshold: float,
        max_repetitions: int,
        alpha: float = 0.05,
        margin: float = 0.0,
        cap: float = 0.9,
    ) -> None:
        _check_alpha(alpha)
        if not 0 < threshold < 1:
            raise ConfigError("threshold", f"is {threshold}", "give a pass rate strictly between 0 and 1, e.g. 0.8")
        if not 0 <= margin < min(threshold, 1 - threshold):
            raise ConfigError("margin", f"is {margin}", "give 0 or a small margin inside the threshold's range")
        if max_repetitions < 1:
            raise ConfigError("repetitions", f"is {max_repetitions}", "give at least 1")
        shape = (cells,) if isinstance(cells, int) else tuple(cells)
        self.threshold, self.margin, self.max_repetitions = threshold, margin, max_repetitions
        # nulls: index 0 for "pass" (above threshold - margin), 1 for "fail" (below threshold + margin)
        self._test = BettingTest(shape, [threshold - margin, threshold + margin], 0.0, 1.0, alpha, cap)

    @property
    def repetitions(self) -> np.ndarray:
        """How many repetitions each cell has taken."""
        return self._test.n

    @property
    def decided(self) -> np.ndarray:
        """Cells decided pass or fail."""
        return self._test.above[..., 0] | self._test.below[..., 1]

    @property
    def running(self) -> np.ndarray:
        """Cells that still need another repetition."""
        return ~self.decided & (self._test.n < self.max_repetitions)

    def update(self, outcome: np.ndarray, active: np.ndarray | None = None) -> None:
        """Take one 0/1 outcome per cell; cells not :attr:`running` (or not ``active``) ignore theirs."""
        running = self.running if active is None else self.running & np.asarray(active, dtype=bool)
        self._test.update(np.nan_to_num(np.asarray(outcome, dtype=float)), running)

    def verdicts(self) -> np.ndarray:
        """Per cell: ``pass``, ``fail``, ``flaky`` (undecided at the cap) or ``undecided`` (still running)."""
        out = np.full(self._test.n.shape, "undecided", dtype=object)
        out[~self.running] = "flaky"
        out[self._test.below[..., 1]] = "fail"
        out[self._test.above[..., 0]] = "pass"
        return out
