"""Scheduled batch deployments: a batch per flow run, one run at a time, each run against the last.

The fast tests check the pieces: batch ids of flow runs created in the same
millisecond, a batch id reused with other inputs, the comparison with the
previous run and the gate that reads it. The integration tests deploy to the
session's real Prefect server with a process worker and a Ray head of their
own (as ``test_deployments`` does): an interval schedule of a few seconds,
two flow runs created at once, and a variant made worse between two runs of a
deployment.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.test_deployments import ray_head as ray_head  # a module fixture: this module's own Ray head
from wtb_prefect.analysis.batch_result import BatchTestResult
from wtb_prefect.analysis.comparison import RegressionError, parse_tolerances
from wtb_prefect.batch.batch_ids import batch_id_for_flow_run, check_batch_id_reuse
from wtb_prefect.batch.gate import _against_previous
from wtb_prefect.batch.previous import PreviousRunComparison, case_rows, compare_rows
from wtb_prefect.errors import BatchIdConflictError
from wtb_prefect.results import ExecutionResult
from wtb_prefect.run.execution_index import ExecutionIndex

# ─── fast: the pieces ───


def _uuid7(milliseconds: int) -> uuid.UUID:
    """A UUIDv7 with this timestamp and random bits (RFC 9562 layout)."""
    value = (milliseconds & (2**48 - 1)) << 80 | 0x7 << 76 | int.from_bytes(os.urandom(10), "big") & (2**76 - 1)
    value = value & ~(0x3 << 62) | 0x2 << 62  # variant bits 10
    return uuid.UUID(int=value)


def test_flow_runs_created_in_the_same_millisecond_get_different_batch_ids() -> None:
    now = int(time.time() * 1000)
    first, second = _uuid7(now), _uuid7(now)
    assert first.version == second.version == 7
    assert first.hex[:12] == second.hex[:12]  # the old batch id: the timestamp, shared
    ids = {batch_id_for_flow_run(first), batch_id_for_flow_run(str(second))}
    assert len(ids) == 2 and all(len(i) == 12 for i in ids)
    assert batch_id_for_flow_run(first) == str(first)[-12:]  # the end of the id the Prefect UI shows
    with pytest.raises(Exception, match="flow_run_id"):
        batch_id_for_flow_run("not-a-uuid")


def test_a_batch_id_reused_with_other_inputs_is_refused(tmp_path: Path) -> None:
    index = ExecutionIndex(tmp_path / "executions.sqlite")
    cases = [{"query": "q1", "expected": "ray"}, {"query": "q2", "expected": "uv"}]
    index.add_batch("abc123", "quickstart_qa", [{}], cases, None)
    index.add_executions(
        {
            "execution_id": f"e{i}",
            "project": "quickstart_qa",
            "batch_id": "abc123",
            "position": i,
            "variant": {},
            "variant_label": "default",
            "case_id": str(i),
            "test_case": case,
        }
        for i, case in enumerate(cases)
    )
    same = dict(project="quickstart_qa", variant_matrix=None, test_cases=cases, repetitions=1)
    assert check_batch_id_reuse(index, "abc123", **same) is True  # the same batch: resumed
    assert check_batch_id_reuse(index, "other1", **same) is False  # a new batch
    with pytest.raises(BatchIdConflictError, match="test_cases") as caught:
        check_batch_id_reuse(index, "abc123", **{**same, "test_cases": cases[:1]})
    assert caught.value.field == "batch_id" and "never merged" in str(caught.value)
    with pytest.raises(BatchIdConflictError, match="variant_matrix, repetitions"):
        check_batch_id_reuse(index, "abc123", **{**same, "variant_matrix": [{"retriever": "x"}], "repetitions": 2})


def _result(variant: str, case: int, hit: float, *, query: str | None = None) -> ExecutionResult:
    return ExecutionResult(
        execution_id=f"{variant}-{case}",
        project="p",
        variant={},
        variant_label=variant,
        status="completed",
        initial_state={"query": query or f"question {case}"},
        case_id=str(case),
        expected="x",
        scores={"answer_hit": hit},
    )


def test_a_variant_made_worse_is_flagged_against_the_previous_run() -> None:
    before = [_result(v, c, 1.0) for c in range(12) for v in ("default", "fast")]
    after = [_result("default", c, 1.0) for c in range(12)] + [_result("fast", c, 0.0) for c in range(12)]
    after += [_result("new", c, 1.0) for c in range(12)]
    comparisons, new = compare_rows(
        case_rows(after, ["success", "answer_hit"]),
        case_rows(before, ["success", "answer_hit"]),
        ["success", "answer_hit"],
    )
    verdicts = {(c.variant, c.metric): c for c in comparisons}
    assert new == ["new"]
    worse = verdicts[("fast", "answer_hit")]
    assert worse.verdict == "worse" and worse.n == 12 and worse.difference == -1.0 and worse.baseline_value == 1.0
    assert verdicts[("default", "answer_hit")].verdict == "no detectable difference"
    assert verdicts[("fast", "success")].verdict == "no detectable difference"

    # the gate with baseline "previous" reads the comparison; without one it passes and says why
    batch = BatchTestResult(batch_id="b2", project="p", results=after)
    batch.tracking["previous"] = PreviousRunComparison(
        flow_run_id="f1", flow_run_name="p-batch-b1", batch_id="b1", comparisons=comparisons
    )
    # (the gate's own enforce() adds its Prefect artifact and raises RegressionError: see the integration test)
    tolerances = parse_tolerances({"answer_hit": 0.05})
    regressions, against = _against_previous(batch, tolerances)
    assert [r.variant for r in regressions] == ["fast"] and against == "previous run p-batch-b1"
    assert "fast: answer_hit 0 vs 1 in previous run p-batch-b1 (change -1" in str(RegressionError(regressions))
    batch.tracking["previous"] = PreviousRunComparison(note="no earlier completed run")
    assert _against_previous(batch, tolerances) == ([], "the previous run (no earlier completed run)")

    # a case whose input changed is another case: it is not paired
    changed = [_result("fast", c, 0.0, query="another question" if c < 3 else None) for c in range(12)]
    comparisons, _ = compare_rows(case_rows(changed, ["answer_hit"]), case_rows(before, ["answer_hit"]), ["answer_hit"])
    assert comparisons[0].n == 9 and len(comparisons[0].only_variant) == 3


def test_summary_shows_the_drift_against_the_previous_run() -> None:
    from wtb_prefect.integrations.previous_run import previous_html, previous_markdown
    from wtb_prefect.integrations.summary import summary_markdown

    before = [_result("fast", c, 1.0) for c in range(10)]
    after = [_result("fast", c, 0.0) for c in range(10)]
    batch = BatchTestResult(batch_id="b2", project="p", results=after)
    assert previous_markdown(batch) == [] and previous_html(batch) == ""  # not a deployment run
    comparisons, _ = compare_rows(case_rows(after, ["answer_hit"]), case_rows(before, ["answer_hit"]), ["answer_hit"])
    batch.tracking["previous"] = PreviousRunComparison(
        flow_run_id="f1", flow_run_name="p-batch-b1", batch_id="b1", comparisons=comparisons
    )
    text = summary_markdown(batch, [], None, "fast")
    assert "**Against the previous run**" in text and "1 worse" in text
    assert "| fast | answer_hit | 10 | 1.000 | 0.000 | -1.000 | ▼ worse |" in text
    assert "Against the previous run" in previous_html(batch) and "p-batch-b1" in previous_html(batch)


def test_the_gate_accepts_previous_with_one_variant() -> None:
    from examples.quickstart.project import build_project
    from wtb_prefect.batch.plan import prepare_batch

    gate = {"baseline": "previous", "tolerances": {"answer_hit": 0.05}}
    plan = prepare_batch(build_project(), [{}], [{"query": "q", "expected": "ray"}], regression_gate=gate)
    assert plan.gate is not None and plan.gate.baseline == "previous"


def test_prefect_yaml_runs_one_batch_of_a_deployment_at_a_time() -> None:
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in config["deployments"]}
    for name in ("quickstart-nightly", "quickstart-on-demand"):
        assert deployments[name]["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}, name
    assert deployments["quickstart-nightly"]["parameters"]["regression_gate"]["baseline"] == "previous"


# ─── integration: a real server, a process worker, Ray ───

REPO = Path(__file__).resolve().parents[1]
EVERY_FEW_SECONDS = "wtb-batch-test/every-few-seconds"
ON_DEMAND = "wtb-batch-test/quickstart-on-demand"
SCHEDULED_MATRIX = [{}, {"retriever": "name_match"}]
SCHEDULED_CASES = [
    {"query": "How does Ray schedule tasks with CPUs and GPUs?", "expected": "ray"},
    {"query": "What does prefect orchestrate?", "expected": "prefect"},
]
# name_match answers each of these (one tool named per question): a variant broken later shows
DRIFT_CASES = [
    {"query": q, "expected": tool}
    for q, tool in [
        ("What does ray do?", "ray"),
        ("What does mlflow track?", "mlflow"),
        ("What is langgraph for?", "langgraph"),
        ("What does dvc version?", "dvc"),
        ("What does prefect orchestrate?", "prefect"),
        ("Tell me about ray clusters", "ray"),
        ("Tell me about mlflow runs", "mlflow"),
        ("Explain langgraph nodes", "langgraph"),
        ("Explain dvc snapshots", "dvc"),
        ("Explain prefect flows", "prefect"),
    ]
]


@pytest.fixture(scope="module")
def scheduled(
    prefect_api: str,
    ray_head: str,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict]:
    """The repo's on-demand deployment and a copy of it for a schedule, deployed, and a process worker."""
    from tests.test_deployments import POOL, _env, _prefect

    work = tmp_path_factory.mktemp("scheduled")
    for folder in ("flows", "deployments", "examples"):
        shutil.copytree(REPO / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    on_demand = next(d for d in config["deployments"] if d["name"] == "quickstart-on-demand")
    every = {
        **on_demand,
        "name": "every-few-seconds",
        "description": "The quick-start batch every 5 seconds (a test of scheduled runs)",
        "parameters": {**on_demand["parameters"], "variant_matrix": SCHEDULED_MATRIX, "test_cases": SCHEDULED_CASES},
    }  # its schedule is made by the test that needs it
    config["deployments"] = [on_demand, every]
    (work / "prefect.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = _env(prefect_api)
    env.update(RAY_ADDRESS=ray_head, RAY_AUTH_MODE="disabled")
    created = _prefect(["work-pool", "create", POOL, "--type", "process", "--overwrite"], work, env)
    assert created.returncode == 0, created.stdout + created.stderr
    deploy = _prefect(["--no-prompt", "deploy", "--all"], work, env, timeout=300)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    log = (work / "worker.log").open("w")
    worker = subprocess.Popen(
        [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", POOL, "--limit", "2"],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield {"work": work, "env": env, "worker": worker, "log": work / "worker.log"}
    finally:
        _stop_schedule(EVERY_FEW_SECONDS)
        try:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        log.close()


def _deployment_runs(name: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))


def _stop_schedule(name: str, timeout: float = 180) -> None:
    """Pause the deployment, cancel the runs it still has scheduled (awaiting a slot included)
    and wait for the one that may be running: the worker's slots are free afterwards."""
    from prefect import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        client.pause_deployment(client.read_deployment_by_name(name).id)
    deadline = time.monotonic() + timeout
    while True:
        open_runs = [r for r in _deployment_runs(name) if r.state is not None and not r.state.is_final()]
        if not open_runs or time.monotonic() > deadline:
            return
        with get_client(sync_client=True) as client:
            for run in open_runs:
                if run.state.is_scheduled():
                    client.set_flow_run_state(run.id, Cancelled(message="the test's schedule stopped"), force=True)
        time.sleep(2)


def _batch_id(run) -> str:
    assert run.name.startswith("quickstart_qa-batch-"), run.name
    return run.name.removeprefix("quickstart_qa-batch-")


def _state_names(flow_run_id) -> list[str]:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return [s.name for s in client.read_flow_run_states(flow_run_id)]


def _mlflow_runs(batch_id: str, kind: str = "batch") -> list:
    from wtb_prefect.integrations.mlflow import mlflow_client, tracking_uri

    client = mlflow_client(tracking_uri())
    experiment = client.get_experiment_by_name("quickstart_qa")
    return client.search_runs(
        [experiment.experiment_id], f"tags.`wtb.batch_id` = '{batch_id}' and tags.`wtb.kind` = '{kind}'"
    )


def _summary(flow_run_id) -> str:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["wtb-quickstart-qa-summary"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    assert artifacts, f"no summary artifact on flow run {flow_run_id}"
    return str(artifacts[0].data)


@pytest.mark.integration
def test_three_scheduled_runs_are_three_batches_each_against_the_last(scheduled: dict) -> None:
    from tests.test_deployments import _prefect
    from wtb_prefect.integrations.report import report_path
    from wtb_prefect.run.execution_index import open_index
    from wtb_prefect.settings import get_settings

    where = (scheduled["work"], scheduled["env"])
    made = _prefect(["deployment", "schedule", "create", EVERY_FEW_SECONDS, "--interval", "5"], *where)
    assert made.returncode == 0, made.stdout + made.stderr
    deadline = time.monotonic() + 480
    while True:
        runs = _deployment_runs(EVERY_FEW_SECONDS)
        done = [r for r in runs if r.state is not None and r.state.is_final()]
        if len(done) >= 3:
            break
        assert time.monotonic() < deadline, [(r.name, r.state_name) for r in runs][:10]
        assert scheduled["worker"].poll() is None, scheduled["log"].read_text()[-3000:]
        time.sleep(3)
    _stop_schedule(EVERY_FEW_SECONDS)
    done = sorted(done, key=lambda r: r.start_time)[:3]
    assert all(r.auto_scheduled for r in done)
    assert all(r.state.is_completed() for r in done), [(r.name, r.state) for r in done]
    batch_ids = [_batch_id(r) for r in done]
    assert len(set(batch_ids)) == 3, batch_ids
    index = open_index(get_settings().state_dir)  # the worker's flow runs share WTB_HOME
    for run, batch_id in zip(done, batch_ids):
        assert batch_id == str(run.id)[-12:]
        executions = index.list(batch_id=batch_id)
        assert len(executions) == len(SCHEDULED_MATRIX) * len(SCHEDULED_CASES), batch_id
        assert {e.status for e in executions} == {"completed"}
        assert {e.flow_run_id for e in executions} == {str(run.id)}
        assert report_path(BatchTestResult(batch_id, "quickstart_qa", [])).is_file(), batch_id
        parents = _mlflow_runs(batch_id)
        assert len(parents) == 1 and parents[0].data.tags["prefect.flow_run_id"] == str(run.id)
    # one at a time: each run started after the one before it ended
    for earlier, later in zip(done, done[1:]):
        assert later.start_time >= earlier.end_time, (earlier.name, later.name)
    # each run compared with the one before it (none before the first)
    first = _mlflow_runs(batch_ids[0])[0].data.tags
    assert "wtb.previous.flow_run_id" not in first, first
    for earlier, later_id in zip(done, batch_ids[1:]):
        tags = _mlflow_runs(later_id)[0].data.tags
        assert tags["wtb.previous.flow_run_id"] == str(earlier.id), tags
    assert f"`{done[1].name}`" in _summary(done[2].id)


@pytest.mark.integration
def test_runs_created_together_get_their_own_batches_and_wait_their_turn(scheduled: dict) -> None:
    """Two flow runs of the on-demand deployment created at once (often in the same millisecond):
    each its own batch id, and the second waits in AwaitingConcurrencySlot until the first ends."""
    from prefect import get_client

    from tests.test_deployments import _wait
    from wtb_prefect.run.execution_index import open_index
    from wtb_prefect.settings import get_settings

    parameters = {"variant_matrix": [{}], "test_cases": SCHEDULED_CASES[:1]}

    async def create_two() -> list:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(ON_DEMAND)
            return await asyncio.gather(
                *(client.create_flow_run_from_deployment(deployment.id, parameters=parameters) for _ in range(2))
            )

    created = asyncio.run(create_two())
    print("flow run ids created together:", [str(r.id) for r in created])
    runs = [_wait(r.id, scheduled, timeout=400) for r in created]
    assert all(r.state.is_completed() for r in runs), [(r.name, r.state) for r in runs]
    batch_ids = [_batch_id(r) for r in runs]
    assert batch_ids[0] != batch_ids[1]
    index = open_index(get_settings().state_dir)
    for run, batch_id in zip(runs, batch_ids):
        executions = index.list(batch_id=batch_id)
        assert len(executions) == 1 and executions[0].flow_run_id == str(run.id)
    first, second = sorted(runs, key=lambda r: r.start_time)
    # due while the first ran (the worker has room for two), it started only once the first had ended
    assert second.expected_start_time < first.end_time
    assert second.start_time >= first.end_time
    # the server turns it back (AwaitingConcurrencySlot) if the worker tried it meanwhile
    print("the second run's states:", _state_names(second.id))


@pytest.mark.integration
def test_a_variant_made_worse_fails_its_run_against_the_previous_run(scheduled: dict) -> None:
    from tests.test_deployments import _run_deployment, _wait
    from wtb_prefect.integrations.report import report_path

    parameters = {
        "variant_matrix": SCHEDULED_MATRIX,
        "test_cases": DRIFT_CASES,
        "regression_gate": {"baseline": "previous", "tolerances": {"answer_hit": 0.05}},
    }
    first = _wait(_run_deployment(scheduled, ON_DEMAND, parameters), scheduled)
    assert first.state.is_completed(), f"{first.state}\n{scheduled['log'].read_text()[-3000:]}"

    module = scheduled["work"] / "examples/quickstart/project.py"
    source = module.read_text()
    good = 'return {"documents": [doc for name, doc in CORPUS.items() if name in query][:2]}'
    assert good in source
    module.write_text(source.replace(good, 'return {"documents": []}'))  # name_match now finds nothing
    try:
        second = _wait(_run_deployment(scheduled, ON_DEMAND, parameters), scheduled)
    finally:
        module.write_text(source)

    # a regressed run ends Failed, with a message an automation (or a person) can match
    assert second.state.is_failed(), second.state
    message = second.state.message
    assert message.startswith("RegressionError: 1 regression(s)"), message
    assert "retriever=name_match: answer_hit 0 vs 1 in previous run " + first.name in message, message
    summary = _summary(second.id)
    assert f"flow run `{first.name}`" in summary and "1 worse" in summary, summary
    assert "| retriever=name_match | answer_hit | 10 | 1.000 | 0.000 | -1.000 | ▼ worse |" in summary, summary
    assert "| default | answer_hit | 10 |" in summary and "= no difference" in summary
    batch_id = _batch_id(second)
    path = report_path(BatchTestResult(batch_id, "quickstart_qa", []))
    assert path.is_file(), summary + "\n" + scheduled["log"].read_text()[-6000:]
    report = path.read_text()
    assert "Against the previous run" in report and first.name in report
    variant = next(r for r in _mlflow_runs(batch_id, "variant") if r.data.tags["wtb.variant"] == "retriever=name_match")
    assert variant.data.metrics["previous.answer_hit.verdict"] == -1.0
    assert variant.data.metrics["previous.answer_hit.change"] == -1.0
    assert variant.data.tags["wtb.previous.batch_id"] == _batch_id(first)

    # the first run's batch id again, with other cases: refused before any work, never merged
    reused = _wait(
        _run_deployment(
            scheduled, ON_DEMAND, {**parameters, "test_cases": DRIFT_CASES[:2], "batch_id": _batch_id(first)}
        ),
        scheduled,
    )
    assert reused.state.is_failed() and reused.state.message.startswith("BatchIdConflictError: batch_id"), reused.state
    assert "test_cases" in reused.state.message and json.dumps(_batch_id(first))[1:-1] in reused.state.message
