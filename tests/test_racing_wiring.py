"""Racing reaches every way of starting a batch, without services: plan, flow parameters, YAML, CLI, gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.graphs import raced_qa
from wtb_prefect import WorkflowProject
from wtb_prefect.analysis.batch_result import BatchTestResult
from wtb_prefect.analysis.comparison import RegressionError
from wtb_prefect.batch.gate import enforce_regression_gate, race_not_gated
from wtb_prefect.batch.plan import prepare_batch
from wtb_prefect.cli.race import parse_race_spec, race_from_options
from wtb_prefect.config import ExecutionConfig, RaceConfig
from wtb_prefect.define.yaml_io import ProjectFileError
from wtb_prefect.errors import ConfigError
from wtb_prefect.results import ExecutionResult


def _project(name: str = "raced_unit", **execution: object) -> WorkflowProject:
    project = raced_qa.make_project(name)
    project.execution = ExecutionConfig(batch_executor="threadpool", **execution)
    return project


def test_a_plan_carries_its_race_and_the_flow_parameters_name_it() -> None:
    plan = prepare_batch(_project(), raced_qa.MATRIX, raced_qa.cases(6), race={"primary_metric": "answer_hit"})
    assert plan.race is not None and plan.race.metric == "answer_hit"
    assert sorted(plan.race.order) == list(range(6))
    assert plan.flow_parameters()["race"] == {"primary_metric": "answer_hit"}
    assert "race" not in prepare_batch(_project(), raced_qa.MATRIX, raced_qa.cases(6)).flow_parameters()


@pytest.mark.parametrize(
    ("matrix", "race", "field"),
    [
        (raced_qa.MATRIX, {"primary_metric": "answer_hits"}, "race.primary_metric"),
        (raced_qa.MATRIX, {"alpha": 1.5}, "race.alpha"),
        (raced_qa.MATRIX, RaceConfig.model_construct(alpha=0.0), "race.alpha"),
        (raced_qa.MATRIX, {"epsilon": -1}, "race.epsilon"),
        (raced_qa.MATRIX[:1], {}, "race"),
        (raced_qa.MATRIX, "fast", "race"),
    ],
)
def test_prepare_batch_refuses_a_bad_race(matrix, race, field) -> None:
    with pytest.raises(ConfigError) as info:
        prepare_batch(_project(), matrix, raced_qa.cases(4), race=race)
    assert info.value.field == field


def test_the_projects_default_race_applies_to_batches_with_variants_to_race() -> None:
    project = _project(race=RaceConfig(primary_metric="answer_hit", epsilon=0.1))
    assert prepare_batch(project, raced_qa.MATRIX, raced_qa.cases(4)).race is not None
    assert prepare_batch(project, raced_qa.MATRIX[:1], raced_qa.cases(4)).race is None  # one variant: nothing to race


PROJECT_YAML = """\
name: raced_yaml
workflow: {module: tests.graphs.raced_qa, factory: graph, state_schema: tests.graphs.raced_qa.RacedState}
evaluators:
  - {name: answer_hit, module: tests.graphs.raced_qa, function: answer_hit}
"""


def test_the_yaml_race_section_is_the_projects_default_race(tmp_path: Path) -> None:
    path = tmp_path / "project.yaml"
    path.write_text(PROJECT_YAML + "race: {primary_metric: answer_hit, alpha: 0.1, epsilon: 0.05}\n")
    project = WorkflowProject.from_yaml(path)
    assert project.execution.race == RaceConfig(primary_metric="answer_hit", alpha=0.1, epsilon=0.05)
    text = project.to_yaml()
    assert "race:" in text and "execution:" not in text  # written back as its own section
    again = tmp_path / "again.yaml"
    again.write_text(text)
    assert WorkflowProject.from_yaml(again).execution.race == project.execution.race


@pytest.mark.parametrize(
    "section",
    [
        "race: {alpha: 2}\n",
        "race: {metric: answer_hit}\n",
        "race: {alpha: 0.1}\nexecution: {race: {alpha: 0.2}}\n",
    ],
)
def test_a_bad_yaml_race_names_the_file_and_the_key(tmp_path: Path, section: str) -> None:
    path = tmp_path / "project.yaml"
    path.write_text(PROJECT_YAML + section)
    with pytest.raises(ProjectFileError, match="race"):
        WorkflowProject.from_yaml(path)


def test_the_cli_race_spec() -> None:
    assert parse_race_spec("best") == {"goal": "best"}
    assert parse_race_spec("baseline,metric=answer_hit,alpha=0.1,max_cases=50,seed=3") == {
        "goal": "baseline",
        "primary_metric": "answer_hit",
        "alpha": 0.1,
        "max_cases": 50,
        "seed": 3,
    }
    assert race_from_options(None, None, None, None) is None
    assert race_from_options(None, "answer_hit", None, 0.05) == {"primary_metric": "answer_hit", "epsilon": 0.05}
    assert race_from_options("on", None, 0.01, None) == {"alpha": 0.01}
    with pytest.raises(ValueError, match="neither a goal"):
        parse_race_spec("fastest")
    with pytest.raises(ValueError, match="not a number"):
        parse_race_spec("alpha=low")


def _result(label: str, case: int, hit: float) -> ExecutionResult:
    return ExecutionResult(
        execution_id=f"{label}-{case}",
        project="p",
        variant={"answerer": label},
        variant_label=label,
        status="completed",
        initial_state={},
        nodes=[],
        case_id=f"c{case}",
        scores={"answer_hit": hit},
    )


def _race(**status: str) -> dict:
    return {"verdicts": [{"variant": v, "status": s, "verdict": f"{s} verdict"} for v, s in status.items()]}


def test_the_gate_judges_decided_race_verdicts_only() -> None:
    results = [_result("base", c, 1.0) for c in range(8)]
    results += [_result("worse", c, 0.0) for c in range(4)]  # dropped after 4 cases
    results += [_result("unsure", c, 0.5) for c in range(8)]  # undecided when the cases ran out
    results += [_result("decided", c, 0.5) for c in range(8)]  # settled against the baseline
    batch = BatchTestResult(batch_id="b", project="p", results=results)
    with pytest.raises(RegressionError) as info:  # unraced, all three regress
        enforce_regression_gate(batch, "base", {"answer_hit": 0.05})
    assert {r.variant for r in info.value.regressions} == {"worse", "unsure", "decided"}

    batch.tracking["race"] = _race(base="baseline", worse="dropped", unsure="undecided", decided="decided")
    assert set(race_not_gated(batch.tracking["race"])) == {"worse", "unsure"}
    with pytest.raises(RegressionError) as info:
        enforce_regression_gate(batch, "base", {"answer_hit": 0.05})
    assert [r.variant for r in info.value.regressions] == ["decided"]  # only the decided verdict counts
    assert batch.tracking["gate"] == {
        "gated": "decided race verdicts only",
        "not_gated": {"worse": "dropped: dropped verdict", "unsure": "undecided: undecided verdict"},
    }


def test_a_bad_race_spec_exits_2_before_anything_starts(monkeypatch) -> None:
    from typer.testing import CliRunner

    from wtb_prefect.cli import EXIT_BAD_INPUT, app

    monkeypatch.setenv("COLUMNS", "250")
    result = CliRunner().invoke(
        app, ["batch", "tests.graphs.raced_qa:project", "--cases", "[]", "--race", "fastest"], catch_exceptions=False
    )
    assert result.exit_code == EXIT_BAD_INPUT
    assert "--race" in result.output and "neither a goal" in result.output


def test_the_race_books_dollars_only_when_model_calls_were_priced() -> None:
    from wtb_prefect.batch.race import prepare_race, run_race
    from wtb_prefect.results import NodeRecord

    labels = ["a", "b"]

    def runs(priced: bool):
        def run(pairs: list) -> list:
            out = []
            for position, item in pairs:
                v = int(item.execution_id[1])
                node = NodeRecord("answer", "impl", "1", 0.0, 0.1, "completed", run_s=0.1)
                if priced:
                    node.usage, node.cost_usd = {"gpt": {"input": 10}}, 0.01 * (v + 1)
                result = _result(labels[v], int(item.execution_id.split("c")[1]), 1.0)
                result.nodes, result.execution_id = [node], item.execution_id
                out.append((position, result))
            return out

        return run

    items = [type("I", (), {"execution_id": f"v{v}c{c}", "repetition": 0})() for c in range(20) for v in range(2)]
    variant_of = {i.execution_id: int(i.execution_id[1]) for i in items}
    case_of = {i.execution_id: int(i.execution_id.split("c")[1]) for i in items}
    for priced in (False, True):
        race = prepare_race({"max_cases": 20}, labels=labels, evaluators=[], cases=20, repetitions=1, concurrency=2)
        run_race(race, items, variant_of, case_of, 1, runs(priced))
        cost = race.outcome["cost"]
        if priced:
            ran = {v["variant"]: v["cases"] for v in race.outcome["verdicts"]}
            assert cost["dollars"] == pytest.approx(0.01 * ran["a"] + 0.02 * ran["b"])
            assert cost["full_dollars"] == pytest.approx(0.6)  # 20 cases of each, at each one's cost
        else:
            assert "dollars" not in cost  # nothing priced: no dollar figure rather than a false zero
