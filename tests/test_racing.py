"""Anytime-valid statistics, the racing policy and its replay testbed, on simulated data (no services).

Each simulation prints its rates (run pytest with ``-s`` to see them).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from wtb_prefect.analysis.racing import Race, RacePolicy
from wtb_prefect.analysis.replay import matrix_from_results, replay_race, replay_repetitions
from wtb_prefect.analysis.sequential import (
    AsymptoticTest,
    BettingTest,
    SequentialPassRate,
    asymptotic_cs,
    betting_cs,
    e_bh,
    repetitions_needed,
)
from wtb_prefect.config import RaceConfig
from wtb_prefect.errors import ConfigError
from wtb_prefect.results import ExecutionResult


def _heterogeneous(rng: np.random.Generator, skills: list[float], cases: int, replays: int | None = None) -> np.ndarray:
    """0/1 outcomes: case difficulty d ~ N(0, 1), variant solves with probability sigmoid(6 (skill - d))."""
    shape = (cases,) if replays is None else (replays, 1, cases)
    d = rng.normal(size=shape)
    s = np.asarray(skills)[:, None] if replays is None else np.asarray(skills)[None, :, None]
    p = expit(6 * (s - d))
    return (rng.random(p.shape) < p).astype(float)


# ─── confidence sequences ───


@pytest.mark.parametrize("kind", ["bernoulli", "beta"])
def test_betting_sequence_covers_the_mean_at_every_time(kind: str) -> None:
    rng = np.random.default_rng(7)
    runs, steps, alpha = 400, 200, 0.1
    if kind == "bernoulli":
        x, mean = rng.binomial(1, 0.3, (runs, steps)).astype(float), 0.3
    else:
        x, mean = rng.beta(2, 5, (runs, steps)), 2 / 7
    lower, upper = betting_cs(x, 0, 1, alpha, resolution=101)
    ever_missed = ((lower > mean) | (upper < mean)).any(axis=1).mean()
    width = float(np.mean(upper[:, -1] - lower[:, -1]))
    print(f"\nbetting CS ({kind}), {runs} runs x {steps}: excluded the mean at some time in {ever_missed:.3f}")
    assert ever_missed <= alpha
    assert width < 0.3  # it narrows: a sequence that never excludes anything would pass the line above
    assert np.all(np.diff(upper, axis=1) <= 1e-12) and np.all(np.diff(lower, axis=1) >= -1e-12)


def test_betting_tests_hold_their_level_under_a_one_sided_null_read_after_every_value() -> None:
    rng = np.random.default_rng(11)
    # differences of a 0/1 metric with mean exactly 0: mostly 0, sometimes -1 or +1
    d = rng.choice([-1.0, 0.0, 1.0], p=[0.1, 0.8, 0.1], size=(2000, 300))
    test = BettingTest((2000,), [0.0], -1, 1, alpha=0.05)
    for t in range(300):
        test.update(d[:, t])
    false_below, false_above = test.below[:, 0].mean(), test.above[:, 0].mean()
    print(f"\nnull mean 0, 2000 streams x 300 looks: shown below {false_below:.4f}, above {false_above:.4f}")
    assert false_below <= 0.05 and false_above <= 0.05
    shifted = BettingTest((2000,), [0.0], -1, 1, alpha=0.05)
    for t in range(300):
        shifted.update(np.where(d[:, t] > 0, 0.0, d[:, t]))  # mean -0.1
    assert shifted.below[:, 0].mean() > 0.9  # the tests have power, not just a level


def test_asymptotic_sequence_covers_a_skewed_mean_at_every_time() -> None:
    rng = np.random.default_rng(3)
    x = rng.lognormal(0, 0.5, (1000, 300))
    mean = float(np.exp(0.5**2 / 2))
    lower, upper = asymptotic_cs(x, 0.05)
    missed = ((lower > mean) | (upper < mean)).any(axis=1).mean()
    print(f"\nasymptotic CS, lognormal, 1000 runs x 300: excluded the mean at some time in {missed:.3f}")
    assert missed <= 0.08  # asymptotic: close to alpha, with some room for skew at small n
    assert np.mean(upper[:, -1] - lower[:, -1]) < 0.6
    stream = AsymptoticTest((1000,), [mean], 0.05)
    for t in range(300):
        stream.update(x[:, t])
    assert (stream.below | stream.above).mean() <= 0.08


def test_e_bh_rejects_the_largest_e_values_that_clear_their_step() -> None:
    assert e_bh([100.0, 1.0, 30.0, 0.5], 0.1).tolist() == [True, False, True, False]
    assert not e_bh([5.0, 5.0, 5.0], 0.05).any()
    with pytest.raises(ConfigError, match="alpha"):
        e_bh([1.0], 1.5)


# ─── racing ───


def test_aa_race_claims_no_difference_beyond_alpha_while_peeking() -> None:
    rng = np.random.default_rng(2025)
    replays, cases = 300, 200
    x = _heterogeneous(rng, [0.2] * 6, cases, replays)
    for goal in ("best", "baseline"):
        race = Race([f"v{i}" for i in range(6)], RacePolicy(goal=goal, alpha=0.05), replays)
        for t in range(cases):
            race.observe(x[:, :, t])
            race.decide()
        rate = race.claims().mean()
        print(f"\nA/A, 6 identical variants, goal {goal}: some variant claimed better or worse in {rate:.3f}")
        assert rate <= 0.05


def test_a_planted_winner_is_found_with_fewer_calls_than_the_full_matrix() -> None:
    rng = np.random.default_rng(5)
    matrix = _heterogeneous(rng, [1.0, 0.3, 0.2, 0.0], 300)
    report = replay_race(matrix, RacePolicy(alpha=0.05, epsilon=0.02), replays=100, seed=1)
    print(f"\nplanted winner: agreement {report.agreement:.2f}, median calls {report.median_call_fraction:.2f}")
    assert report.full_best == 0
    assert report.agreement >= 0.95
    assert report.median_call_fraction < 0.6
    assert (report.picked == 0).mean() >= 0.95


def test_a_clearly_worse_variant_is_dropped_with_a_verdict_that_says_how() -> None:
    rng = np.random.default_rng(8)
    matrix = _heterogeneous(rng, [0.5, 0.5, -0.8], 300)
    race = Race(["base", "twin", "bad"], RacePolicy(goal="baseline", alpha=0.05, epsilon=0.02))
    for t in range(300):
        race.observe(matrix[:, t])
        race.decide()
        if race.finished.all():
            break
    race.stop()
    verdicts = {v.variant: v for v in race.verdicts()}
    bad = verdicts["bad"]
    assert bad.reason == "worse" and bad.reference == "base"
    assert bad.dropped_after is not None and bad.dropped_after < 300
    assert bad.verdict == f"worse than base (dropped after {bad.dropped_after} cases)"
    assert verdicts["twin"].reason in ("", "equivalent")
    if verdicts["twin"].reason == "":
        assert verdicts["twin"].verdict == "undecided after 300 cases"
    assert race.cases[0, 2] == bad.dropped_after  # no case after the drop


def test_lower_is_better_metrics_race_the_other_way() -> None:
    rng = np.random.default_rng(9)
    d = rng.normal(size=300)
    run_s = np.exp(0.8 * d[None, :] + 0.2 * rng.normal(size=(3, 300))) * np.array([[1.0], [1.4], [1.5]])
    report = replay_race(
        run_s, RacePolicy(alpha=0.05, epsilon=0.01, bounds=None, higher_is_better=False), replays=50, seed=2
    )
    assert report.full_best == 0 and (report.picked == 0).all()
    assert report.median_call_fraction < 1.0


def test_matrix_from_results_averages_repetitions_per_case() -> None:
    def result(variant: str, case: str, success: bool, rep: int) -> ExecutionResult:
        return ExecutionResult(
            execution_id=f"{variant}-{case}-{rep}",
            project="p",
            variant={},
            variant_label=variant,
            status="completed" if success else "failed",
            initial_state={},
            case_id=case,
            repetition=rep,
        )

    results = [result("a", "c1", True, 0), result("a", "c1", False, 1), result("b", "c1", True, 0)]
    variants, cases, matrix = matrix_from_results(results, "success")
    assert variants == ["a", "b"] and cases == ["c1"]
    assert matrix.tolist() == [[0.5], [1.0]]


# ─── sequential repetitions ───


def test_sequential_repetitions_decide_clear_cells_and_label_the_rest_flaky() -> None:
    rng = np.random.default_rng(4)
    rates = np.repeat([0.1, 1.0, 0.8], 200)
    cells = SequentialPassRate(rates.size, threshold=0.6, max_repetitions=20, alpha=0.05)
    for _ in range(20):
        cells.update((rng.random(rates.size) < rates).astype(float))
    verdicts = cells.verdicts()
    low, high, edge = verdicts[:200], verdicts[200:400], verdicts[400:]
    assert (low == "fail").mean() >= 0.95 and (high == "pass").mean() >= 0.95
    assert cells.repetitions[:200].mean() < 10  # decided cells stop repeating
    assert set(edge) <= {"pass", "fail", "flaky"} and (edge == "fail").mean() <= 0.05
    assert "undecided" not in set(verdicts)


def test_a_cell_below_the_threshold_is_rarely_passed() -> None:
    rng = np.random.default_rng(6)
    cells = SequentialPassRate(3000, threshold=0.8, max_repetitions=40, alpha=0.05, margin=0.05)
    for _ in range(40):
        cells.update((rng.random(3000) < 0.75).astype(float))
    assert (cells.verdicts() == "pass").mean() <= 0.05


def test_replayed_repetitions_agree_with_the_full_repetitions() -> None:
    rng = np.random.default_rng(12)
    rates = rng.choice([0.1, 0.3, 1.0], 300)
    outcomes = (rng.random((300, 20)) < rates[:, None]).astype(float)
    replay = replay_repetitions(outcomes, 0.6, replays=50, seed=1)
    assert replay.agreement >= 0.98
    assert replay.repetition_fraction < 0.6


def test_repetitions_needed_says_when_a_pass_is_possible_at_all() -> None:
    assert repetitions_needed(0.8, 0.05) == 14  # 0.8 ** 14 < 0.05 < 0.8 ** 13
    assert repetitions_needed(0.8, 0.05, margin=0.05) == 11


# ─── bad input ───


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [("alpha", 0.0, "race.alpha"), ("alpha", 1.0, "race.alpha"), ("epsilon", -0.01, "race.epsilon")],
)
def test_race_config_rejects_bad_values_naming_the_field(field: str, value: float, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        RaceConfig(**{field: value})
    assert info.value.field == where and info.value.fix


def test_racing_needs_two_variants_and_a_valid_policy() -> None:
    with pytest.raises(ConfigError, match="at least two"):
        Race(["only"], RacePolicy())
    with pytest.raises(ConfigError, match="race.alpha"):
        RacePolicy(alpha=1.5)
    with pytest.raises(ConfigError, match="race.epsilon"):
        RacePolicy(epsilon=-1)
    with pytest.raises(ConfigError, match="race.goal"):
        RaceConfig(goal="fastest")


def test_difference_sequences_follow_the_race_order_and_separate_a_planted_difference(tmp_path) -> None:
    from PIL import Image

    from wtb_prefect.analysis.race_plot import difference_sequences, race_plot

    rng = np.random.default_rng(11)
    cases = 150
    base = rng.random(cases) < 0.5
    same = base.copy()  # an identical variant: every paired difference is 0
    better = base | (rng.random(cases) < 0.6)  # solves what the baseline solves, and more than half the rest
    per_case = np.vstack([base, same, better]).astype(float)
    per_case[2, 7] = np.nan  # a case the variant has no value for is left out of its pairs
    order = list(rng.permutation(cases))
    sequences = difference_sequences(per_case, order, ["base", "same", "better"], 0, (0.0, 1.0), 0.05)
    by_name = {s["variant"]: s for s in sequences}
    assert set(by_name) == {"same", "better"} and by_name["better"]["level"] == 0.025
    assert by_name["better"]["cases"] == [c for c in order if c != 7]
    for seq in sequences:  # nested bounds around the running mean, as a sequence valid at every look is
        lower, upper, mean = (np.array(seq[k], dtype=float) for k in ("lower", "upper", "mean"))
        assert np.all(lower <= mean + 1e-12) and np.all(mean <= upper + 1e-12)
        assert np.all(np.diff(lower) >= 0) and np.all(np.diff(upper) <= 0)
    assert by_name["same"]["lower"][-1] <= 0 <= by_name["same"]["upper"][-1]
    assert by_name["better"]["lower"][-1] > 0  # the planted difference is shown, and the truth is inside
    assert by_name["better"]["lower"][-1] <= np.nanmean(per_case[2] - per_case[0]) <= by_name["better"]["upper"][-1]

    # an unbounded metric (a timing) gets the asymptotic sequence: no bound before its first 30 cases
    timing = difference_sequences(per_case * 2.0 + 1.0, order, ["base", "same", "better"], 0, None, 0.05)
    assert timing[1]["lower"][0] is None and timing[1]["lower"][-1] is not None

    path = race_plot(sequences, tmp_path / "race.png", metric="answer_hit", epsilon=0.02, dropped_after={"same": 60})
    assert Image.open(path).size[0] == 900
    with pytest.raises(ValueError, match="at least one variant"):
        race_plot([{**by_name["same"], "cases": []}], tmp_path / "none.png", metric="answer_hit")

    # the report's race section: the sentence with the race's cost, a row per variant and the plot inside the page
    from wtb_prefect.analysis.batch_result import BatchTestResult
    from wtb_prefect.integrations.race_table import race_html

    race = {
        "primary_metric": "answer_hit",
        "goal": "baseline",
        "alpha": 0.05,
        "epsilon": 0.02,
        "kind": "anytime-valid",
        "decided": True,
        "sequences": sequences,
        "plot": str(path),
        "cost": {"node_calls": 40, "full_node_calls": 90, "node_seconds": 4.0, "full_node_seconds": 9.0},
        "verdicts": [
            {"variant": "base", "status": "baseline", "verdict": "baseline", "node_calls": 30, "mean": 0.5},
            {"variant": "same", "status": "dropped", "verdict": "no better than base", "dropped_after": 60},
            {"variant": "better", "status": "kept", "verdict": "better than base", "node_calls": 10, "mean": 0.8},
        ],
    }
    section = race_html(BatchTestResult("b1", "p", [], tracking={"race": race}))
    assert section.startswith("<h2 id='race'>Race</h2>")
    assert "40 node calls of the full matrix&#x27;s 90 (44%)" in section
    assert section.count("<tr>") == 4 and "60 cases" in section and "better than base" in section
    assert "src='data:image/png;base64,iVBORw0KGgo" in section  # the PNG itself, so the page stands alone
    assert race_html(BatchTestResult("b2", "p", [])) == ""  # a batch that was not raced has no race section
