"""An evaluator that raises leaves its score out and is reported; the execution's status stands."""

from __future__ import annotations

import json
import uuid

from typer.testing import CliRunner

from tests.graphs import scored_qa
from tests.test_mlflow import _load_table, _runs
from wtb_prefect.cli import app
from wtb_prefect.integrations.mlflow import tracking_uri


def strict_match(final_state: dict, case: dict) -> float:
    """Needs the case's ``expected`` (indexes it directly)."""
    return float(final_state["answer"] == case["expected"])


def fragile(final_state: dict, case: dict) -> float:
    """Breaks on the Rome case."""
    if case.get("case_id") == "rome":
        raise RuntimeError("the judge model timed out")
    return 1.0


def test_evaluator_errors_leave_scores_missing_and_are_reported_everywhere(bench, tmp_path):
    name = f"eval_errors_{uuid.uuid4().hex[:6]}"
    project = scored_qa.qa_project(name)
    project.register_evaluator("strict", strict_match)
    project.register_evaluator("fragile", fragile)
    bench.register_project(project)
    cases = [dict(c) for c in scored_qa.CASES]
    del cases[2]["expected"]  # berlin: a case that lacks what the strict evaluator needs

    batch = bench.run_batch_test(name, [{}], cases, parallelism=2)

    assert [r.status for r in batch] == ["completed"] * 4  # the workflow ran fine every time
    berlin, rome, paris = batch.get("default", "berlin"), batch.get("default", "rome"), batch.get("default", "paris")
    assert "strict" not in berlin.scores and berlin.scores["fragile"] == 1.0
    error = berlin.evaluator_errors["strict"]
    assert error.type == "MissingCaseField"
    assert "test case 'berlin' has no 'expected'" in error.message
    assert "fragile" not in rome.scores and rome.scores["strict"] == 1.0
    assert rome.evaluator_errors["fragile"].type == "RuntimeError"
    assert "judge model timed out" in rome.evaluator_errors["fragile"].message
    assert paris.evaluator_errors == {} and paris.scores["strict"] == 1.0
    assert bench.get_result(berlin.execution_id).evaluator_errors["strict"].type == "MissingCaseField"  # in the index

    (row,) = batch.summary()
    assert row["strict errors"] == 1 and row["fragile errors"] == 1 and row["success_rate"] == 1.0
    assert row["strict"] == 1.0  # the mean of the three scored cases, not a zero for the missing one
    assert "strict: MissingCaseField" in berlin.row()["evaluator_errors"]

    from mlflow import MlflowClient  # here, not at collection: the fast subset does not import MLflow

    client = MlflowClient(tracking_uri())
    child = next(r for r in _runs(client, name, batch.batch_id) if r.data.tags.get("wtb.kind") == "variant")
    assert child.data.metrics["evaluator_errors.strict"] == 1.0
    assert child.data.metrics["evaluator_errors.fragile"] == 1.0
    assert child.data.metrics["success_rate"] == 1.0
    table = {r["case"]: r for r in _load_table(client, child.info.run_id, "cases.json", tmp_path)}
    assert "MissingCaseField" in table["berlin"]["evaluator_errors"]
    assert "RuntimeError" in table["rome"]["evaluator_errors"]

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    key = f"wtb-{name}-comparison".replace("_", "-")
    with get_client(sync_client=True) as prefect_client:
        (artifact,) = prefect_client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert data[0]["strict errors"] == 1 and data[0]["fragile errors"] == 1


def test_cli_run_of_a_case_without_expected_completes_and_names_the_missing_field(ray_cluster, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(
        app,
        ["run", "examples.quickstart.project:build_project", "--case", '{"query": "How does Ray schedule tasks?"}'],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert ": completed" in result.output
    assert "evaluator answer_hit gave no score" in result.output
    assert "has no 'expected'" in result.output
