"""Variant comparison (compare table, statistics) and the regression gate.

The statistics and gate logic are checked on hand-built results (pure); the
last tests run real batches: the comparison and progress artifacts of the
flow run, and a gate that fails the Prefect flow run.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from tests.graphs import scored_qa
from wtb_prefect.analysis.batch_result import BatchTestResult
from wtb_prefect.analysis.comparison import RegressionError, Tolerance, check_regressions, parse_tolerances
from wtb_prefect.analysis.evaluation import aggregate_metrics
from wtb_prefect.analysis.stats import mean_ci, percentile
from wtb_prefect.errors import ConfigError, ProjectError
from wtb_prefect.results import ExecutionResult, NodeRecord


def _result(
    label: str, case: str, score: float | None, latency: float = 1.0, status: str = "completed"
) -> ExecutionResult:
    variant = (
        {"_workflow": "default"} if label == "default" else {"_workflow": "default", "retriever": label.split("=")[1]}
    )
    return ExecutionResult(
        execution_id=f"x-{label}-{case}",
        project="p",
        variant=variant,
        variant_label=label,
        status=status,  # type: ignore[arg-type]
        initial_state={},
        case_id=case,
        duration_s=latency,
        scores={} if score is None else {"accuracy": score},
        nodes=[NodeRecord("gen", "m.gen", "v1", 0.0, latency / 2, "completed", metrics={"tokens": 10.0 * latency})],
    )


def _batch(groups: dict[str, list[tuple[float | None, float, str]]]) -> BatchTestResult:
    results = [
        _result(label, str(i), score, latency, status)
        for label, rows in groups.items()
        for i, (score, latency, status) in enumerate(rows)
    ]
    return BatchTestResult(batch_id="b1", project="p", results=results)


# Ten cases: the paired analysis gives a verdict from 10 cases both sides completed.
_ACC = [0.9, 0.8, 0.85, 0.95, 0.7, 0.88, 0.92, 0.75, 0.83, 0.87]
_LAT = [1.0, 1.2, 1.1, 0.9, 1.3, 1.0, 0.95, 1.15, 1.05, 1.1]
_JITTER = [0.02, -0.02, 0.01, -0.01, 0.0, 0.03, -0.03, 0.01, -0.01, 0.0]
GOOD = [(a, t, "completed") for a, t in zip(_ACC, _LAT, strict=True)]
WORSE = [(a - 0.4 + j, t + 1.0 + j, "completed") for a, t, j in zip(_ACC, _LAT, _JITTER, strict=True)]
SAME = [(a + j - 0.002, t - j - 0.01, "completed") for a, t, j in zip(_ACC, _LAT, _JITTER, strict=True)]


def test_statistics_match_scipy_and_numpy():
    a = [0.9, 0.8, 0.85, 0.95, 0.7]
    ci = mean_ci(a)
    low, high = scipy_stats.t.interval(0.95, len(a) - 1, loc=np.mean(a), scale=scipy_stats.sem(a))
    assert (ci.low, ci.high) == (pytest.approx(low), pytest.approx(high))
    for q in (0, 37.5, 50, 95, 100):
        assert percentile([3.0, 1.0, 2.0, 10.0], q) == pytest.approx(np.percentile([3.0, 1.0, 2.0, 10.0], q))
    with pytest.raises(ValueError):
        mean_ci([])


def test_compare_rows_against_a_baseline():
    batch = _batch({"default": GOOD, "retriever=bad": WORSE, "retriever=same": SAME})
    rows = {r.variant: r for r in batch.compare(metric="accuracy", baseline="default")}
    assert set(rows) == {"retriever=bad", "retriever=same"}
    bad, same = rows["retriever=bad"], rows["retriever=same"]
    assert bad.baseline == "default" and bad.n == 10 and bad.baseline_n == 10
    assert bad.value == pytest.approx(np.mean(_ACC) - 0.4) and bad.baseline_value == pytest.approx(np.mean(_ACC))
    assert bad.difference == pytest.approx(-0.4)
    assert bad.relative_difference == pytest.approx(-0.4 / np.mean(_ACC))
    assert bad.significant and bad.verdict == "worse" and bad.method == "paired t-test"
    assert bad.p_value == pytest.approx(scipy_stats.ttest_rel([r[0] for r in WORSE], _ACC).pvalue)
    assert bad.p_adjusted >= bad.p_value and bad.ci_high < 0
    assert not same.significant and same.verdict == "no detectable difference" and same.ci_low < 0 < same.ci_high
    assert same.mde is not None and same.mde > 0
    # the baseline as a {node: variant} dict, latency and aliases
    by_dict = batch.compare(metric="latency_s", baseline={"retriever": "bad"})
    assert {r.variant for r in by_dict} == {"default", "retriever=same"}
    assert all(r.difference < 0 for r in by_dict)
    assert batch.compare(metric="success_rate")[0].metric == "success"
    assert batch.compare(metric="total.tokens")[0].baseline == "default"  # first combination by default


def test_compare_rejects_unknown_metric_and_baseline():
    batch = _batch({"default": GOOD, "retriever=bad": WORSE})
    with pytest.raises(ConfigError, match="metric.*'acuracy'.*accuracy"):
        batch.compare(metric="acuracy")
    with pytest.raises(ConfigError, match="baseline.*retriever=nope"):
        batch.compare(metric="accuracy", baseline="retriever=nope")
    with pytest.raises(ConfigError, match="confidence"):
        batch.compare(metric="accuracy", confidence=95)


def test_aggregate_metrics_of_a_variant():
    rows = GOOD[:3] + [(None, 5.0, "failed")]
    results = [_result("default", str(i), s, lat, st) for i, (s, lat, st) in enumerate(rows)]
    figures = aggregate_metrics(results)
    assert figures["cases"] == 4 and figures["error_rate"] == 0.25 and figures["success_rate"] == 0.75
    assert figures["accuracy.mean"] == pytest.approx(0.85)
    ci = mean_ci([0.9, 0.8, 0.85])
    assert figures["accuracy.ci95_low"] == pytest.approx(ci.low)
    # latencies count completed executions only (not the failed one, which took longest)
    assert figures["latency_s.p50"] == pytest.approx(1.1)
    assert figures["latency_s.p95"] == pytest.approx(percentile([1.0, 1.2, 1.1], 95))
    assert figures["node.gen.latency_s.p50"] == pytest.approx(0.55)
    # reported metrics count every execution (tokens spent on a failure are spent)
    assert figures["total.tokens.mean"] == pytest.approx(np.mean([10, 12, 11, 50]))


def test_regression_gate_uses_direction_and_tolerance():
    batch = _batch({"default": GOOD, "retriever=bad": WORSE, "retriever=same": SAME})
    found = check_regressions(batch, "default", {"accuracy": 0.05})
    assert [(r.variant, r.metric) for r in found] == [("retriever=bad", "accuracy")]
    assert "retriever=bad: accuracy 0.445 vs 0.845" in str(found[0])
    assert check_regressions(batch, "default", {"accuracy": 0.5}) == []
    # latency: lower is better; 10% of the baseline's mean allowed
    slow = check_regressions(batch, "default", ["latency_s=10%"])
    assert [r.variant for r in slow] == ["retriever=bad"]
    # an explicit direction and a significance requirement
    assert (
        check_regressions(batch, "default", {"latency_s": Tolerance(0.0, higher_is_better=True)})[0].variant
        == "retriever=same"
    )
    # "same" is 0.002 worse on accuracy: a regression at tolerance 0, but not a significant one
    assert {r.variant for r in check_regressions(batch, "default", {"accuracy": 0.0})} == {
        "retriever=bad",
        "retriever=same",
    }
    assert [
        r.variant for r in check_regressions(batch, "default", {"accuracy": Tolerance(0.0, require_significance=True)})
    ] == ["retriever=bad"]
    # every execution of a variant failed: no values is a regression
    failing = _batch({"default": GOOD, "retriever=broken": [(None, 0.1, "failed")] * 4})
    gone = check_regressions(failing, "default", {"accuracy": 0.1, "error_rate": 0.0})
    assert {(r.variant, r.metric, r.value) for r in gone} == {
        ("retriever=broken", "accuracy", None),
        ("retriever=broken", "error", 1.0),
    }
    error = RegressionError(gone, failing)
    assert "2 regression(s)" in str(error) and error.batch is failing


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (["accuracy"], "METRIC=AMOUNT"),
        (["accuracy=lots"], "does not parse"),
        ({"accuracy": -1}, "non-negative"),
        ({"accuracy": True}, "bool"),
        ({"accuracy": {"alowed": 1}}, "allowed, relative"),
    ],
)
def test_bad_tolerances_are_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        parse_tolerances(spec)


def test_tolerances_parse():
    parsed = parse_tolerances(["accuracy=0.05", "latency_s = 20%"])
    assert parsed == {"accuracy": Tolerance(0.05), "latency_s": Tolerance(0.2, relative=True)}
    assert math.isclose(parse_tolerances({"cost": "1.5"})["cost"].allowed, 1.5)


# ─── real batches: artifacts and a failing gate ───


def _flow_run_artifacts(flow_run_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            )

    return asyncio.run(read())


def _flow_run_state(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client

    async def read():
        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).state.type.value

    return asyncio.run(read())


def test_batch_shows_comparison_and_progress_artifacts(bench):
    bench.register_project(scored_qa.qa_project("cmp_artifacts"))
    batch = bench.run_batch_test(
        project="cmp_artifacts", variant_matrix=scored_qa.MATRIX[:2], test_cases=scored_qa.CASES, parallelism=4
    )
    rows = batch.compare(metric="exact_match")
    assert len(rows) == 1 and rows[0].variant == "retriever=first"
    assert rows[0].difference == pytest.approx(-0.75) and rows[0].baseline == "default"
    artifacts = _flow_run_artifacts(batch.flow_run_id)
    progress = [a for a in artifacts if a.type == "progress"]
    assert progress and float(progress[0].data) == 100.0
    table = next(a for a in artifacts if a.key == "wtb-cmp-artifacts-vs-baseline")
    assert table.type == "table"
    data = table.data if isinstance(table.data, list) else __import__("json").loads(table.data)
    exact = next(r for r in data if r["metric"] == "exact_match")
    interval = batch.analysis().interval  # the level the family's correction implies
    assert exact[f"difference ({interval})"].startswith("-0.750")
    assert exact["variant"] == "retriever=first"
    assert exact["verdict"] == rows[0].verdict == "too few cases"  # 4 paired cases; a verdict needs 10
    assert all(len(row) <= 5 for row in data)  # fits a 1400 px artifact page
    summary = next(a for a in artifacts if a.key == "wtb-cmp-artifacts-comparison")
    rows = summary.data if isinstance(summary.data, list) else __import__("json").loads(summary.data)
    first = next(r for r in rows if r["variant"] == "retriever=first")
    assert first["exact_match ±95%"].startswith("0.250 ±")  # the mean with half its interval


def test_regression_gate_fails_the_flow_run(bench):
    bench.register_project(scored_qa.qa_project("cmp_gate"))
    matrix = [{}, {"retriever": "paris_rome"}]
    with pytest.raises(RegressionError) as caught:
        bench.run_batch_test(
            project="cmp_gate",
            variant_matrix=matrix,
            test_cases=scored_qa.CASES,
            parallelism=4,
            regression_gate={
                "baseline": {"retriever": "default"},
                "tolerances": {"exact_match": 0.1, "latency_s": "500%"},
            },
        )
    error = caught.value
    assert [(r.variant, r.metric) for r in error.regressions] == [("retriever=paris_rome", "exact_match")]
    assert error.regressions[0].change == pytest.approx(-0.5)
    assert _flow_run_state(error.batch.flow_run_id) == "FAILED"
    gate_artifact = next(
        a for a in _flow_run_artifacts(error.batch.flow_run_id) if a.key == "wtb-cmp-gate-regression-gate"
    )
    assert "REGRESSED" in str(gate_artifact.data)
    # a tolerance the candidate meets: the flow run completes
    batch = bench.run_batch_test(
        project="cmp_gate",
        variant_matrix=matrix,
        test_cases=scored_qa.CASES,
        parallelism=4,
        regression_gate={"baseline": "default", "tolerances": ["exact_match=0.6"]},
    )
    assert _flow_run_state(batch.flow_run_id) == "COMPLETED" and batch.tracking["regressions"] == []


@pytest.mark.parametrize(
    ("gate", "match"),
    [
        ({"baseline": "retriever=nope", "tolerances": {"exact_match": 0.1}}, "baseline.*not in the variant matrix"),
        ({"tolerances": {"exact_macth": 0.1}}, "exact_macth.*not a metric"),
        ({"tolerances": {}}, "tolerances: is empty"),
        ({"tolerance": {"exact_match": 0.1}}, "regression_gate"),
    ],
)
def test_bad_gate_fails_before_any_work(bench, gate, match):
    bench.register_project(scored_qa.qa_project("cmp_bad_gate"))
    with pytest.raises(ConfigError, match=match):
        bench.run_batch_test(
            project="cmp_bad_gate",
            variant_matrix=[{}, {"retriever": "first"}],
            test_cases=scored_qa.CASES,
            regression_gate=gate,
        )
    assert bench.list_batches("cmp_bad_gate") == []


def test_summary_adds_the_median_of_named_metrics_per_variant():
    results = [_result("default", c, 1.0, latency=t) for c, t in (("a", 1.0), ("b", 3.0), ("c", 2.0))]
    results += [_result("retriever=bm25", c, 0.0, latency=t) for c, t in (("a", 4.0), ("b", 6.0))]
    results.append(_result("retriever=bm25", "c", None, latency=100.0, status="failed"))
    rows = {r["variant"]: r for r in BatchTestResult("b1", "p", results).summary(metrics=["total.tokens", "nope"])}
    assert rows["default"]["total.tokens p50"] == 20.0  # tokens are 10 x latency: median of 10, 30, 20
    assert rows["retriever=bm25"]["total.tokens p50"] == 50.0  # the failed execution is left out
    assert rows["default"]["nope p50"] is None


def test_cases_one_side_did_not_complete_are_reported_not_paired():
    rows = [*GOOD[:9], (None, 5.0, "failed")]
    batch = _batch({"default": GOOD, "retriever=flaky": rows})
    (acc,) = batch.compare(metric="accuracy")
    assert acc.n == 9 and acc.missing == ("9",) and acc.verdict == "too few cases"
    (success,) = batch.compare(metric="success")  # success counts the failure itself
    assert success.n == 10 and success.missing == () and success.difference == pytest.approx(-0.1)
    assert success.method == "exact McNemar" and success.verdict == "no detectable difference"


def test_repetitions_are_averaged_per_case_and_give_pass_at_k():
    results = []
    for rep in range(3):
        for i in range(10):
            for label, ok in (("default", i < 5), ("retriever=x", i < 5 or (i < 8 and rep == 0))):
                r = _result(label, str(i), 1.0 if ok else 0.0, status="completed" if ok else "failed")
                r.repetition = rep
                results.append(r)
    batch = BatchTestResult("b1", "p", results)
    (success,) = batch.compare(metric="success")
    assert success.n == 10 and success.difference == pytest.approx(0.1)  # 3 cases pass once in 3
    assert success.method == "paired t-test"  # per-case rates, not 0/1: no McNemar
    figures = batch.repetitions("success")
    assert figures["default"]["success.pass@3"] == pytest.approx(0.5)
    assert figures["retriever=x"]["success.pass@3"] == pytest.approx(0.8)
    assert figures["retriever=x"]["success.pass^3"] == pytest.approx(0.5)
    summary = {row["variant"]: row for row in batch.summary()}
    assert summary["retriever=x"]["pass@3"] == pytest.approx(0.8)


def test_comparative_evaluator_in_both_orders_cancels_position_bias():
    from wtb_prefect.batch.judges import judge_batch
    from wtb_prefect.define.project import ComparativeEvaluator

    batch = _batch({"default": GOOD, "retriever=bad": WORSE})
    for r in batch.results:
        r.final_state = {"score": r.scores.get("accuracy")}
    raw = {str(i): {"case_id": str(i)} for i in range(10)}

    def first_wins(a, b, case):  # a judge that always prefers what it sees first
        return 1.0

    def better_score(a, b, case):
        return float((a["score"] > b["score"]) - (a["score"] < b["score"]))

    biased = judge_batch({"first": ComparativeEvaluator("first", first_wins)}, batch, "default", raw)
    assert biased[0].win_rate == 1.0
    fair = judge_batch({"first": ComparativeEvaluator("first", first_wins, both_orders=True)}, batch, "default", raw)
    assert fair[0].tie_rate == 1.0 and fair[0].both_orders
    (judged,) = judge_batch({"score": ComparativeEvaluator("score", better_score, True)}, batch, "default", raw, 4)
    assert (judged.variant, judged.wins, judged.losses, judged.n) == ("retriever=bad", 0, 10, 10)
    assert judged.loss_ci[0] > 0.6 and judged.p_value < 0.01

    def broken(a, b, case):
        raise RuntimeError("judge down")

    assert judge_batch({"broken": ComparativeEvaluator("broken", broken)}, batch, "default", raw) == []


def test_register_comparative_evaluator_rejects_a_non_callable():
    project = scored_qa.qa_project("cmp_judge_bad")
    with pytest.raises(ProjectError, match="callable"):
        project.register_comparative_evaluator("judge", "not a function")  # type: ignore[arg-type]
    project.register_comparative_evaluator("judge", lambda a, b, case: 0.0, both_orders=True)
    assert project.comparative_evaluators["judge"].both_orders


def test_gate_can_require_significance_for_every_tolerance():
    from wtb_prefect.batch.plan import prepare_batch

    project = scored_qa.qa_project("cmp_gate_significance")
    gate = {"tolerances": {"exact_match": 0.1, "latency_s": "20%"}, "require_significance": True}
    plan = prepare_batch(project, scored_qa.MATRIX[:2], scored_qa.CASES, regression_gate=gate)
    assert plan.gate.require_significance
    assert all(t.require_significance for t in plan.gate.tolerances.values())
    plain = prepare_batch(
        project, scored_qa.MATRIX[:2], scored_qa.CASES, regression_gate={"tolerances": {"exact_match": 0.1}}
    )
    assert not plain.gate.require_significance and not plain.gate.tolerances["exact_match"].require_significance
    with pytest.raises(ConfigError, match="require_significance"):
        prepare_batch(
            project,
            scored_qa.MATRIX[:2],
            scored_qa.CASES,
            regression_gate={**gate, "require_significance": "yes"},
        )
