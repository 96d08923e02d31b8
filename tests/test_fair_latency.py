"""Fair latency, pairwise judges, the forest plot and the verdicts in MLflow, through the real stack.

The project's nodes run in a Ray runtime env (env vars only) made for this
test, so no worker of it exists yet: the first executions of the batch wait
for Ray to start workers. Every variant's node sleeps the same time.
"""

from __future__ import annotations

import statistics
import uuid
from pathlib import Path

from tests.graphs import equal_time
from wtb_prefect.integrations.mlflow import tracking_uri


def test_cold_workers_make_no_latency_difference_and_mlflow_has_the_verdicts(bench, tmp_path):
    project = equal_time.timed_project("fair_latency", cold_key=uuid.uuid4().hex)
    bench.register_project(project)
    batch = bench.run_batch_test(
        project="fair_latency", variant_matrix=equal_time.MATRIX, test_cases=equal_time.CASES, parallelism=3
    )
    assert all(r.ok for r in batch), [str(r.error) for r in batch.failed]
    labels = ["default", "work=twin_a", "work=twin_b"]

    # the plan interleaves the variants case by case: none of them takes the cold start alone
    assert [r.variant_label for r in batch.results[:6]] == labels * 2
    assert [r.case_id for r in batch.results[:6]] == ["c0"] * 3 + ["c1"] * 3

    # the nodes' own run time is measured in the worker; the wait for a worker is reported apart
    for result in batch:
        (record,) = result.nodes
        assert record.run_s is not None and record.run_s >= equal_time.NODE_SECONDS * 0.9
        assert record.queue_s == max(0.0, record.duration_s - record.run_s)
        assert result.metrics["run_s"] == record.run_s and result.metrics["queue_s"] == record.queue_s
    first, rest = batch.results[:3], batch.results[3:]
    print(
        f"\nfirst round (cold workers): queue_s {[round(r.metrics['queue_s'], 3) for r in first]}, "
        f"run_s {[round(r.metrics['run_s'], 3) for r in first]}; later rounds: median queue_s "
        f"{statistics.median(r.metrics['queue_s'] for r in rest):.3f}, median run_s "
        f"{statistics.median(r.metrics['run_s'] for r in rest):.3f} (shared machine)"
    )

    # no variant is faster or slower on its nodes' run time. Holm at 1% (not the default 5%)
    # keeps a chance false positive of this real-timing test below 1 in 100 runs.
    run_time = batch.analysis(alpha=0.01).rows("run_s")
    assert [c.variant for c in run_time] == labels[1:]
    for c in run_time:
        print(f"{c.variant}: run_s {c.difference:+.4f} s [{c.ci_low:+.4f}, {c.ci_high:+.4f}], p_adj {c.p_adjusted:.3g}")
        assert c.n == 12 and c.verdict == "no detectable difference", c
        assert c.ci_low <= 0 <= c.ci_high or abs(c.difference) < 0.05
    # the default comparison uses run time for latency ("latency" is an alias of run_s)
    assert {r.metric for r in batch.compare(metric="latency")} == {"run_s"}

    # the pairwise judge ran both orders on every case: all ties
    assert [(w.variant, w.judge, w.n, w.tie_rate, w.both_orders) for w in batch.pairwise] == [
        ("work=twin_a", "larger_y", 12, 1.0, True),
        ("work=twin_b", "larger_y", 12, 1.0, True),
    ]
    summary = {row["variant"]: row for row in batch.summary()}
    assert summary["work=twin_a"]["larger_y w/t/l"] == "0.00/1.00/0.00"
    assert summary["default"]["queue_p50_s"] is not None and summary["default"]["run_p50_s"] is not None

    # the forest plot is saved with the batch, and MLflow's parent run has it and a verdict per variant
    assert batch.forest_plot and Path(batch.forest_plot).read_bytes()[:4] == b"\x89PNG"
    assert Path(batch.forest_plot).parent.name == batch.batch_id
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri())
    parent_id = batch.tracking["mlflow"]["parent_run_id"]
    assert "forest.png" in [a.path for a in client.list_artifacts(parent_id)]
    metrics = client.get_run(parent_id).data.metrics
    for variant in ("work_twin_a", "work_twin_b"):
        assert metrics[f"verdict.run_s.{variant}"] == 0.0  # "no detectable difference", as the analysis said
        assert metrics[f"verdict.doubled.{variant}"] == 0.0  # every answer right on both sides
        assert metrics[f"verdict.success.{variant}"] == 0.0
    child = client.get_run(batch.tracking["mlflow"]["child_run_ids"]["work=twin_a"]).data.metrics
    assert child["judge.larger_y.tie_rate"] == 1.0 and "verdict.run_s" in child
    local = client.download_artifacts(parent_id, "forest.png", str(tmp_path))
    assert Path(local).read_bytes() == Path(batch.forest_plot).read_bytes()
