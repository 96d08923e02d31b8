"""MLflow records each batch: one parent run, one child run per variant combination."""

from __future__ import annotations

import json
import statistics
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.graphs import scored_qa
from wtb_prefect.analysis.stats import mean_ci, percentile
from wtb_prefect.batch.observers import BatchObserver, register_observer_factory
from wtb_prefect.integrations.mlflow import mlflow_ui_command, tracking_uri

if TYPE_CHECKING:  # MLflow is imported by the tests that use it: collecting the fast subset needs none of it
    from mlflow import MlflowClient


def _runs(client: MlflowClient, project: str, batch_id: str):
    experiment = client.get_experiment_by_name(project)
    assert experiment is not None, f"no MLflow experiment named {project}"
    return client.search_runs([experiment.experiment_id], f"tags.`wtb.batch_id` = '{batch_id}'")


def _load_table(client: MlflowClient, run_id: str, name: str, tmp_path: Path) -> list[dict]:
    local = client.download_artifacts(run_id, name, str(tmp_path))
    data = json.loads(Path(local).read_text())
    return [dict(zip(data["columns"], row)) for row in data["data"]]


@pytest.fixture(scope="module")
def qa_batch(ray_cluster):
    from wtb_prefect import WTBTestBench

    bench = WTBTestBench()
    bench.register_project(scored_qa.qa_project("mlflow_qa"))
    return bench.run_batch_test(
        project="mlflow_qa", variant_matrix=scored_qa.MATRIX, test_cases=scored_qa.CASES, parallelism=4
    )


def test_default_store_is_sqlite_under_wtb_home(wtb_home):
    assert tracking_uri() == f"sqlite:///{wtb_home.resolve() / 'mlflow.db'}"
    assert mlflow_ui_command().startswith(f"mlflow ui --backend-store-uri sqlite:///{wtb_home.resolve()}")


def test_node_metrics_reach_the_node_records(qa_batch):
    result = qa_batch.get("default", "paris")
    assert result.ok, result.error
    by_node = {r.node: r.metrics for r in result.nodes}
    assert by_node["retriever"] == {"tokens": 6.0}  # "Paris is the capital of France."
    assert by_node["answerer"] == {"tokens": 1.0, "cost": 0.75}  # two calls add up
    assert result.metrics["total.tokens"] == 7.0
    assert result.metrics["node.answerer.cost"] == 0.75
    assert result.metrics["success"] == 1.0 and result.metrics["latency_s"] > 0


def test_batch_has_one_parent_and_a_child_run_per_combination(qa_batch, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri())
    runs = _runs(client, "mlflow_qa", qa_batch.batch_id)
    parents = [r for r in runs if r.data.tags.get("wtb.kind") == "batch"]
    children = [r for r in runs if r.data.tags.get("wtb.kind") == "variant"]
    assert len(runs) == 4 and len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["prefect.flow_run_id"] == qa_batch.flow_run_id
    assert parent.data.params["test_cases"] == "4"
    assert qa_batch.tracking["mlflow"]["parent_run_id"] == parent.info.run_id
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}

    expected_accuracy = {"default": 1.0, "retriever=first": 0.25, "retriever=paris_rome": 0.5}
    groups = qa_batch.by_variant()
    for child in children:
        label = child.data.tags["wtb.variant"]
        results = groups[label]
        params, metrics = child.data.params, child.data.metrics
        # params name the combination and each node's provenance
        assert params["variant"] == label == child.info.run_name
        assert params["workflow_variant"] == "default"
        assert params["variant.retriever"] == results[0].variant.get("retriever", "default")
        assert params["variant.answerer"] == "default"
        provenance = results[0].provenance["nodes"]
        for node in ("retriever", "answerer"):
            assert provenance[node]["implementation"].endswith(params[f"node.{node}.implementation"])
            assert params[f"node.{node}.version"] == provenance[node]["version"]
            assert "num_cpus=0.25" in params[f"node.{node}.resources"]
            assert params[f"node.{node}.environment"] == "current"
        assert params["node.retriever.implementation"].startswith("scored_qa.")  # module and function, readable
        # metrics aggregate the evaluator results over the 4 cases
        scores = [r.scores["exact_match"] for r in results]
        assert len(scores) == 4
        assert metrics["exact_match"] == pytest.approx(expected_accuracy[label])
        assert metrics["exact_match"] == pytest.approx(statistics.fmean(scores))
        ci = mean_ci(scores)
        if label == "default":  # no spread: the interval is the mean
            assert metrics["exact_match.ci95_low"] == metrics["exact_match.ci95_high"] == 1.0
        else:
            assert metrics["exact_match.ci95_low"] == pytest.approx(ci.low)
            assert metrics["exact_match.ci95_high"] == pytest.approx(ci.high)
            assert ci.low < ci.mean < ci.high
        lengths = [r.scores["answer.length"] for r in results]
        assert metrics["answer.length"] == pytest.approx(statistics.fmean(lengths))
        assert metrics["success_rate"] == 1.0 and metrics["error_rate"] == 0.0 and params["cases"] == "4"
        assert metrics["latency_s.p50"] == pytest.approx(percentile([r.duration_s for r in results], 50))
        assert metrics["latency_s.p95"] == pytest.approx(percentile([r.duration_s for r in results], 95))
        for node in ("retriever", "answerer"):
            node_latency = [r.node_timings[node] for r in results]
            assert metrics[f"node.{node}.latency_s.p95"] == pytest.approx(percentile(node_latency, 95))
        assert metrics["node.answerer.cost"] == pytest.approx(0.75)
        assert metrics["total.tokens"] == pytest.approx(statistics.fmean(r.metrics["total.tokens"] for r in results))
        # the per-case results as an MLflow table
        table = _load_table(client, child.info.run_id, "cases.json", tmp_path / label)
        assert sorted(row["case"] for row in table) == ["berlin", "madrid", "paris", "rome"]
        for row in table:
            assert (
                row["exact_match"]
                == groups[label][[r.case_id for r in results].index(row["case"])].scores["exact_match"]
            )
            assert row["status"] == "completed"
    comparison = _load_table(client, parent.info.run_id, "comparison.json", tmp_path / "parent")
    accuracy_rows = {r["variant"]: r for r in comparison if r["metric"] == "exact_match"}
    assert accuracy_rows["retriever=first"]["difference"] == pytest.approx(-0.75)


def test_batch_reads_back_set_up_for_comparison(qa_batch, tmp_path):
    """What MLflow's UI shows: the runs view, one plain metric per quantity, short params, the forest plot."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name("mlflow_qa")
    # opens on the runs view (ML experiment), not on the GenAI overview
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = _runs(client, "mlflow_qa", qa_batch.batch_id)
    parent = next(r for r in runs if r.data.tags["wtb.kind"] == "batch")
    children = [r for r in runs if r.data.tags["wtb.kind"] == "variant"]
    for run in runs:
        too_long = {k: len(v) for k, v in run.data.params.items() if len(v) > 250}
        assert not too_long, too_long
    for child in children:
        names = set(child.data.metrics)
        # a mean under the quantity's own name, its interval bounds as metrics of their own
        assert {
            "exact_match",
            "exact_match.ci95_low",
            "exact_match.ci95_high",
            "answer.length",
            "success_rate",
            "error_rate",
            "latency_s",
            "latency_s.p50",
            "latency_s.p95",
        } <= names
        assert not [n for n in names if n.endswith(".mean")] and "cases" not in names
        # the long provenance (resources, environment locks) is an artifact
        provenance = json.loads(
            Path(client.download_artifacts(child.info.run_id, "provenance.json", str(tmp_path))).read_text()
        )
        assert provenance["variant"] == qa_batch.by_variant()[child.data.tags["wtb.variant"]][0].variant
        # the per-case table's columns have no dots (MLflow's viewer leaves dotted columns empty)
        columns = json.loads(
            Path(client.download_artifacts(child.info.run_id, "cases.json", str(tmp_path))).read_text()
        )["columns"]
        assert "node_retriever_s" in columns and "answer_length" in columns
        assert not [c for c in columns if "." in c]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "forest.png" in artifacts
    png = Path(client.download_artifacts(parent.info.run_id, "forest.png", str(tmp_path / "plot"))).read_bytes()
    assert png.startswith(b"\x89PNG")


def test_single_run_is_no_batch_parent(ray_cluster):
    from wtb_prefect import WTBTestBench

    bench = WTBTestBench()
    bench.register_project(scored_qa.qa_project("mlflow_single"))
    result = bench.run(project="mlflow_single", initial_state={"question": scored_qa.CASES[0]["question"]})
    assert result.ok, result.error
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name("mlflow_single")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    assert not [r for r in runs if r.data.tags.get("wtb.kind") == "batch"]


def test_two_batches_at_once_keep_their_runs_apart(ray_cluster):
    from wtb_prefect import WTBTestBench

    bench = WTBTestBench()
    bench.register_project(scored_qa.qa_project("mlflow_concurrent"))
    matrices = {"a": [{}, {"retriever": "first"}], "b": [{"retriever": "paris_rome"}, {"retriever": "first"}]}
    batches: dict[str, object] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run(key: str) -> None:
        try:
            barrier.wait(timeout=60)
            batches[key] = bench.run_batch_test(
                project="mlflow_concurrent", variant_matrix=matrices[key], test_cases=scored_qa.CASES, parallelism=4
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    # Hold each batch at its start until the other has started too, so both
    # batches (and their MLflow runs) are certainly open at the same time.
    both_started = threading.Barrier(2)

    class WaitForTheOther(BatchObserver):
        def on_batch_start(self, plan):
            both_started.wait(timeout=300)

    register_observer_factory(lambda plan: WaitForTheOther() if plan.project.name == "mlflow_concurrent" else None)
    threads = [threading.Thread(target=run, args=(k,)) for k in matrices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=480)
    assert not errors, errors
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri())
    spans = []
    expected_accuracy = {"default": 1.0, "retriever=first": 0.25, "retriever=paris_rome": 0.5}
    for batch in batches.values():
        assert all(r.ok for r in batch), [str(r.error) for r in batch.failed]
        runs = _runs(client, "mlflow_concurrent", batch.batch_id)
        parent = next(r for r in runs if r.data.tags["wtb.kind"] == "batch")
        children = [r for r in runs if r.data.tags["wtb.kind"] == "variant"]
        assert len(runs) == 3
        assert {c.data.params["variant"] for c in children} == {b.variant_label for b in batch}
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
        assert parent.data.tags["prefect.flow_run_id"] == batch.flow_run_id
        for child in children:
            label = child.data.params["variant"]
            assert child.data.metrics["exact_match"] == pytest.approx(expected_accuracy[label])
            assert child.data.params["cases"] == "4"
        spans.append((parent.info.start_time, parent.info.end_time))
    # both batches really ran at once: their parent runs overlap in time
    assert both_started.n_waiting == 0 and not both_started.broken
    (s1, e1), (s2, e2) = spans
    assert s1 < e2 and s2 < e1


OPEN_STORE = """
import os, sys, time
from pathlib import Path

from wtb_prefect.integrations.mlflow import mlflow_client

uri, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (imported before the start line)
ready.touch()
while not go.exists():
    time.sleep(0.005)
mlflow_client(uri).create_experiment(f"opened by {os.getpid()}")
"""


@pytest.mark.integration  # four processes start real MLflow clients on one store at once
def test_processes_opening_a_new_store_at_once_all_record(tmp_path):
    """Batches started together in several processes open a new SQLite store at the same
    moment: each gets a working client (MLflow's migrations run once, not in each)."""
    import subprocess
    import sys
    import time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    go = tmp_path / "go"
    procs = []
    for i in range(4):
        cmd = [sys.executable, "-c", OPEN_STORE, uri, str(tmp_path / f"ready{i}"), str(go)]
        procs.append(subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True))
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
            assert all(p.poll() is None for p in procs) and time.monotonic() < deadline, "a process did not get ready"
            time.sleep(0.05)
        go.touch()
        errors = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(e[-2000:] for e in errors)
    from mlflow import MlflowClient

    names = {e.name for e in MlflowClient(tracking_uri=uri).search_experiments()}
    assert {f"opened by {p.pid}" for p in procs} <= names
