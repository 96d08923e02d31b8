"""Where cost shows: execution metrics, batch.summary(), batch.cost(), and the CLI's --budget / --estimate.

Unit tests: results are built by hand (as the dispatcher books them), and the
CLI commands here stop before any service starts.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from wtb_prefect.analysis.batch_result import BatchTestResult
from wtb_prefect.cli import app
from wtb_prefect.results import ExecutionResult, NodeRecord
from wtb_prefect.run.spend import SpendLedger

MINI = {"gpt-4o-mini": {"input": 1000, "output": 500, "cache_read": 200, "reasoning": 100, "calls": 1}}


def _node(node: str, usage: Any = None, saved: Any = None, reuse: str = "computed") -> NodeRecord:
    record = NodeRecord(node, f"m.{node}", "v1", 0.0, 0.1, "completed", usage=usage, saved_usage=saved, reuse=reuse)
    SpendLedger().book("e", record)
    return record


def _result(label: str, case: str, nodes: list[NodeRecord], status: str = "completed") -> ExecutionResult:
    return ExecutionResult(f"{label}-{case}", "p", {}, label, status, {}, nodes=nodes, case_id=case)  # type: ignore[arg-type]


def test_metrics_carry_cost_and_tokens_in_total_and_per_node() -> None:
    result = _result("a", "c0", [_node("plan", MINI), _node("answer", MINI), _node("tool")])
    m = result.metrics
    one = (800 * 0.15 + 200 * 0.075 + 500 * 0.60) / 1e6
    assert m["cost_usd"] == m["node.plan.cost_usd"] + m["node.answer.cost_usd"] == 2 * one
    assert (m["tokens.input"], m["tokens.output"], m["tokens.cache_read"], m["tokens.reasoning"]) == (
        2000,
        1000,
        400,
        200,
    )
    assert m["llm_calls"] == 2 and m["node.plan.tokens.input"] == 1000 and "node.tool.cost_usd" not in m
    assert "cost_usd" not in _result("a", "c1", [_node("tool")]).metrics  # no model call: no cost column
    assert result.row()["cost_usd"] == round(2 * one, 6)


def test_summary_and_cost_give_dollars_per_case_and_per_passed_case_and_what_sharing_saved() -> None:
    one = (800 * 0.15 + 200 * 0.075 + 500 * 0.60) / 1e6
    batch = BatchTestResult(
        "b1",
        "p",
        [
            _result("base", "c0", [_node("plan", MINI)]),
            _result("base", "c1", [_node("plan", MINI)], status="failed"),
            _result("other", "c0", [_node("plan", saved=MINI, reuse="shared"), _node("answer", MINI)]),
            _result("other", "c1", [_node("plan", saved=MINI, reuse="shared"), _node("answer", MINI)]),
        ],
        tracking={"cost": {"outcome": "completed", "budget_usd": None}},
    )
    rows = {row["variant"]: row for row in batch.summary()}
    assert rows["base"]["usd_per_case"] == round(one, 6) and rows["base"]["usd_per_passed_case"] == round(2 * one, 6)
    assert rows["other"]["saved_usd"] == round(2 * one, 6) and rows["other"]["spent_usd"] == round(2 * one, 6)
    cost = batch.cost()
    assert cost["spent_usd"] == 4 * one and cost["saved_usd"] == 2 * one and cost["outcome"] == "completed"
    assert cost["by_variant"]["base"]["usd_per_passed_case"] == 2 * one


@pytest.mark.parametrize("budget", ["-3", "five"])
def test_cli_refuses_a_bad_budget_before_any_work(budget: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import wtb_prefect.cli.runs as runs

    def no_work(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the bad budget must be refused before Ray is joined or a project loaded")

    monkeypatch.setattr(runs, "join_ray_early", no_work)
    monkeypatch.setattr(runs, "load_project", no_work)
    out = CliRunner().invoke(
        app,
        ["batch", "tests.graphs.llm_costed:project", "--cases", json.dumps([{"question": "q"}]), "--budget", budget],
    )
    assert out.exit_code == 2 and "--budget" in out.output and "not an amount of dollars" in out.output


def test_cli_passes_its_budget_to_the_batch_and_names_the_budget_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's side of ``--budget``; what a budget does to a real batch is tested in test_cost.py."""
    import wtb_prefect.cli.runs as runs

    asked: dict[str, Any] = {}
    stopped = {"spent_usd": 0.0021, "saved_usd": 0.0, "budget_usd": 0.002, "outcome": "budget_exceeded"}
    stopped.update({"batch_id": "b7", "finished": 1, "stopped": ["e2"], "not_started": 3})

    class Bench:
        def run_batch_test(self, **kwargs: Any) -> BatchTestResult:
            asked.update(kwargs)
            results = [_result("default", "c0", [_node("plan", MINI)])]
            return BatchTestResult("b7", "costed", results, tracking={"cost": stopped})

    monkeypatch.setattr(runs, "join_ray_early", lambda: None)  # no Ray: the batch is the stand-in above
    monkeypatch.setattr(runs, "bench_with", lambda *projects: Bench())
    cases = json.dumps([{"question": "q"}])
    out = CliRunner().invoke(app, ["batch", "tests.graphs.llm_costed:project", "--cases", cases, "--budget", "0.002"])
    assert out.exit_code == 0, out.output
    assert asked["budget_usd"] == 0.002
    text = " ".join(out.output.split())  # rich wraps long lines
    assert "(budget $0.0020)" in text and "budget_exceeded: batch b7 stopped at its budget" in text
    assert "--resume b7 --budget" in text


def test_cli_estimate_runs_nothing_and_names_the_nodes_without_history() -> None:
    cases = json.dumps([{"base_url": "http://127.0.0.1:9/v1", "question": "q"}])
    out = CliRunner().invoke(
        app,
        [
            "batch",
            "tests.graphs.llm_costed:project",
            "--cases",
            cases,
            "--matrix",
            '[{}, {"draft": "long"}]',
            "--estimate",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "estimated cost" in out.output and "no history" in out.output
    for node in ("plan", "draft", "polish", "agent"):
        assert node in out.output


YAML = """\
name: costed_yaml
workflow:
  module: tests.graphs.llm_costed
  factory: pipeline
  state_schema: tests.graphs.llm_costed.Doc
execution:
  budget_usd: {budget}
  max_cost_per_execution: 0.5
  prices:
    house-model: {{input: 0.1, output: 0.4}}
"""


def test_prices_and_budgets_come_from_project_yaml_and_bad_ones_are_typed_errors(tmp_path: Any) -> None:
    from wtb_prefect import WorkflowProject
    from wtb_prefect.errors import WTBError
    from wtb_prefect.run.spend import build_ledger

    path = tmp_path / "p.yaml"
    path.write_text(YAML.format(budget=2.5))
    project = WorkflowProject.from_yaml(path)
    ledger = build_ledger(project.execution)
    assert (ledger.budget_usd, ledger.max_cost_per_execution) == (2.5, 0.5)
    assert ledger.prices.price("house-model").output == 0.4 and ledger.prices.price("gpt-4o") is not None
    assert build_ledger(project.execution, budget_usd="7").budget_usd == 7.0  # run_batch_test / --budget win
    path.write_text(YAML.format(budget=-1))
    with pytest.raises(WTBError, match="budget_usd"):
        WorkflowProject.from_yaml(path)


def test_the_prefect_summary_artifact_says_what_was_spent_saved_and_how_the_budget_ended() -> None:
    from wtb_prefect.integrations.summary import summary_markdown

    results = [_result("default", f"c{i}", [_node("plan", MINI)]) for i in range(3)]
    cost = {"spent_usd": 0.0013, "saved_usd": 0.0002, "budget_usd": 0.001, "outcome": "budget_exceeded"}
    text = summary_markdown(BatchTestResult("b", "p", results, tracking={"cost": cost}), [], None, "default")
    assert "spent $0.0013 · saved $0.0002" in text and "budget_exceeded" in text
    assert "cost $" in text  # the one-glance table's cost column
