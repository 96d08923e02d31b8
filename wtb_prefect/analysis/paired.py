"""Paired comparison of variants against a baseline, corrected for many comparisons.

Every variant of a batch runs on the same test cases, so each case gives a
*pair* (variant value, baseline value). Comparing pairs removes the case-to-case
spread (easy and hard cases) that an unpaired test counts as noise:

- Repetitions of a case are averaged first, so the case is the unit of analysis.
- Only cases both sides completed are paired; the others are listed on the result
  (:attr:`PairedComparison.only_variant`, :attr:`PairedComparison.only_baseline`).
- The difference is ``mean(variant - baseline)`` with the interval of the test
  that gives the verdict: the t-test's own interval beside the paired t-test (so
  the two never disagree), else a seeded paired bootstrap interval (cases
  resampled with replacement, :data:`BOOTSTRAP_RESAMPLES` or more).
- The p-value comes from the test that fits the values: exact McNemar (a binomial
  test on the discordant pairs) when every paired value is 0 or 1, else the
  paired t-test, or the Wilcoxon signed-rank test on request.
- :func:`compare_family` corrects the p-values of all (variant, metric) tests of a batch
  together (Holm by default, Benjamini-Hochberg on request) and gives each a
  verdict: ``better``, ``worse``, ``no detectable difference`` (with the minimal
  detectable effect at that n) or ``too few cases`` below :data:`MIN_PAIRED_CASES`.

Repetitions also give :func:`pass_at_k` and :func:`pass_hat_k` for 0/1 metrics;
a comparative (pairwise) judge's scores turn into :func:`win_tie_loss` rates.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Literal

import numpy as np

from wtb_prefect.errors import ConfigError

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "MIN_PAIRED_CASES",
    "CaseSummary",
    "Correction",
    "PairedComparison",
    "PairedTest",
    "Verdict",
    "WinTieLoss",
    "adjust_p_values",
    "compare_family",
    "bootstrap_ci",
    "case_summaries",
    "compare_paired",
    "interval_label",
    "interval_level",
    "minimal_detectable_effect",
    "pass_at_k",
    "pass_hat_k",
    "t_interval",
    "verdict_code",
    "win_tie_loss",
]


def _scipy_stats() -> ModuleType:
    """``scipy.stats``, imported on first use: it takes over a second, which a single run never needs."""
    from scipy import stats

    return stats


MIN_PAIRED_CASES = 10
"""Below this many paired cases a comparison says "too few cases" instead of a verdict.

With fewer than 10 pairs the exact McNemar test cannot reach p < 0.01 unless
every case flips the same way, a t-test's variance estimate is unreliable, and
a constant difference over a handful of cases says more about the cases than
the variants."""

BOOTSTRAP_RESAMPLES = 2000
"""The default (and least) number of bootstrap resamples of an interval."""

Verdict = Literal["better", "worse", "no detectable difference", "too few cases"]
PairedTest = Literal["auto", "mcnemar", "t", "wilcoxon"]
Correction = Literal["holm", "bh", "none"]

_VERDICT_CODES: dict[str, float] = {"better": 1.0, "no detectable difference": 0.0, "worse": -1.0}


def verdict_code(verdict: str) -> float | None:
    """A verdict as a number for metric stores: 1 better, 0 no detectable difference, -1 worse, None too few cases."""
    return _VERDICT_CODES.get(verdict)


@dataclass(frozen=True)
class PairedComparison:
    """One variant against the baseline on one metric, over the cases both completed.

    ``difference`` is ``value - baseline_value`` (variant minus baseline) whatever
    the metric's direction; ``verdict`` takes the direction into account.
    ``p_adjusted`` is corrected over every test of the family given to
    :func:`compare_family` (the raw ``p_value`` is not). ``mde`` is the smallest true
    difference (absolute, in the metric's unit) this n would detect with 80 %
    power at the family's strictest threshold; it is set when no difference was
    detected.
    """

    variant: str
    baseline: str
    metric: str
    n: int
    value: float | None
    baseline_value: float | None
    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    test: str
    higher_is_better: bool
    only_variant: tuple[str, ...] = ()
    only_baseline: tuple[str, ...] = ()
    p_adjusted: float | None = None
    correction: str = "none"
    verdict: Verdict = "no detectable difference"
    mde: float | None = None
    sd_difference: float | None = None
    binary: bool = False
    confidence: float = 0.95

    @property
    def significant(self) -> bool:
        """True when the corrected verdict is better or worse."""
        return self.verdict in ("better", "worse")

    @property
    def missing(self) -> tuple[str, ...]:
        """Cases completed on one side only (left out of the pairs)."""
        return self.only_variant + self.only_baseline


@dataclass(frozen=True)
class CaseSummary:
    """The repetitions of one case: how many, their mean and sample standard deviation."""

    case: str
    n: int
    mean: float
    sd: float | None


@dataclass(frozen=True)
class WinTieLoss:
    """A comparative judge's verdicts of a variant against the baseline over the cases.

    Scores are in [-1, 1], positive when the variant wins. Each rate has a
    Wilson interval; ``mean_score`` a paired bootstrap interval; ``p_value`` is
    the exact sign test of wins against losses (ties left out).
    """

    variant: str
    baseline: str
    judge: str
    n: int
    wins: int
    ties: int
    losses: int
    win_rate: float
    tie_rate: float
    loss_rate: float
    win_ci: tuple[float, float]
    tie_ci: tuple[float, float]
    loss_ci: tuple[float, float]
    mean_score: float
    score_ci: tuple[float, float]
    p_value: float
    both_orders: bool = False
    scores: dict[str, float] = field(default_factory=dict)
    skipped: int = 0
    """Cases not judged: one side did not complete, or the judge failed or answered outside [-1, 1]."""


# ─── per-case values ───


def case_summaries(values_by_case: Mapping[str, Sequence[float]]) -> dict[str, CaseSummary]:
    """Mean and spread of the repetitions of each case (cases without values are left out)."""
    return {
        case: CaseSummary(
            case, len(values), statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None
        )
        for case, values in values_by_case.items()
        if len(values) > 0
    }


def _case_means(values_by_case: Mapping[str, Sequence[float]]) -> dict[str, float]:
    return {case: statistics.fmean(values) for case, values in values_by_case.items() if len(values) > 0}


def _is_binary(*arrays: np.ndarray) -> bool:
    return all(np.isin(a, (0.0, 1.0)).all() for a in arrays)


# ─── interval, tests, effect size ───


def bootstrap_ci(
    differences: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of the mean of paired ``differences`` (cases resampled with replacement).

    The expanded percentile interval: percentiles of the resampled means at
    tails widened for small n (Hesterberg, 2015).

    Seeded, so the same data gives the same interval. Constant differences give
    the degenerate interval (d, d).

    Raises:
        ConfigError: no differences, a level outside (0, 1) or fewer than
            :data:`BOOTSTRAP_RESAMPLES` resamples.
    """
    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        raise ConfigError("differences", "is empty", "give at least one paired difference")
    if not 0 < confidence < 1:
        raise ConfigError("confidence", f"is {confidence}", "give a level between 0 and 1, e.g. 0.95")
    if resamples < BOOTSTRAP_RESAMPLES:
        raise ConfigError("resamples", f"is {resamples}", f"use at least {BOOTSTRAP_RESAMPLES}")
    if np.ptp(d) == 0:
        return float(d[0]), float(d[0])
    n = d.size
    means = _resampled_means(d, resamples, seed)
    # Expanded percentile interval (Hesterberg 2015): the plain percentile interval is too
    # narrow at small n (it uses z and the biased variance); widening the tails to the
    # t-quantile with an n/(n-1) correction brings coverage close to nominal.
    tail = _expanded_tail(n, confidence)
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def t_interval(differences: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The paired t-test's own interval of the mean difference: it excludes 0 exactly when the test rejects.

    Beside a t-test verdict this interval is shown rather than the bootstrap's:
    on skewed differences (run times) the two disagree, and a reader would see
    an interval excluding 0 beside "no detectable difference". Constant
    differences give the degenerate interval (d, d).
    """
    d = np.asarray(differences, dtype=float)
    if d.size < 2 or np.ptp(d) == 0:
        return float(d.mean()), float(d.mean())
    half = _t_quantile(confidence, d.size - 1) * d.std(ddof=1) / math.sqrt(d.size)
    return float(d.mean() - half), float(d.mean() + half)


@functools.lru_cache(maxsize=256)
def _t_quantile(confidence: float, df: int) -> float:
    """The two-sided ``confidence`` quantile of Student's t: the comparisons of a batch share a few (level, n)."""
    return float(_scipy_stats().t.ppf(1 - (1 - confidence) / 2, df))


_CHUNK = 1_000_000  # weights per block: bounds the memory one block of resamples takes
_CACHED = 2_000_000
"""Weights of problems up to this size are kept for the next comparison: 100 cases at the
20,000 resamples of a 99.9% family interval (:func:`compare_family`) are drawn once per batch, not per comparison."""


@functools.lru_cache(maxsize=4)
def _cached_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1 / n), size=resamples) / n
    weights.setflags(write=False)
    return weights


def _resampled_means(d: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of ``resamples`` bootstrap samples of ``d``: each a row of multinomial case weights.

    Small problems reuse the weights of the same (n, resamples, seed), so every
    comparison of a batch resamples the same cases (and costs one matrix product).
    """
    n = d.size
    if n * resamples <= _CACHED:  # the same stream as the blocks below, drawn in one go
        return _cached_weights(n, resamples, seed) @ d
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // n)
    return np.concatenate(
        [
            rng.multinomial(n, np.full(n, 1 / n), size=min(rows, resamples - start)) / n @ d
            for start in range(0, resamples, rows)
        ]
    )


@functools.lru_cache(maxsize=256)
def _expanded_tail(n: int, confidence: float) -> float:
    tail = (1 - confidence) / 2
    if n < 2:
        return tail
    return float(_scipy_stats().norm.cdf(-math.sqrt(n / (n - 1)) * _scipy_stats().t.ppf(1 - tail, n - 1)))


def _mcnemar(variant: np.ndarray, baseline: np.ndarray) -> float:
    gains = int(((variant == 1) & (baseline == 0)).sum())
    losses = int(((variant == 0) & (baseline == 1)).sum())
    if gains + losses == 0:
        return 1.0
    return float(_scipy_stats().binomtest(gains, gains + losses, 0.5).pvalue)


def _sign_test(d: np.ndarray) -> float:
    """Exact sign test; stands in when every difference is the same (no variance to test with)."""
    positive, nonzero = int((d > 0).sum()), int((d != 0).sum())
    return 1.0 if nonzero == 0 else float(_scipy_stats().binomtest(positive, nonzero, 0.5).pvalue)


def _p_value(variant: np.ndarray, baseline: np.ndarray, test: str) -> tuple[float, str]:
    d = variant - baseline
    if test == "mcnemar":
        return _mcnemar(variant, baseline), "exact McNemar"
    if np.ptp(d) == 0:
        return _sign_test(d), "sign test (constant difference)"
    if test == "wilcoxon":
        return float(_scipy_stats().wilcoxon(d, zero_method="wilcox").pvalue), "Wilcoxon signed-rank"
    return float(_scipy_stats().ttest_rel(variant, baseline).pvalue), "paired t-test"


def minimal_detectable_effect(
    n: int, sd_difference: float, alpha: float = 0.05, power: float = 0.8, binary: bool = False
) -> float | None:
    """The smallest true mean difference a two-sided paired test at ``alpha`` detects with ``power``.

    Normal approximation ``(z(1 - alpha/2) + z(power)) * sd / sqrt(n)`` with the
    observed standard deviation of the paired differences. For 0/1 values it is
    at least ``k / n``, where ``k`` is the fewest discordant pairs (all one way)
    that exact McNemar can call significant. None below two cases.
    """
    if n < 2:
        return None
    normal = statistics.NormalDist()
    z = normal.inv_cdf(1 - alpha / 2) + normal.inv_cdf(power)
    mde = float(z * sd_difference / math.sqrt(n))
    if binary:
        fewest = math.ceil(math.log2(2 / alpha))  # 2 * 0.5**k <= alpha
        mde = max(mde, min(1.0, fewest / n))
    return mde


def compare_paired(
    variant_values: Mapping[str, Sequence[float]],
    baseline_values: Mapping[str, Sequence[float]],
    *,
    variant: str = "variant",
    baseline: str = "baseline",
    metric: str = "metric",
    higher_is_better: bool = True,
    test: PairedTest = "auto",
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> PairedComparison:
    """Compare one variant against the baseline on one metric, case by case (uncorrected).

    Args:
        variant_values, baseline_values: ``{case id: [value per repetition]}`` of
            the executions that completed; a case on one side only is reported
            in ``only_variant``/``only_baseline``, not paired.
        test: ``auto`` (exact McNemar when every paired case value is 0 or 1,
            else the paired t-test), ``mcnemar``, ``t`` or ``wilcoxon``.

    The verdict here uses the raw p-value at ``1 - confidence``; :func:`compare_family`
    corrects it over a family of comparisons.

    Raises:
        ConfigError: an unknown test, McNemar on values that are not 0/1, or a
            bad level or number of resamples.
    """
    if test not in ("auto", "mcnemar", "t", "wilcoxon"):
        raise ConfigError("test", f"is {test!r}", "use 'auto', 'mcnemar', 't' or 'wilcoxon'")
    if not 0 < confidence < 1:
        raise ConfigError("confidence", f"is {confidence}", "give a level between 0 and 1, e.g. 0.95")
    v_means, b_means = _case_means(variant_values), _case_means(baseline_values)
    common = [case for case in b_means if case in v_means]
    only_variant = tuple(sorted(set(v_means) - set(b_means)))
    only_baseline = tuple(sorted(set(b_means) - set(v_means)))
    v = np.array([v_means[c] for c in common], dtype=float)
    b = np.array([b_means[c] for c in common], dtype=float)
    binary = bool(common) and _is_binary(v, b)
    if test == "mcnemar" and common and not binary:
        raise ConfigError(
            "test",
            "is 'mcnemar' but the per-case values are not all 0 or 1",
            "use 't' or 'wilcoxon' (repetitions average a 0/1 metric into a rate per case)",
        )
    base = dict(
        variant=variant,
        baseline=baseline,
        metric=metric,
        n=len(common),
        higher_is_better=higher_is_better,
        only_variant=only_variant,
        only_baseline=only_baseline,
        binary=binary,
        confidence=confidence,
    )
    if not common:  # each side's own mean, so a variant without values still shows against the baseline
        return PairedComparison(
            **base,
            value=statistics.fmean(v_means.values()) if v_means else None,
            baseline_value=statistics.fmean(b_means.values()) if b_means else None,
            difference=None,
            ci_low=None,
            ci_high=None,
            p_value=None,
            test="none (no paired cases)",
            verdict="too few cases",
        )
    d = v - b
    chosen = "mcnemar" if test == "auto" and binary else ("t" if test == "auto" else test)
    low, high = t_interval(d, confidence) if chosen == "t" else bootstrap_ci(d, confidence, resamples, seed)
    sd = float(d.std(ddof=1)) if len(d) > 1 else None
    common_fields = dict(
        value=float(v.mean()),
        baseline_value=float(b.mean()),
        difference=float(d.mean()),
        ci_low=low,
        ci_high=high,
        sd_difference=sd,
    )
    if len(common) < MIN_PAIRED_CASES:
        return PairedComparison(
            **base, **common_fields, p_value=None, test="none (too few cases)", verdict="too few cases"
        )
    p, name = _p_value(v, b, chosen)
    comparison = PairedComparison(**base, **common_fields, p_value=p, test=name)
    return _decide(comparison, p, "none", 1 - confidence, 1)


# ─── the family of a batch ───


def adjust_p_values(p_values: Sequence[float], method: Correction = "holm") -> list[float]:
    """Adjusted p-values controlling the family-wise error (Holm) or the false discovery rate (BH).

    Raises:
        ConfigError: an unknown method.
    """
    if method not in ("holm", "bh", "none"):
        raise ConfigError("correction", f"is {method!r}", "use 'holm' (default), 'bh' (Benjamini-Hochberg) or 'none'")
    p = np.asarray(p_values, dtype=float)
    if p.size == 0 or method == "none":
        return p.tolist()
    if method == "bh":
        return _scipy_stats().false_discovery_control(p, method="bh").tolist()
    # Holm step-down: the i-th smallest p times (m - i), made monotone, capped at 1.
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted.tolist()


def _decide(
    comparison: PairedComparison, p_adjusted: float, correction: str, alpha: float, family: int
) -> PairedComparison:
    d = comparison.difference or 0.0
    if p_adjusted < alpha and d != 0:
        good = d > 0 if comparison.higher_is_better else d < 0
        return replace(
            comparison, p_adjusted=p_adjusted, correction=correction, verdict="better" if good else "worse", mde=None
        )
    sd = comparison.sd_difference or 0.0
    mde = minimal_detectable_effect(comparison.n, sd, alpha / family, binary=comparison.binary)
    return replace(
        comparison, p_adjusted=p_adjusted, correction=correction, verdict="no detectable difference", mde=mde
    )


def compare_family(
    data: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
    baseline: str,
    *,
    higher_is_better: Mapping[str, bool] | None = None,
    correction: Correction = "holm",
    test: PairedTest = "auto",
    alpha: float = 0.05,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> list[PairedComparison]:
    """Every variant against ``baseline`` on every metric, corrected together.

    Args:
        data: ``{metric: {variant: {case id: [value per repetition]}}}``; every
            variant other than ``baseline`` is compared on every metric.
        higher_is_better: direction per metric (default: higher is better).
        correction: ``holm`` (family-wise error, the default), ``bh``
            (Benjamini-Hochberg false discovery rate) or ``none``.
        alpha: the family's error level; intervals are at the level the correction
            implies (:func:`interval_level`), ``confidence`` on each comparison.

    Returns:
        One :class:`PairedComparison` per (variant, metric), metric-major, with
        ``p_adjusted`` and ``verdict`` set. Comparisons with too few cases are
        not tests and do not count in the family.

    Raises:
        ConfigError: ``baseline`` missing from a metric, or a bad option.
    """
    if not 0 < alpha < 1:
        raise ConfigError("alpha", f"is {alpha}", "give a level between 0 and 1, e.g. 0.05")
    adjust_p_values([], correction)  # validates the method before any work
    directions = higher_is_better or {}
    calls: list[functools.partial[PairedComparison]] = []
    for metric, by_variant in data.items():
        if baseline not in by_variant:
            raise ConfigError(
                "baseline", f"{baseline!r} has no values of {metric!r}", f"use one of {sorted(by_variant)}"
            )
        for variant, values in by_variant.items():
            if variant == baseline:
                continue
            calls.append(
                functools.partial(
                    compare_paired,
                    values,
                    by_variant[baseline],
                    variant=variant,
                    baseline=baseline,
                    metric=metric,
                    higher_is_better=directions.get(metric, True),
                    test=test,
                    seed=seed,
                )
            )
    raw = [call(confidence=1 - alpha, resamples=resamples) for call in calls]
    tested = [i for i, c in enumerate(raw) if c.p_value is not None]
    adjusted = adjust_p_values([raw[i].p_value for i in tested], correction)  # type: ignore[misc]
    level = interval_level(alpha, len(tested), sum(p < alpha for p in adjusted), correction)
    out = list(raw)
    for i, p in zip(tested, adjusted, strict=True):
        comparison = raw[i]
        if level != 1 - alpha:  # the family's intervals, at the level its correction implies
            comparison = calls[i](confidence=level, resamples=max(resamples, math.ceil(20 / (1 - level))))
        out[i] = _decide(comparison, p, correction, alpha, len(tested))
    return out


def interval_label(levels: Iterable[float]) -> str:
    """How a table heads the intervals of comparisons at ``levels``: ``"99.8% CI"`` (the widest level)."""
    level = max(levels, default=0.95)
    return f"{level * 100:.1f}".removesuffix(".0") + "% CI"


def interval_level(alpha: float, tests: int, rejected: int, correction: Correction) -> float:
    """The confidence level of the intervals shown beside a family's corrected verdicts.

    An interval at ``1 - alpha`` beside a Holm-corrected verdict can exclude 0
    while the verdict says "no detectable difference". So the intervals take
    the family's correction too: Bonferroni's ``1 - alpha / tests`` with Holm
    (they cover every difference of the family at once with ``1 - alpha``),
    and the false-coverage-rate level ``1 - rejected * alpha / tests`` of
    Benjamini and Yekutieli (2005) with Benjamini-Hochberg.
    """
    if tests <= 1 or correction == "none":
        return 1 - alpha
    if correction == "bh":
        return 1 - max(rejected, 1) * alpha / tests
    return 1 - alpha / tests


# ─── repetitions of 0/1 metrics ───


def _successes(values_by_case: Mapping[str, Sequence[float]], k: int) -> list[tuple[int, int]]:
    if k < 1:
        raise ConfigError("k", f"is {k}", "give k >= 1")
    counts = []
    for case, values in values_by_case.items():
        array = np.asarray(values, dtype=float)
        if not _is_binary(array):
            raise ConfigError(f"values[{case!r}]", "are not all 0 or 1", "pass@k needs a 0/1 metric such as success")
        if len(array) < k:
            raise ConfigError("k", f"is {k} but case {case!r} has {len(array)} repetition(s)", f"use k <= {len(array)}")
        counts.append((len(array), int(array.sum())))
    if not counts:
        raise ConfigError("values", "are empty", "give at least one case")
    return counts


def pass_at_k(values_by_case: Mapping[str, Sequence[float]], k: int) -> float:
    """The chance that at least one of k tries of a case passes, averaged over cases.

    Unbiased estimate from n >= k repetitions with c passes per case:
    ``1 - C(n - c, k) / C(n, k)`` (Chen et al., 2021).

    Raises:
        ConfigError: values that are not 0/1, or a case with fewer than k repetitions.
    """
    counts = _successes(values_by_case, k)
    return float(np.mean([1 - math.comb(n - c, k) / math.comb(n, k) for n, c in counts]))


def pass_hat_k(values_by_case: Mapping[str, Sequence[float]], k: int) -> float:
    """pass^k: the chance that all k tries of a case pass, averaged over cases.

    Unbiased estimate ``C(c, k) / C(n, k)`` (Yao et al., 2024, tau-bench): it
    shows how reliably a variant passes, where pass@k shows whether it can.

    Raises:
        ConfigError: values that are not 0/1, or a case with fewer than k repetitions.
    """
    counts = _successes(values_by_case, k)
    return float(np.mean([math.comb(c, k) / math.comb(n, k) for n, c in counts]))


# ─── comparative (pairwise) judges ───


def win_tie_loss(
    scores: Mapping[str, float | Sequence[float]],
    *,
    variant: str = "variant",
    baseline: str = "baseline",
    judge: str = "judge",
    both_orders: bool = False,
    confidence: float = 0.95,
    tie_margin: float = 0.0,
    seed: int = 0,
    skipped: int = 0,
) -> WinTieLoss:
    """Win, tie and loss rates of a variant against the baseline from a judge's per-case scores.

    Args:
        scores: ``{case id: score in [-1, 1]}`` (positive: the variant wins), or
            a list per case (repetitions, or both presentation orders already
            turned to the variant's side) that is averaged first.
        tie_margin: a case whose score is within this of 0 is a tie.

    Raises:
        ConfigError: no scores, or a score outside [-1, 1].
    """
    if not scores:
        raise ConfigError("scores", "are empty", "judge at least one case")
    per_case: dict[str, float] = {}
    for case, value in scores.items():
        array = np.atleast_1d(np.asarray(value, dtype=float))
        if array.size == 0 or not np.all(np.abs(array) <= 1):
            raise ConfigError(
                f"scores[{case!r}]", f"is {value!r}", "a comparative evaluator returns a float in [-1, 1]"
            )
        per_case[case] = float(array.mean())
    s = np.array(list(per_case.values()))
    n = s.size
    wins, losses = int((s > tie_margin).sum()), int((s < -tie_margin).sum())
    ties = n - wins - losses

    def rate(k: int) -> tuple[float, tuple[float, float]]:
        ci = _scipy_stats().binomtest(k, n).proportion_ci(confidence, method="wilson")
        return k / n, (float(ci.low), float(ci.high))

    (w, wci), (t, tci), (lo, lci) = rate(wins), rate(ties), rate(losses)
    p = 1.0 if wins + losses == 0 else float(_scipy_stats().binomtest(wins, wins + losses, 0.5).pvalue)
    return WinTieLoss(
        variant=variant,
        baseline=baseline,
        judge=judge,
        n=n,
        wins=wins,
        ties=ties,
        losses=losses,
        win_rate=w,
        tie_rate=t,
        loss_rate=lo,
        win_ci=wci,
        tie_ci=tci,
        loss_ci=lci,
        mean_score=float(s.mean()),
        score_ci=bootstrap_ci(s, confidence, seed=seed),
        p_value=p,
        both_orders=both_orders,
        scores=per_case,
        skipped=skipped,
    )
