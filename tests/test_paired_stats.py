"""The paired statistics of variant comparisons, on simulated batches (seeded, no services).

Each simulation prints its rates (run pytest with ``-s`` to see them).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from wtb_prefect.analysis.forest import forest_plot
from wtb_prefect.analysis.paired import (
    MIN_PAIRED_CASES,
    adjust_p_values,
    bootstrap_ci,
    case_summaries,
    compare_family,
    compare_paired,
    interval_label,
    interval_level,
    pass_at_k,
    pass_hat_k,
    verdict_code,
    win_tie_loss,
)
from wtb_prefect.errors import ConfigError


def _by_case(values: np.ndarray) -> dict[str, list[float]]:
    return {f"case-{i}": [float(x)] for i, x in enumerate(values)}


def _null_batch(rng: np.random.Generator, variants: int = 5, cases: int = 50) -> dict:
    """Baseline and variants identical in distribution, sharing strong case effects."""
    difficulty = rng.normal(0, 2, cases)
    quality = rng.normal(0.6, 0.2, cases)
    slowness = rng.normal(0, 0.5, cases)
    data: dict[str, dict] = {"success": {}, "score": {}, "latency_s": {}}
    for name in ["base", *(f"v{i}" for i in range(variants))]:
        data["success"][name] = _by_case((difficulty + rng.normal(0, 1, cases) > 0).astype(float))
        data["score"][name] = _by_case(quality + rng.normal(0, 0.1, cases))
        data["latency_s"][name] = _by_case(np.exp(slowness + rng.normal(0, 0.3, cases)))
    return data


def _null_batches(rng: np.random.Generator, batches: int, variants: int = 5, cases: int = 50) -> dict:
    """``batches`` null batches at once, as ``{metric: array (batch, arm, case)}``; arm 0 is the baseline.

    The same model as :func:`_null_batch`: every arm shares the batch's case effects.
    """
    shape = (batches, variants + 1, cases)
    difficulty = rng.normal(0, 2, (batches, 1, cases))
    quality = rng.normal(0.6, 0.2, (batches, 1, cases))
    slowness = rng.normal(0, 0.5, (batches, 1, cases))
    return {
        "success": (difficulty + rng.normal(0, 1, shape) > 0).astype(float),
        "score": quality + rng.normal(0, 0.1, shape),
        "latency_s": np.exp(slowness + rng.normal(0, 0.3, shape)),
    }


def _exact_mcnemar(variant: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Two-sided exact McNemar p-values over the last axis: twice the binomial tail of the rarer discordant kind."""
    gains = ((variant == 1) & (baseline == 0)).sum(axis=-1)
    losses = ((variant == 0) & (baseline == 1)).sum(axis=-1)
    return np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(gains, losses), gains + losses, 0.5))


def _family_p_values(batches: dict) -> np.ndarray:
    """Raw p-values (batch, comparison) in :func:`compare_family`'s order: metric-major, variants in order."""
    success, score, latency = batches["success"], batches["score"], batches["latency_s"]
    return np.concatenate(
        [
            _exact_mcnemar(success[:, 1:], success[:, :1]),
            stats.ttest_rel(score[:, 1:], score[:, :1], axis=-1).pvalue,
            stats.ttest_rel(latency[:, 1:], latency[:, :1], axis=-1).pvalue,
        ],
        axis=1,
    )


def _as_family(batches: dict, i: int) -> dict:
    """Batch ``i`` of :func:`_null_batches` as :func:`compare_family` takes it."""
    return {
        metric: {("base" if arm == 0 else f"v{arm - 1}"): _by_case(values[i, arm]) for arm in range(values.shape[1])}
        for metric, values in batches.items()
    }


def test_null_family_wise_error_with_holm_stays_at_the_level() -> None:
    """Holm keeps the family-wise false-positive rate of 15 null comparisons at 0.05; uncorrected it is far above.

    The rates come from 2,000 simulated batches whose p-values are computed
    at once with the tests :func:`compare_family` picks (exact McNemar on the
    0/1 metric, the paired t-test on the others) and corrected by its Holm
    procedure; :func:`compare_family` itself is run on a sample of those
    batches, every batch where the corrected family rejects among them, and
    must give the same p-values and verdicts. With 2,000 batches the
    estimate's standard error at a true rate of 0.05 is 0.005, so the 0.06
    bound is two standard errors above the level the correction promises.
    """
    rng = np.random.default_rng(2024)
    batches = 2000
    data = _null_batches(rng, batches)
    raw = _family_p_values(data)
    adjusted = np.array([adjust_p_values(p, "holm") for p in raw])
    rejected = (adjusted < 0.05).any(axis=1)
    fwer, uncorrected = rejected.mean(), (raw < 0.05).any(axis=1).mean()
    print(
        f"\nnull, 5 variants x 3 metrics x 50 cases, {batches} batches: "
        f"family-wise false-positive rate Holm {fwer:.3f}, uncorrected {uncorrected:.3f}"
    )
    assert fwer <= 0.06
    assert uncorrected > 0.2  # the 15 uncorrected tests do produce false positives: the correction matters

    sample = [*range(8), *np.flatnonzero(rejected)[:4]]
    assert rejected[sample].any(), "the sample holds batches where the corrected family rejects"
    for i in sample:
        rows = compare_family(_as_family(data, i), "base", higher_is_better={"latency_s": False})
        assert len(rows) == 15 and {r.test for r in rows} == {"exact McNemar", "paired t-test"}
        assert [r.p_value for r in rows] == pytest.approx(raw[i], rel=1e-9)
        assert [r.p_adjusted for r in rows] == pytest.approx(adjusted[i], rel=1e-9)
        assert [r.verdict in ("better", "worse") for r in rows] == list(adjusted[i] < 0.05)


def test_paired_test_detects_a_small_effect_that_welch_misses() -> None:
    """On a 0/1 metric with strong case effects, exact McNemar finds +0.08 at n = 100 in 80% of runs; Welch does not.

    The 2,000 simulations are drawn and tested at once (exact McNemar and
    Welch over arrays); :func:`compare_paired` is run on a sample of them, both
    verdicts among it, and must give the same p-value and verdict.
    """
    # Strong case heterogeneity: a case is solved or not by its difficulty; the variant
    # solves every case the baseline solves and on average 8 in 100 more (+0.08).
    rng = np.random.default_rng(11)
    sims, n = 2000, 100
    difficulty = rng.random((sims, n))  # the same stream as one draw of n per simulation
    baseline, variant = (difficulty < 0.5).astype(float), (difficulty < 0.58).astype(float)
    effects = variant.mean(axis=1) - baseline.mean(axis=1)
    p_paired = _exact_mcnemar(variant, baseline)
    detected = (p_paired < 0.05) & (effects > 0)
    with np.errstate(invalid="ignore", divide="ignore"):  # a simulation whose arms are both constant has no Welch p
        welch = stats.ttest_ind(variant, baseline, axis=1, equal_var=False).pvalue < 0.05
    print(
        f"\npower at +{effects.mean():.3f} on a 0/1 metric, n = {n}, {sims} simulations: "
        f"paired (exact McNemar) {detected.mean():.3f}, Welch {welch.mean():.3f}"
    )
    assert detected.mean() >= 0.8
    assert welch.mean() <= 0.5

    sample = [*range(6), *np.flatnonzero(~detected)[:4]]
    assert detected[sample].any() and not detected[sample].all()
    for i in sample:
        row = compare_paired(_by_case(variant[i]), _by_case(baseline[i]), metric="success")
        assert row.test == "exact McNemar"
        assert row.p_value == pytest.approx(p_paired[i], rel=1e-9)
        assert (row.verdict == "better") == detected[i]


def test_bootstrap_interval_covers_the_true_difference_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(5)
    sims, n, true_difference, covered = 1000, 50, 0.1, 0
    for _ in range(sims):
        case = rng.normal(0, 1, n)
        baseline = case + rng.normal(0, 0.3, n)
        variant = case + true_difference + rng.exponential(0.3, n) - 0.3  # skewed noise
        low, high = bootstrap_ci(variant - baseline, 0.95)  # the default seed, as users get it
        covered += low <= true_difference <= high
    print(f"\ncoverage of the 95% paired bootstrap interval, n = {n}, {sims} simulations: {covered / sims:.3f}")
    assert 0.93 <= covered / sims <= 0.97


def test_two_cases_with_a_constant_difference_are_too_few_for_a_verdict() -> None:
    row = compare_paired({"a": [1.0], "b": [1.0]}, {"a": [0.0], "b": [0.0]}, metric="accuracy")
    assert row.verdict == "too few cases" and row.p_value is None and row.n == 2
    assert row.difference == 1.0
    rows = compare_family({"accuracy": {"base": {"a": [0.0], "b": [0.0]}, "new": {"a": [1.0], "b": [1.0]}}}, "base")
    assert rows[0].verdict == "too few cases" and rows[0].p_adjusted is None and verdict_code(rows[0].verdict) is None


def test_a_constant_difference_over_enough_cases_is_judged_by_its_signs() -> None:
    cases = {f"c{i}": [float(i)] for i in range(MIN_PAIRED_CASES)}
    shifted = {c: [v[0] + 0.5] for c, v in cases.items()}
    row = compare_paired(shifted, cases)
    assert row.test.startswith("sign test") and row.p_value == pytest.approx(2 * 0.5**MIN_PAIRED_CASES)
    assert row.verdict == "better"


def test_direction_of_the_metric_decides_better_or_worse() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(1.0, 0.2, 40)
    slower = base + 0.3 + rng.normal(0, 0.05, 40)
    data = {
        "latency_s": {"base": _by_case(base), "slow": _by_case(slower)},
        "accuracy": {"base": _by_case(base), "slow": _by_case(slower)},
    }
    rows = {r.metric: r for r in compare_family(data, "base", higher_is_better={"latency_s": False})}
    assert rows["latency_s"].verdict == "worse" and rows["accuracy"].verdict == "better"
    assert rows["latency_s"].difference == pytest.approx(rows["accuracy"].difference)
    assert rows["latency_s"].ci_low > 0 and rows["latency_s"].mde is None


def test_no_detectable_difference_reports_the_minimal_detectable_effect() -> None:
    rng = np.random.default_rng(2)
    case = rng.normal(0, 1, 30)
    row = compare_paired(_by_case(case + rng.normal(0, 0.2, 30)), _by_case(case + rng.normal(0, 0.2, 30)))
    assert row.verdict == "no detectable difference"
    sd = row.sd_difference
    assert row.mde == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * sd / np.sqrt(30))


def test_only_cases_both_completed_are_paired_and_the_rest_are_reported() -> None:
    base = {f"c{i}": [1.0] for i in range(12)}
    variant = {f"c{i}": [1.0] for i in range(2, 14)}
    row = compare_paired(variant, base)
    assert row.n == 10 and row.only_baseline == ("c0", "c1") and row.only_variant == ("c12", "c13")


def test_repetitions_are_averaged_per_case_first() -> None:
    summaries = case_summaries({"a": [1.0, 0.0, 1.0], "b": [0.0]})
    assert summaries["a"].mean == pytest.approx(2 / 3) and summaries["a"].sd is not None and summaries["b"].sd is None
    base = {f"c{i}": [0.0, 1.0] for i in range(12)}
    variant = {f"c{i}": [1.0, 1.0] for i in range(12)}
    row = compare_paired(variant, base)
    assert row.n == 12 and row.test == "sign test (constant difference)" and row.difference == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="mcnemar"):
        compare_paired(variant, base, test="mcnemar")


def test_wilcoxon_is_selectable() -> None:
    rng = np.random.default_rng(4)
    base = rng.normal(0, 1, 20)
    row = compare_paired(_by_case(base + rng.normal(0.5, 0.3, 20)), _by_case(base), test="wilcoxon")
    assert row.test == "Wilcoxon signed-rank" and row.verdict == "better"


def test_holm_and_benjamini_hochberg_adjustments() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjust_p_values(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adjust_p_values(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust_p_values(p, "none") == p
    with pytest.raises(ConfigError, match="correction"):
        adjust_p_values(p, "bonferroni")  # type: ignore[arg-type]


def test_bootstrap_is_seeded_and_degenerate_for_a_constant_difference() -> None:
    d = np.random.default_rng(0).normal(size=30)
    assert bootstrap_ci(d, seed=3) == bootstrap_ci(d, seed=3)
    assert bootstrap_ci([0.2] * 5) == (0.2, 0.2)
    with pytest.raises(ConfigError, match="resamples"):
        bootstrap_ci(d, resamples=100)


def test_pass_at_k_and_pass_hat_k() -> None:
    runs = {"a": [1, 0, 0], "b": [1, 1, 1], "c": [0, 0, 0]}
    assert pass_at_k(runs, 1) == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert pass_at_k(runs, 2) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert pass_hat_k(runs, 2) == pytest.approx((0 + 1 + 0) / 3)
    with pytest.raises(ConfigError, match="k"):
        pass_at_k(runs, 4)
    with pytest.raises(ConfigError, match="0 or 1"):
        pass_hat_k({"a": [0.5]}, 1)


def test_win_tie_loss_rates_with_intervals() -> None:
    scores = {f"c{i}": s for i, s in enumerate([1.0] * 12 + [0.0] * 5 + [-1.0] * 3)}
    wtl = win_tie_loss(scores, variant="v", judge="judge")
    assert (wtl.wins, wtl.ties, wtl.losses) == (12, 5, 3)
    assert wtl.win_rate == pytest.approx(0.6) and wtl.win_ci[0] < 0.6 < wtl.win_ci[1]
    assert wtl.p_value == pytest.approx(stats.binomtest(12, 15).pvalue)
    both = win_tie_loss({"a": [1.0, -1.0], "b": [0.5, 0.5]})  # two orders, already on the variant's side
    assert (both.wins, both.ties) == (1, 1)
    with pytest.raises(ConfigError, match="-1, 1"):
        win_tie_loss({"a": 2.0})


def test_forest_plot_writes_a_png(tmp_path) -> None:
    rng = np.random.default_rng(9)
    rows = compare_family(_null_batch(rng, variants=3, cases=20), "base", higher_is_better={"latency_s": False})
    path = forest_plot(rows, tmp_path / "plots" / "forest.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_interval_levels_follow_the_correction() -> None:
    assert interval_level(0.05, 10, 0, "holm") == pytest.approx(0.995)  # Bonferroni: simultaneous coverage
    assert interval_level(0.05, 10, 2, "bh") == pytest.approx(0.99)  # Benjamini-Yekutieli: R * alpha / m
    assert interval_level(0.05, 10, 0, "bh") == pytest.approx(0.995)
    assert interval_level(0.05, 10, 3, "none") == interval_level(0.05, 1, 0, "holm") == pytest.approx(0.95)
    assert interval_label([0.95, 0.995]) == "99.5% CI" and interval_label([0.95]) == "95% CI"


def _standardized(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    z = rng.normal(0, 1, n)
    return mean + (z - z.mean()) / z.std(ddof=1)  # exactly this mean, sd 1


def test_an_interval_never_excludes_zero_beside_a_corrected_no_difference() -> None:
    # one real-looking effect (p ~ 0.02 alone) among ten tests: Holm says no detectable difference,
    # and its interval, at the family's level, must not claim otherwise by excluding 0
    rng = np.random.default_rng(7)
    zeros = _by_case(np.zeros(30))
    data = {"m0": {"base": zeros, "v": _by_case(_standardized(rng, 30, 0.45))}}
    for k in range(1, 10):
        data[f"m{k}"] = {"base": zeros, "v": _by_case(_standardized(rng, 30, 0.0))}
    first = compare_family(data, "base")[0]
    alone = compare_paired(data["m0"]["v"], zeros, confidence=0.95)
    assert alone.p_value < 0.05 and alone.ci_low > 0  # uncorrected, the 95% interval excludes 0
    assert first.p_adjusted >= 0.05 and first.verdict == "no detectable difference"
    assert first.confidence == pytest.approx(0.995) and first.ci_low < 0 < first.ci_high
    assert first.ci_high - first.ci_low > alone.ci_high - alone.ci_low


def test_beside_a_t_test_an_interval_excludes_zero_only_with_a_verdict() -> None:
    # skewed paired differences (run times: mostly a little slower, now and then much slower)
    rng = np.random.default_rng(11)
    excluding, with_verdict = 0, 0
    for _ in range(60):
        data = {}
        for k in range(4):
            base = rng.lognormal(0, 0.5, 40)
            extra = rng.lognormal(-4, 1.6, 40) * rng.choice([-1.0, 1.0, 1.0], 40)
            data[f"run_s_{k}"] = {"base": _by_case(base), "v": _by_case(base + extra)}
        for c in compare_family(data, "base", higher_is_better={m: False for m in data}):
            assert c.test == "paired t-test"
            excludes = c.ci_low > 0 or c.ci_high < 0
            excluding += excludes
            with_verdict += c.verdict in ("better", "worse")
            if excludes:  # simultaneous (Bonferroni) interval: Holm rejects whenever it excludes 0
                assert c.verdict in ("better", "worse"), c
    assert excluding > 0 and with_verdict >= excluding  # not vacuous
