"""The one-glance answer: right on planted batches (clearly better, clearly worse, indistinguishable).

Pure unit tests: planted results stand in for executions (no services).
"""

from __future__ import annotations

import random

import pytest

from wtb_prefect import BatchTestResult, ExecutionResult, NodeRecord
from wtb_prefect.analysis.glance import EXTRA_COLUMNS, GlanceColumn, cases_needed, one_glance
from wtb_prefect.analysis.paired import minimal_detectable_effect

CASES = 50


def _result(label: str, case: int, score: float, seconds: float = 0.1, cost: float | None = None) -> ExecutionResult:
    metrics = {"cost_usd": cost} if cost is not None else {}
    return ExecutionResult(
        execution_id=f"{label}-{case}",
        project="planted",
        variant={},
        variant_label=label,
        status="completed",
        initial_state={"q": case},
        final_state={"q": case, "a": score},
        nodes=[NodeRecord("answer", "m.answer", "v1", 0.0, seconds, "completed", run_s=seconds, metrics=metrics)],
        duration_s=seconds,
        case_id=f"case-{case:03d}",
        scores={"accuracy": score},
    )


def _batch(rates: dict[str, float], seed: int = 3, seconds: dict[str, float] | None = None) -> BatchTestResult:
    """Each variant's 0/1 accuracy drawn at its rate; the same uniform draw per case keeps variants paired."""
    rng = random.Random(seed)
    draws = [rng.random() for _ in range(CASES)]
    results = []
    for label, rate in rates.items():
        for case, u in enumerate(draws):
            jitter = 0.01 * ((case * 7) % 5)
            results.append(_result(label, case, float(u < rate), (seconds or {}).get(label, 0.1) + jitter))
    return BatchTestResult("b1", "planted", results)


def test_one_clearly_better_variant_is_the_pick():
    glance = one_glance(_batch({"default": 0.4, "same": 0.4, "good": 0.95}))
    assert glance.pick == "good"
    assert glance.answer.startswith("Pick good: better than default on accuracy 0.")
    assert glance.cell("good", "accuracy").mark == "▲" and glance.cell("good", "accuracy").best
    assert glance.cell("same", "accuracy").mark == "=" and not glance.cell("same", "accuracy").best
    assert not glance.cell("default", "accuracy").best
    assert glance.variants == ["default", "same", "good"]


def test_one_clearly_worse_variant_keeps_the_baseline():
    glance = one_glance(_batch({"default": 0.9, "same": 0.9, "bad": 0.1}))
    assert glance.pick == "default"
    assert glance.answer.startswith("Keep default: no variant is better on quality, and bad is worse on accuracy")
    assert glance.cell("bad", "accuracy").mark == "▼"
    # the baseline is best but 'same' is not told apart from it: nothing highlighted
    assert not any(glance.cell(v, "accuracy").best for v in glance.variants)


def test_all_indistinguishable_says_how_many_cases_would_tell():
    rng = random.Random(11)
    results = []
    for label in ("default", "v2", "v3"):
        for case in range(CASES):
            results.append(_result(label, case, float(rng.random() < 0.6)))
    glance = one_glance(BatchTestResult("b2", "planted", results))
    assert glance.pick is None
    needed = glance.cases_needed
    assert needed is not None and needed > CASES
    assert glance.answer == (
        f"No variant is distinguishable from the baseline default at n = {CASES}; "
        f"to detect 5 points on accuracy you need about {needed} cases."
    )
    assert not any(c.best for c in glance.cells.values())


def test_cases_needed_inverts_the_minimal_detectable_effect_and_matches_a_paired_t_power_solver():
    from statsmodels.stats.power import TTestPower

    for sd, detect, alpha in ((0.7, 0.05, 0.05 / 9), (0.3, 0.1, 0.05), (2.0, 0.5, 0.01)):
        n = cases_needed(sd, detect, alpha)
        assert minimal_detectable_effect(n, sd, alpha) <= detect < minimal_detectable_effect(n - 1, sd, alpha)
        exact = TTestPower().solve_power(effect_size=detect / sd, alpha=alpha, power=0.8, alternative="two-sided")
        assert n <= exact <= n * 1.05 + 3  # the normal approximation, a little under the t-based answer
    # 0/1 values that agreed on every case still need the discordance a 5-point difference implies
    assert cases_needed(0.0, 0.05, 0.05, binary=True) == pytest.approx(cases_needed(0.05**0.5 * 0.95**0.5, 0.05, 0.05))
    assert cases_needed(0.0, 1.0, 0.05) is None


def test_latency_is_a_trade_off_named_in_the_sentence():
    glance = one_glance(_batch({"default": 0.4, "good": 0.95}, seconds={"default": 0.1, "good": 0.5}))
    assert [c.heading for c in glance.columns] == ["accuracy", "run s"]
    assert glance.pick == "good"
    assert "; but worse on run s 0.5" in glance.answer
    assert glance.cell("good", "run_s").mark == "▼"


def test_a_listed_column_shows_when_its_metric_is_recorded():
    results = [
        _result(label, case, 1.0, cost=0.002 if label == "default" else 0.001)
        for label in ("default", "v2")
        for case in range(12)
    ]
    glance = one_glance(BatchTestResult("b3", "planted", results))
    headings = [c.heading for c in glance.columns]
    assert headings == ["accuracy", "run s", "cost $"]
    assert glance.cell("v2", "total.cost_usd").mean == pytest.approx(0.001)
    assert "cost $" in glance.markdown().splitlines()[2]
    assert any(c.metric == "total.cost_usd" for c in EXTRA_COLUMNS)
    only = one_glance(BatchTestResult("b3", "planted", results), columns=[GlanceColumn("accuracy", "acc")])
    assert [c.heading for c in only.columns] == ["acc"]


def test_too_few_cases_says_so():
    results = [_result(label, case, float(case % 2)) for label in ("default", "v2") for case in range(5)]
    glance = one_glance(BatchTestResult("b4", "planted", results))
    assert glance.answer == "Too few cases to tell the variants apart: 5 paired cases, a verdict needs at least 10."
    assert glance.cell("v2", "accuracy").mark == "?"


def test_views_render_the_same_answer():
    glance = one_glance(_batch({"default": 0.4, "good": 0.95}))
    markdown = glance.markdown()
    assert markdown.startswith(f"**{glance.answer}**")
    assert "| `good` | **" in markdown
    text = glance.text()
    assert " ".join(text.split("\n\n")[0].split()) == glance.answer
    assert max(len(line) for line in text.splitlines()) <= 120


def test_batch_summary_rows_carry_the_one_glance_answer():
    batch = _batch({"default": 0.4, "good": 0.95})
    summary = batch.summary()
    assert [row["variant"] for row in summary] == ["default", "good"]  # still the rows, one per variant
    assert summary.answer == one_glance(batch).answer and summary.answer.startswith("Pick good")
    assert str(summary).startswith("Pick good")
