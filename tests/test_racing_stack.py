"""Racing on the real stack: a batch raced through Prefect and Ray, against the same batch in full.

The project (:mod:`tests.graphs.raced_qa`) has a baseline that always answers
right, a variant wrong on every sixth case and one that is always wrong; the
race (goal baseline) drops the wrong one after a few rounds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.graphs import raced_qa
from tests.test_control import REPO, _name, wait_for
from wtb_prefect.analysis.comparison import RegressionError
from wtb_prefect.batch.gate import artifact_key
from wtb_prefect.batch.race import prepare_race, run_race
from wtb_prefect.errors import ConfigError
from wtb_prefect.results import ExecutionResult, NodeRecord

CASES = 24
BASE = "answerer=right"
RACE = {
    "goal": "baseline",
    "baseline": BASE,
    "primary_metric": "answer_hit",
    "epsilon": 0.1,
    "min_cases": 3,
    "seed": 1,
}
GATE = {"baseline": BASE, "tolerances": {"answer_hit": 0.05}}
PARALLELISM = 4


class _Offline:
    """The same race decided without services: each execution answered by the graph's own answerers."""

    def __init__(self, cases: int) -> None:
        self.labels = [f"answerer={m['answerer']}" for m in raced_qa.MATRIX]
        answer = {
            "right": raced_qa.right_answerer,
            "mostly": raced_qa.mostly_answerer,
            "wrong": raced_qa.wrong_answerer,
        }
        self.items: list[Any] = []
        self.variant_of: dict[str, int] = {}
        self.case_of: dict[str, int] = {}
        self.answers: dict[str, Any] = {}
        for c in range(cases):
            for v, m in enumerate(raced_qa.MATRIX):
                execution_id = f"v{v}-c{c}"
                self.items.append(type("Item", (), {"execution_id": execution_id, "repetition": 0})())
                self.variant_of[execution_id], self.case_of[execution_id] = v, c
                self.answers[execution_id] = answer[m["answerer"]]

    def __call__(self, pairs: list) -> list:
        out = []
        for position, item in pairs:
            v, c = self.variant_of[item.execution_id], self.case_of[item.execution_id]
            hit = self.answers[item.execution_id]({"n": c, "document": f"answer-{c}"})["answer"] == f"answer-{c}"
            out.append(
                (
                    position,
                    ExecutionResult(
                        execution_id=item.execution_id,
                        project="p",
                        variant={},
                        variant_label=self.labels[v],
                        status="completed",
                        initial_state={},
                        nodes=[NodeRecord("answerer", "impl", "1", 0.0, 0.1, "completed", run_s=0.1)] * 2,
                        case_id=f"c{c}",
                        scores={"answer_hit": float(hit)},
                    ),
                )
            )
        return out


def _offline_outcome() -> dict[str, Any]:
    offline = _Offline(CASES)
    race = prepare_race(
        RACE,
        labels=offline.labels,
        evaluators=["answer_hit"],
        cases=CASES,
        repetitions=1,
        concurrency=PARALLELISM,
    )
    assert race is not None
    run_race(race, offline.items, offline.variant_of, offline.case_of, 1, offline)
    return race.outcome


def _shape(outcome: dict[str, Any]) -> list[tuple]:
    return [(v["variant"], v["status"], v["verdict"], v["cases"], v["dropped_after"]) for v in outcome["verdicts"]]


def _task_runs(flow_run_id: str, ids: set[str], timeout: float = 90.0) -> dict[str, Any]:
    """The flow run's task runs, by id, once the server has every one of ``ids`` with its start time
    (it records them from events, asynchronously)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])), limit=200
            )
            started = {str(r.id): r for r in runs if r.start_time is not None}
            if ids <= set(started) or time.monotonic() > deadline:
                return {str(r.id): r for r in runs}
            time.sleep(0.5)


def test_a_race_drops_the_worse_variant_and_runs_nothing_of_it_after(bench):
    name = _name("raced")
    bench.register_project(raced_qa.make_project(name))
    cases = raced_qa.cases(CASES)
    with pytest.raises(RegressionError) as failed_gate:
        bench.run_batch_test(name, raced_qa.MATRIX, cases, parallelism=PARALLELISM, regression_gate=GATE)
    full = failed_gate.value.batch
    assert {r.variant for r in failed_gate.value.regressions} == {"answerer=mostly", "answerer=wrong"}

    raced = bench.run_batch_test(name, raced_qa.MATRIX, cases, parallelism=PARALLELISM, regression_gate=GATE, race=RACE)
    race = raced.tracking["race"]
    assert _shape(race) == _shape(_offline_outcome())  # the live race took the decisions the policy takes
    verdicts = {v["variant"]: v for v in race["verdicts"]}
    wrong = verdicts["answerer=wrong"]
    assert wrong["status"] == "dropped" and wrong["verdict"].startswith(f"worse than {BASE} (dropped after")
    dropped_after = wrong["dropped_after"]
    assert dropped_after < CASES
    assert verdicts["answerer=mostly"]["status"] == "undecided"
    order = [f"c{i}" for i in race["order"]]

    # what ran: every case for the others, the first cases of the order for the dropped variant
    ran = {(r.variant_label, r.case_id) for r in raced}
    assert {c for v, c in ran if v == "answerer=wrong"} == set(order[:dropped_after])
    assert {c for v, c in ran if v == BASE} == set(order)
    # and each (variant, case) that ran gave what the full batch gave
    full_by_cell = {(r.variant_label, r.case_id): r for r in full}
    for result in raced:
        same = full_by_cell[(result.variant_label, result.case_id)]
        assert (result.status, result.scores, result.final_state["answer"]) == (
            same.status,
            same.scores,
            same.final_state["answer"],
        )
    # the retriever, shared by every variant of a case, was still computed once per case
    retrievals = [n.reuse for r in raced for n in r.nodes if n.node == "retriever"]
    assert retrievals.count("computed") == CASES and retrievals.count("shared") == len(raced) - CASES

    # the Prefect server's record: no task run of the dropped variant started after the round that dropped it
    task_run_of = {n.task_run_id: r for r in raced for n in r.nodes}
    assert None not in task_run_of
    runs = _task_runs(raced.flow_run_id, set(task_run_of))
    assert set(runs) == set(task_run_of), sorted(runs[i].name for i in set(runs) - set(task_run_of))
    of_wrong = [runs[i] for i, r in task_run_of.items() if r.variant_label == "answerer=wrong"]
    assert len(of_wrong) == 2 * dropped_after
    later_cases = set(order[dropped_after:])
    later = [runs[i] for i, r in task_run_of.items() if r.case_id in later_cases]
    assert later and max(r.start_time for r in of_wrong) < min(r.start_time for r in later)

    # the decision's cost against the full matrix's
    cost = race["cost"]
    assert cost["node_calls"] == 2 * len(raced) < cost["full_node_calls"] == 2 * len(full)
    assert cost["executions"] == len(raced) < cost["full_executions"] == len(full)

    # the gate judged decided verdicts only: neither the dropped nor the undecided variant failed it
    assert raced.tracking["regressions"] == []
    gate = raced.tracking["gate"]
    assert gate["gated"] == "decided race verdicts only"
    assert set(gate["not_gated"]) == {"answerer=wrong", "answerer=mostly"}
    assert gate["not_gated"]["answerer=wrong"].startswith("dropped: worse than")

    # the race table where the batch's other results are: the Prefect UI and the MLflow parent run
    from mlflow import MlflowClient
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        (artifact,) = client.read_latest_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(name, "race")]))
        )
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert {r["variant"]: r["dropped after"] for r in rows}["answerer=wrong"] == f"{dropped_after} cases"
    # each variant's confidence sequence against the baseline: in the table at the last look, and plotted
    sequences = {s["variant"]: s for s in race["sequences"]}
    assert set(sequences) == {"answerer=wrong", "answerer=mostly"}
    assert [f"c{c}" for c in sequences["answerer=wrong"]["cases"]] == order[:dropped_after]
    assert sequences["answerer=wrong"]["upper"][-1] < 0  # shown worse than the baseline when it was dropped
    sequence_cell = {r["variant"]: r[f"minus {BASE} (sequence)"] for r in rows}["answerer=wrong"]
    assert sequence_cell.startswith("-1.000 [") and sequence_cell.endswith(f"after {dropped_after}")
    assert Path(race["plot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and race["plot"] in artifact.description
    assert f"{cost['node_calls']} node calls of the full matrix's {cost['full_node_calls']}" in artifact.description
    tracked = raced.tracking["mlflow"]
    mlflow = MlflowClient(tracked["tracking_uri"])
    parent = mlflow.get_run(tracked["parent_run_id"])
    assert parent.data.metrics["race.node_calls"] == cost["node_calls"]
    assert parent.data.metrics["race.full_node_calls"] == cost["full_node_calls"]
    assert "race.png" in {a.path for a in mlflow.list_artifacts(tracked["parent_run_id"])}
    wrong_run = mlflow.get_run(tracked["child_run_ids"]["answerer=wrong"])
    assert wrong_run.data.tags["race.verdict"] == f"dropped: {wrong['verdict']}"
    # and in the batch's report: the race's section with its cost and its plot inside the page
    report = Path(raced.tracking["report"]).read_text()
    assert "<h2 id='race'>Race</h2>" in report and "id='race-plot'" in report
    assert f"{cost['node_calls']} node calls of the full matrix&#x27;s {cost['full_node_calls']}" in report


@pytest.mark.parametrize(
    ("matrix", "race", "field"),
    [
        (raced_qa.MATRIX, {"primary_metric": "answer_hits"}, "race.primary_metric"),
        (raced_qa.MATRIX, {"alpha": 1.0}, "race.alpha"),
        (raced_qa.MATRIX, {"alpha": 0}, "race.alpha"),
        (raced_qa.MATRIX, {"epsilon": -0.01}, "race.epsilon"),
        (raced_qa.MATRIX[:1], {}, "race"),
    ],
)
def test_a_bad_race_fails_before_any_work(bench, matrix, race, field):
    name = _name("raced_bad")
    bench.register_project(raced_qa.make_project(name))
    with pytest.raises(ConfigError) as info:
        bench.run_batch_test(name, matrix, raced_qa.cases(4), race=race)
    assert info.value.field == field
    assert bench.list_batches(name) == []  # nothing was indexed, so nothing ran


DRIVER = """
from tests.graphs import raced_qa
from wtb_prefect import WTBTestBench

bench = WTBTestBench()
bench.register_project(raced_qa.make_project({name!r}))
bench.run_batch_test({name!r}, raced_qa.MATRIX, raced_qa.cases({cases}, {hold!r}), parallelism={parallelism},
                     race={race!r})
print("race finished")
"""


def test_resuming_a_killed_race_continues_it(bench, tmp_path: Path):
    name = _name("raced_kill")
    bench.register_project(raced_qa.make_project(name))
    expected = _offline_outcome()
    order = expected["order"]
    dropped_after = next(v["dropped_after"] for v in expected["verdicts"] if v["variant"] == "answerer=wrong")
    held = order[dropped_after + 2]  # a case of a round after the drop: the driver dies inside it
    gate = tmp_path / "open"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    code = DRIVER.format(name=name, cases=CASES, hold={held: str(gate)}, parallelism=PARALLELISM, race=RACE)
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_for(
                lambda: Path(str(gate) + ".reached").exists(), timeout=300, what="the driver to reach the held case"
            )
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(30)
        finally:
            if driver.poll() is None:
                driver.kill()
    assert driver.returncode == -signal.SIGKILL, (tmp_path / "driver.log").read_text()[-3000:]

    (record,) = bench.list_batches(name)
    before = {r.execution_id: r for r in bench.list_executions(batch_id=record.batch_id)}
    finished = {i for i, r in before.items() if r.status == "completed"}
    assert finished and len(finished) < len(before)
    started_before = {i: bench.get_result(i).started_at for i in finished}

    gate.touch()  # the held answerers may finish now
    resumed = bench.run_batch_test(name, resume=record.batch_id)
    race = resumed.tracking["race"]
    assert _shape(race) == _shape(expected)  # the same race, gone on where it stopped
    for result in resumed:
        if result.execution_id in started_before:  # finished before the kill: not run again
            assert result.started_at == started_before[result.execution_id]
    ran = [r for r in resumed if r.variant_label == "answerer=wrong"]
    assert len(ran) == dropped_after  # the dropped variant started nothing after its drop, before or after the kill
    assert race["cost"]["executions"] == len(resumed) < race["cost"]["full_executions"]


def test_wtb_batch_races_from_the_command_line(ray_cluster, monkeypatch):
    from typer.testing import CliRunner

    from wtb_prefect.cli import app

    monkeypatch.setenv("COLUMNS", "250")
    spec = ",".join(f"{k}={v}" for k, v in RACE.items() if k != "goal") + ",baseline"
    result = CliRunner().invoke(
        app,
        [
            "batch",
            "tests.graphs.raced_qa:project",
            "--cases",
            json.dumps(raced_qa.cases(CASES)),
            "--matrix",
            json.dumps(raced_qa.MATRIX),
            "--parallelism",
            str(PARALLELISM),
            "--race",
            spec,
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "race on answer_hit (goal baseline, alpha 0.05, epsilon 0.1; anytime-valid verdicts" in result.output
    dropped_after = next(v["dropped_after"] for v in _offline_outcome()["verdicts"] if v["variant"] == "answerer=wrong")
    assert f"{dropped_after} cases" in result.output and "worse than answerer=right" in result.output
    assert "node calls of the full matrix's 144" in result.output
