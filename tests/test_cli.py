"""The `wtb` CLI: exit codes, bad input, and real runs on the session's Prefect server and Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wtb_prefect.cli import EXIT_BAD_INPUT, EXIT_FAILED, app

QUICKSTART = "examples.quickstart.project:build_project"
RAY_CASE = {"query": "How does Ray schedule tasks with CPUs and GPUs?", "expected": "ray"}
MLFLOW_CASE = {"query": "Which tool tracks experiment metrics and parameters?", "expected": "mlflow"}


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


FAILING_PROJECT = """\
name: failing_rag
workflow: {module: tests.graphs.langgraph_features, factory: rag_graph, state_schema: tests.graphs.langgraph_features.RAGState}
variants:
  nodes:
    retriever:
      - {name: boom, module: tests.graphs.langgraph_features, function: failing_node}
"""


# ─── bad input: exit 2, nothing runs ───


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "no_such_pkg.mod:build", "--case", "{}"], "cannot import"),
        (["run", QUICKSTART, "--case", "[1, 2]"], "one initial state"),
        (["run", QUICKSTART, "--case", "{not json"], "not valid JSON"),
        (["run", QUICKSTART, "--case", "missing/case.json"], "neither inline JSON"),
        (["run", QUICKSTART, "--case", json.dumps(RAY_CASE), "--variant", "retriever"], "NODE=VARIANT"),
        (["run", QUICKSTART, "--case", json.dumps(RAY_CASE), "--variant", "retriever=nope"], "no variant 'nope'"),
        (["run", QUICKSTART, "--case", '{"qwery": "x"}'], "qwery"),
        (["batch", QUICKSTART, "--cases", "[]"], "test_cases"),
        (["batch", QUICKSTART, "--cases", json.dumps([RAY_CASE]), "--matrix", '[{"generator": "x"}]'], "no variant"),
        (["batch", "missing_project.yaml", "--cases", json.dumps([RAY_CASE])], "does not exist"),
        (["projects", "examples.quickstart.project:TEST_CASES"], "not a WorkflowProject"),
        (["inspect", "no-such-execution"], "no-such-execution"),
        (["batch", QUICKSTART, "--cases", json.dumps([RAY_CASE]), "--tolerance", "nope=0.1"], "not a metric"),
        (["batch", QUICKSTART, "--cases", json.dumps([RAY_CASE]), "--tolerance", "answer_hit"], "METRIC=AMOUNT"),
    ],
    ids=[
        "unknown module",
        "case not an object",
        "case not JSON",
        "case file missing",
        "variant format",
        "unknown variant",
        "case not in schema",
        "empty cases",
        "unknown variant in matrix",
        "missing YAML",
        "reference to a non-project",
        "unknown execution",
        "unknown gate metric",
        "tolerance format",
    ],
)
def test_bad_input_exits_2_with_the_reason(cli, args: list[str], words: str) -> None:
    result = cli(*args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    assert "error:" in result.output and words in result.output


def test_bad_yaml_project_names_file_key_and_line(cli, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: p\nworkflow: {module: tests.graphs.langgraph_features, factory: rag_graph}\nexecution:\n  ray: {adress: auto}\n"
    )
    result = cli("projects", str(path))
    assert result.exit_code == EXIT_BAD_INPUT
    assert "line 4" in result.output and "execution.ray.adress" in result.output


def test_projects_shows_variants_and_remembers(cli) -> None:
    shown = cli("projects", QUICKSTART)
    assert shown.exit_code == 0, shown.output
    assert "retriever" in shown.output and "name_match" in shown.output and "with_reranker" in shown.output
    listed = cli("projects")
    assert listed.exit_code == 0
    assert "quickstart_qa" in listed.output and QUICKSTART in listed.output


# ─── real runs ───


@pytest.mark.integration
def test_batch_prints_progress_and_comparison(cli, ray_cluster, tmp_path: Path) -> None:
    (tmp_path / "matrix.yaml").write_text("- {}\n- {retriever: name_match}\n")
    (tmp_path / "cases.json").write_text(json.dumps([RAY_CASE, MLFLOW_CASE]))
    out = tmp_path / "rows.json"
    result = cli(
        "batch",
        QUICKSTART,
        "--matrix",
        str(tmp_path / "matrix.yaml"),
        "--cases",
        str(tmp_path / "cases.json"),
        "--output",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "4/4" in result.output  # the progress bar's last state
    assert "retriever=name_match" in result.output and "default" in result.output  # comparison table
    rows = json.loads(out.read_text())
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    # name_match finds nothing for a query that names no tool: the evaluator scores it 0
    by_key = {(r["variant"], r["case"]): r for r in rows}
    assert [r["answer_hit"] for k, r in sorted(by_key.items()) if k[0] == "retriever=name_match"].count(0.0) == 1


@pytest.mark.integration
def test_run_then_inspect_rollback_resume(cli, ray_cluster) -> None:
    result = cli("run", QUICKSTART, "--case", json.dumps(RAY_CASE), "--variant", "retriever=name_match")
    assert result.exit_code == 0, result.output
    assert "Ray schedules Python tasks" in result.output
    execution_id = next(
        line.split()[1].rstrip(":") for line in result.output.splitlines() if line.startswith("execution ")
    )

    listed = cli("executions", "--project", "quickstart_qa")
    assert listed.exit_code == 0 and execution_id in listed.output

    inspected = cli("inspect", execution_id)
    assert inspected.exit_code == 0, inspected.output
    assert "completed" in inspected.output and "checkpoints" in inspected.output
    # the checkpoint after the retriever: a rollback there makes resume run the generator again
    from wtb_prefect.bench import WTBTestBench
    from wtb_prefect.define.registry import resolve_project

    bench = WTBTestBench()
    bench.register_project(resolve_project(QUICKSTART))
    after_retriever = next(cp for cp in bench.get_checkpoints(execution_id) if cp.nodes == ("retriever",))
    rolled = cli("rollback", execution_id, after_retriever.checkpoint_id)
    assert rolled.exit_code == 0, rolled.output
    resumed = cli("resume", execution_id)
    assert resumed.exit_code == 0, resumed.output
    assert "completed" in resumed.output and "generator" in resumed.output


@pytest.mark.integration
def test_failed_execution_exits_1(cli, ray_cluster, tmp_path: Path) -> None:
    path = tmp_path / "failing.yaml"
    path.write_text(FAILING_PROJECT)
    result = cli("run", str(path), "--case", '{"query": "x"}', "--variant", "retriever=boom")
    assert result.exit_code == EXIT_FAILED, result.output
    assert "execution failed" in result.output
    batch = cli("batch", str(path), "--cases", '[{"query": "x"}]', "--matrix", '[{}, {"retriever": "boom"}]')
    assert batch.exit_code == EXIT_FAILED, batch.output
    assert "1 of 2 executions did not complete" in batch.output


@pytest.mark.integration
def test_regression_exits_3(cli, ray_cluster) -> None:
    # name_match finds no document for a query that names no tool: answer_hit drops from 1 to 0
    result = cli(
        "batch",
        QUICKSTART,
        "--cases",
        json.dumps([MLFLOW_CASE]),
        "--matrix",
        '[{}, {"retriever": "name_match"}]',
        "--baseline",
        "default",
        "--tolerance",
        "answer_hit=0.5",
    )
    assert result.exit_code == 3, result.output
    assert "regression" in result.output and "retriever=name_match" in result.output
    passed = cli(
        "batch",
        QUICKSTART,
        "--cases",
        json.dumps([RAY_CASE]),
        "--matrix",
        '[{}, {"retriever": "name_match"}]',
        "--tolerance",
        "answer_hit=0.5",
    )
    assert passed.exit_code == 0, passed.output
    assert "no regression" in passed.output
