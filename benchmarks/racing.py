"""Racing and sequential repetitions, replayed over synthetic recorded matrices (no services).

Model of the recorded matrices (case heterogeneity is strong, as on real suites
where most cases are solved or failed by every variant):

* each case ``c`` has a difficulty ``d_c ~ N(0, 1)``;
* variant ``v`` has a skill ``s_v`` and solves case ``c`` with probability
  ``p_vc = sigmoid(K * (s_v - d_c))``, ``K = 6``, drawn independently for each
  (variant, case) (the Bernoulli draw is the independent noise);
* the skills are solved for so that the expected success rates are
  0.70 for the best and 5, 10, 10, 15, 20, 25 and 30 points less for the others;
* the continuous metric is a score ``clip(p_vc + N(0, 0.1), 0, 1)`` with the
  same skills (a graded evaluator), raced with betting tests on [0, 1];
* the unbounded metric is a run time ``exp(0.8 * d_c + 0.3 * N(0, 1)) * (1 + r_v)``
  (lower is better, hard cases slow for every variant), ``r_v`` 0 for the best
  and 5 ... 30 % slower for the others, raced with the asymptotic sequence.

Each figure comes from 500 seeded replays, each a new case order, against the
full matrix's decision computed in the same process:

(a) 8 variants x 400 cases: how often the race names the full matrix's best
    (within epsilon = 0.02), and its node calls as a share of the full matrix's;
(b) A/A, 8 identical variants, alpha = 0.05: how often some variant is claimed
    better or worse than another; beside it the same figure for the paired
    fixed-sample tests (exact McNemar, Holm over the 7 comparisons with the
    baseline, from ``analysis/paired.py``) read after every round;
(c) sequential repetitions: cells with pass rates drawn from [0.5, 1.0] against
    a threshold of 0.8, at most 10 repetitions: agreement with the full 10
    repetitions among decided cells, the share of repetitions used, and how often
    a cell with a true rate of 0.75 is passed.

    .venv/bin/python benchmarks/racing.py
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import binom

from wtb_prefect.analysis.paired import adjust_p_values, compare_family
from wtb_prefect.analysis.racing import Race, RacePolicy
from wtb_prefect.analysis.replay import replay_race, replay_repetitions
from wtb_prefect.analysis.sequential import SequentialPassRate, repetitions_needed

K = 6.0
GAPS = np.array([0, 5, 10, 10, 15, 20, 25, 30]) / 100
BEST = 0.70
CASES = 400
REPLAYS = 500
ALPHA = 0.05
EPSILON = 0.02


def skills(rng: np.random.Generator) -> np.ndarray:
    """Skills whose expected success rates are ``BEST - GAPS`` under the difficulty model."""
    d = rng.normal(size=200_000)
    return np.array([brentq(lambda s, g=g: expit(K * (s - d)).mean() - (BEST - g), -8, 8) for g in GAPS])


def matrices(seed: int) -> dict[str, np.ndarray]:
    """The recorded full matrices (variants x cases) of the 0/1, score and run-time metrics."""
    rng = np.random.default_rng(seed)
    s = skills(rng)
    d = rng.normal(size=CASES)
    p = expit(K * (s[:, None] - d[None, :]))
    success = (rng.random(p.shape) < p).astype(float)
    score = np.clip(p + rng.normal(0, 0.1, p.shape), 0, 1)
    slowdown = 1 + np.array([0, 5, 10, 10, 15, 20, 25, 30]) / 100
    run_s = np.exp(0.8 * d[None, :] + 0.3 * rng.normal(size=p.shape)) * slowdown[:, None]
    return {"success": success, "score": score, "run_s": run_s}


def print_race(name: str, matrix: np.ndarray, policy: RacePolicy) -> dict[str, float]:
    started = time.perf_counter()
    report = replay_race(matrix, policy, replays=REPLAYS, seed=1)
    took = time.perf_counter() - started
    dist = report.call_distribution()
    print(
        f"{name}: full matrix best v{report.full_best} (means {np.round(report.full_means, 3).tolist()})\n"
        f"  same best within {policy.epsilon:g}: {report.agreement:.3f} of {REPLAYS} replays "
        f"(target >= 0.95); decided before the cases ran out: {report.decided:.3f}\n"
        f"  node calls / full matrix's: median {report.median_call_fraction:.3f} (target <= 0.40); "
        + ", ".join(f"{k} {v:.3f}" for k, v in dist.items())
        + "\n  cases run per variant (median): "
        + ", ".join(f"{v} {q['median']:.0f}" for v, q in report.dropped_after().items())
        + f"\n  {REPLAYS} replays in {took:.2f} s"
    )
    return {"agreement": report.agreement, "calls": report.median_call_fraction}


def _mcnemar_holm_any(x: np.ndarray, t: int) -> np.ndarray:
    """Per replay: does exact McNemar with Holm over variant-vs-baseline call anything at ``t`` cases?

    Vectorised form of :func:`wtb_prefect.analysis.paired.compare_family` on 0/1 values
    (two-sided exact binomial test of the discordant pairs, Holm step-down).
    """
    base = x[:, :1, :t]
    gains = ((x[:, 1:, :t] == 1) & (base == 0)).sum(axis=2)
    losses = ((x[:, 1:, :t] == 0) & (base == 1)).sum(axis=2)
    n = gains + losses
    p = np.minimum(1.0, 2 * binom.cdf(np.minimum(gains, losses), n, 0.5))
    p = np.where(n == 0, 1.0, p)
    m = p.shape[1]
    ordered = np.sort(p, axis=1)
    stepped = np.minimum(1.0, np.maximum.accumulate(ordered * (m - np.arange(m)), axis=1))
    return (stepped < ALPHA).any(axis=1)


def aa(seed: int) -> dict[str, float]:
    """A/A: 8 identical variants; fresh matrices per replay so every replay is a true null."""
    rng = np.random.default_rng(seed)
    s = skills(rng)[0]
    d = rng.normal(size=(REPLAYS, 1, CASES))
    x = (rng.random((REPLAYS, 8, CASES)) < expit(K * (s - d))).astype(float)
    out = {}
    for goal in ("best", "baseline"):
        race = Race([f"v{i}" for i in range(8)], RacePolicy(goal=goal, alpha=ALPHA, epsilon=EPSILON), REPLAYS)
        for t in range(CASES):
            race.observe(x[:, :, t])
            race.decide()
        out[goal] = float(race.claims().mean())
    peeking = np.zeros(REPLAYS, dtype=bool)
    for t in range(10, CASES + 1):  # paired.MIN_PAIRED_CASES: no verdict before 10 cases
        peeking |= _mcnemar_holm_any(x, t)
    final = _mcnemar_holm_any(x, CASES)
    _check_against_paired(x[0], final[0])
    print(
        f"A/A, 8 identical variants x {CASES} cases, alpha {ALPHA}, {REPLAYS} replays: "
        f"some variant claimed better or worse in {out['best']:.3f} (race, goal best), "
        f"{out['baseline']:.3f} (race, goal baseline) (target <= 0.05); "
        f"fixed-sample McNemar + Holm read after every round: {peeking.mean():.3f}, read once at the end: "
        f"{final.mean():.3f}"
    )
    return {"race_best": out["best"], "race_baseline": out["baseline"], "peeking": float(peeking.mean())}


def _check_against_paired(x: np.ndarray, vectorised: bool) -> None:
    """The vectorised readout gives compare_family()'s verdict on the same data."""
    data = {"success": {f"v{i}": {f"c{c}": [x[i, c]] for c in range(x.shape[1])} for i in range(x.shape[0])}}
    rows = compare_family(data, "v0", alpha=ALPHA)
    assert any(r.verdict in ("better", "worse") for r in rows) == vectorised
    assert adjust_p_values([0.01, 0.04], "holm") == [0.02, 0.04]


def repetitions(seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    reps, threshold, margin = 10, 0.8, 0.05
    rates = rng.uniform(0.5, 1.0, 2000)
    outcomes = (rng.random((rates.size, reps)) < rates[:, None]).astype(float)
    replay = replay_repetitions(outcomes, threshold, alpha=ALPHA, margin=margin, replays=REPLAYS, seed=2)
    verdicts = replay.verdicts
    fresh = SequentialPassRate((REPLAYS, 200), threshold, reps, ALPHA, margin)
    for _ in range(reps):
        fresh.update((rng.random((REPLAYS, 200)) < 0.75).astype(float))
    passed_075 = float((fresh.verdicts() == "pass").mean())
    print(
        f"sequential repetitions, 2000 cells with rates in [0.5, 1.0], threshold {threshold}, margin {margin}, "
        f"at most {reps} repetitions, {REPLAYS} replays:\n"
        f"  verdicts agree with the full {reps} repetitions in {replay.agreement:.4f} of decided cells "
        f"(target >= 0.98); decided {replay.decided:.3f} (pass {np.mean(verdicts == 'pass'):.3f}, "
        f"fail {np.mean(verdicts == 'fail'):.3f}, flaky {np.mean(verdicts == 'flaky'):.3f}); "
        f"repetitions used / full: {replay.repetition_fraction:.3f} (target <= 0.40)\n"
        f"  true-0.75 cells passed: {passed_075:.4f} (target <= 0.05)\n"
        f"  a pass needs at least {repetitions_needed(threshold, ALPHA, margin)} repetitions at alpha {ALPHA} "
        f"whatever the test (0.75 ** 10 = {0.75**10:.4f} > alpha: ten passes in a row are too weak evidence)"
    )
    wide = replay_repetitions(
        (rng.random((2000, 30)) < rates[:, None]).astype(float),
        threshold,
        alpha=ALPHA,
        margin=margin,
        replays=100,
        seed=3,
    )
    print(
        f"  the same cells with at most 30 repetitions: agreement {wide.agreement:.4f} of decided cells, "
        f"decided {wide.decided:.3f}, repetitions used / full {wide.repetition_fraction:.3f}"
    )
    return {"agreement": replay.agreement, "fraction": replay.repetition_fraction, "passed_075": passed_075}


def main() -> int:
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    data = matrices(seed)
    print_race("0/1 success, 8 variants x 400 cases", data["success"], RacePolicy(alpha=ALPHA, epsilon=EPSILON))
    print_race("score in [0, 1], 8 variants x 400 cases", data["score"], RacePolicy(alpha=ALPHA, epsilon=EPSILON))
    print_race(
        "run time (unbounded, lower is better), epsilon 2% of the mean",
        data["run_s"],
        RacePolicy(alpha=ALPHA, epsilon=0.02 * float(data["run_s"].mean()), bounds=None, higher_is_better=False),
    )
    aa(seed)
    repetitions(seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
