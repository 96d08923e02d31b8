"""The paired statistics against reference implementations (scipy, statsmodels, enumeration).

Each p-value, interval and correction the comparison tables show is recomputed
here by an implementation the product does not call: statsmodels' McNemar,
t-test and multiple-testing corrections, the Wilcoxon signed-rank null
distribution by enumeration, and the t-interval's coverage by simulation.
Seeded and service-free.
"""

from __future__ import annotations

import gc
import itertools
import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW

from wtb_prefect.analysis.paired import adjust_p_values, compare_paired, t_interval
from wtb_prefect.analysis.stats import mean_ci


def _by_case(values: np.ndarray) -> dict[str, list[float]]:
    return {f"case-{i}": [float(x)] for i, x in enumerate(values)}


# ─── McNemar ───


def _paired_outcomes(gains: int, losses: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """0/1 per case for a variant and its baseline with the given 2x2 table."""
    variant = [1] * gains + [0] * losses + [1] * both + [0] * neither
    baseline = [0] * gains + [1] * losses + [1] * both + [0] * neither
    return np.array(variant, dtype=float), np.array(baseline, dtype=float)


def _exact_two_sided(gains: int, losses: int) -> float:
    """Exact McNemar by hand: twice the smaller binomial tail of the discordant pairs at 1/2."""
    n = gains + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gains, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize(
    "gains,losses,both,neither",
    [(0, 0, 8, 4), (1, 0, 5, 6), (7, 1, 10, 2), (3, 9, 0, 0), (5, 5, 3, 3), (20, 8, 40, 32), (0, 12, 1, 1)],
)
def test_mcnemar_matches_statsmodels_exact_and_the_binomial_sum(gains, losses, both, neither) -> None:
    variant, baseline = _paired_outcomes(gains, losses, both, neither)
    row = compare_paired(_by_case(variant), _by_case(baseline), metric="success")
    assert row.test == "exact McNemar"
    table = [[both, gains], [losses, neither]]  # rows: variant 1/0, columns: baseline 1/0
    reference = mcnemar(table, exact=True).pvalue
    assert row.p_value == pytest.approx(reference, rel=1e-12, abs=1e-15)
    assert row.p_value == pytest.approx(_exact_two_sided(gains, losses), rel=1e-12, abs=1e-15)


def test_mcnemar_on_random_tables_matches_statsmodels() -> None:
    rng = np.random.default_rng(34)
    for _ in range(200):
        gains, losses, both, neither = (int(x) for x in rng.integers(0, 25, 4))
        if gains + losses + both + neither < 10:
            neither += 10
        variant, baseline = _paired_outcomes(gains, losses, both, neither)
        order = rng.permutation(variant.size)  # which case is which must not matter
        row = compare_paired(_by_case(variant[order]), _by_case(baseline[order]), test="mcnemar")
        assert row.p_value == pytest.approx(mcnemar([[both, gains], [losses, neither]], exact=True).pvalue, rel=1e-12)


# ─── Wilcoxon signed-rank ───


def _wilcoxon_by_enumeration(d: np.ndarray) -> float:
    """Two-sided p of the signed-rank statistic over all 2^n sign assignments (zeros dropped, mid-ranks)."""
    d = d[d != 0]
    ranks = stats.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    signs = np.array(list(itertools.product((0.0, 1.0), repeat=d.size)))
    null = signs @ ranks
    centre = ranks.sum() / 2
    tol = 1e-9
    return min(1.0, float(np.mean(np.abs(null - centre) >= abs(observed - centre) - tol)))


def _wilcoxon_normal(d: np.ndarray) -> float:
    """Two-sided p of the normal approximation with the tie correction and no continuity correction."""
    d = d[d != 0]
    n = d.size
    ranks = stats.rankdata(np.abs(d))
    r_plus = ranks[d > 0].sum()
    _, counts = np.unique(np.abs(d), return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - (counts**3 - counts).sum() / 48
    z = (r_plus - n * (n + 1) / 4) / math.sqrt(var)
    return float(2 * stats.norm.sf(abs(z)))


def test_wilcoxon_without_ties_matches_the_exact_null_distribution() -> None:
    rng = np.random.default_rng(7)
    for n in (10, 11, 12):
        for shift in (0.0, 0.4, 1.0):
            base = rng.normal(0, 1, n)
            variant = base + rng.normal(shift, 1, n)
            row = compare_paired(_by_case(variant), _by_case(base), test="wilcoxon")
            assert row.test == "Wilcoxon signed-rank"
            assert row.p_value == pytest.approx(_wilcoxon_by_enumeration(variant - base), rel=1e-9)


def test_wilcoxon_with_ties_and_zeros_on_few_cases_matches_enumeration() -> None:
    # Scores on a coarse scale: tied differences and zero differences, as judges' 1-5 scores give.
    rng = np.random.default_rng(8)
    checked = 0
    for _ in range(4):
        base = rng.integers(1, 6, 11).astype(float)
        variant = np.clip(base + rng.integers(-1, 3, 11), 1, 5).astype(float)
        d = variant - base
        if np.ptp(d) == 0 or (d != 0).sum() < 2:
            continue
        row = compare_paired(_by_case(variant), _by_case(base), test="wilcoxon")
        assert row.p_value == pytest.approx(_wilcoxon_by_enumeration(d), rel=1e-9)
        checked += len(np.unique(np.abs(d[d != 0]))) < (d != 0).sum() and (d == 0).any()
    assert checked >= 2  # the cases did have ties and zeros


def test_wilcoxon_with_ties_on_many_cases_matches_the_tie_corrected_normal_approximation() -> None:
    rng = np.random.default_rng(9)
    for n in (20, 40, 80):
        base = rng.integers(0, 10, n).astype(float)
        variant = base + rng.integers(-2, 4, n).astype(float)
        row = compare_paired(_by_case(variant), _by_case(base), test="wilcoxon")
        assert row.p_value == pytest.approx(_wilcoxon_normal(variant - base), rel=1e-9)


# ─── paired t-test and its interval ───


def test_paired_t_test_and_interval_match_statsmodels() -> None:
    rng = np.random.default_rng(10)
    for n in (10, 17, 60):
        base = rng.normal(5, 2, n)
        variant = base + rng.normal(0.3, 1, n)
        row = compare_paired(_by_case(variant), _by_case(base), confidence=0.9)
        described = DescrStatsW(variant - base)
        assert row.test == "paired t-test"
        assert row.p_value == pytest.approx(described.ttest_mean(0)[1], rel=1e-9)
        assert (row.ci_low, row.ci_high) == pytest.approx(described.tconfint_mean(alpha=0.1), rel=1e-9)
        ci = mean_ci(list(variant), confidence=0.9)
        assert (ci.low, ci.high) == pytest.approx(DescrStatsW(variant).tconfint_mean(alpha=0.1), rel=1e-9)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_t_interval_covers_the_true_mean_at_its_level(confidence: float) -> None:
    # Normal differences make the t-interval exact: its coverage over many simulated
    # samples must be the nominal level up to the simulation's own error (4 sd).
    rng = np.random.default_rng(int(confidence * 100))
    sims, n, true_mean = 4000, 8, 0.7
    samples = rng.normal(true_mean, 1.5, (sims, n))
    covered = 0
    for d in samples:
        low, high = t_interval(d, confidence)
        covered += low <= true_mean <= high
    rate = covered / sims
    print(f"\nt-interval at {confidence}: coverage {rate:.4f} over {sims} samples of n = {n}")
    assert abs(rate - confidence) <= 4 * math.sqrt(confidence * (1 - confidence) / sims)


# ─── corrections for many comparisons ───


def _random_p_vectors(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    vectors = []
    for i in range(count):
        m = int(rng.integers(1, 40))
        kind = i % 4
        if kind == 0:  # null: uniform
            p = rng.random(m)
        elif kind == 1:  # a few real effects among nulls
            p = np.where(rng.random(m) < 0.3, rng.random(m) * 1e-3, rng.random(m))
        elif kind == 2:  # ties, as exact tests on few cases give
            p = np.round(rng.random(m), 1)
        else:  # ones and near-zeros
            p = rng.choice([1.0, 0.5, 1e-8, 0.049, 0.051], m)
        vectors.append(p)
    return vectors


@pytest.mark.parametrize("ours,theirs", [("holm", "holm"), ("bh", "fdr_bh")])
def test_corrections_match_statsmodels_on_random_vectors(ours: str, theirs: str, monkeypatch) -> None:
    # statsmodels' Holm runs a full garbage collection per call (a second per ten calls
    # here); the reference values do not depend on it.
    monkeypatch.setattr(gc, "collect", lambda generation=2: 0)
    rng = np.random.default_rng(2025)
    for p in _random_p_vectors(rng, 500):
        reference = multipletests(p, alpha=0.05, method=theirs)[1]
        assert adjust_p_values(list(p), ours) == pytest.approx(list(reference), rel=1e-12, abs=1e-15)  # type: ignore[arg-type]
