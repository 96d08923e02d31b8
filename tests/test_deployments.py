"""End to end: prefect.yaml deployments on a real server, a real process worker and Ray.

Registers the deployments with ``prefect deploy --all``, starts ``prefect worker
start``, runs ``prefect deployment run`` with parameters and checks the flow
run's node task runs and its comparison artifact through the Prefect client.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from wtb_prefect.errors import UnknownProjectError
from wtb_prefect.services.ports import free_port

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
POOL = "wtb-local"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

pytestmark = pytest.mark.integration


def _env(prefect_api: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=prefect_api,
        PREFECT_WORKER_QUERY_SECONDS="2",
        PREFECT_WORKER_PREFETCH_SECONDS="2",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_CLI_COLORS="false",
        COLUMNS="200",
    )
    return env


def _prefect(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PREFECT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _kill_matching(marker: str) -> None:
    """Kill the processes whose command line names ``marker`` (a folder only this module made)."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    for pid in found:
        if int(pid) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A Ray head started with `ray start` for the worker's flow runs to join (RAY_ADDRESS).

    A cluster of its own, outside the test process: the flow runs are other
    processes. On a loaded machine Ray's start-up wait can run out, so
    it is tried five times.
    """
    ray_cli = str(Path(sys.executable).with_name("ray"))
    errors = []
    for _ in range(5):
        temp = tempfile.mkdtemp(prefix="wtbray", dir="/tmp")
        port = free_port()
        started = subprocess.run(
            [
                ray_cli,
                "start",
                "--head",
                f"--port={port}",
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
                f"--temp-dir={temp}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
            # the raylet's default wait for its agents is too short on a loaded machine
            env={**os.environ, "RAY_agent_register_timeout_ms": "300000", "RAY_AUTH_MODE": "disabled"},
        )
        if started.returncode == 0:
            break
        errors.append(started.stdout[-1500:] + started.stderr[-1500:])
        _kill_matching(temp)
        shutil.rmtree(temp, ignore_errors=True)
    else:
        raise AssertionError("ray start failed 5 times:\n" + "\n---\n".join(errors))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _kill_matching(temp)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def deployed(prefect_api: str, ray_head: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A copy of the repo's deployables, deployed with `prefect deploy --all`, and a running worker."""
    work = tmp_path_factory.mktemp("deploy")
    shutil.copy(REPO / "prefect.yaml", work / "prefect.yaml")
    for folder in ("flows", "deployments", "examples", "blocks"):
        shutil.copytree(REPO / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__"))
    env = _env(prefect_api)
    env["RAY_ADDRESS"] = ray_head
    env["RAY_AUTH_MODE"] = "disabled"  # as the head was started: the flow runs join without a token

    created = _prefect(["work-pool", "create", POOL, "--type", "process"], work, env)
    assert created.returncode == 0, created.stdout + created.stderr
    deploy = _prefect(["--no-prompt", "deploy", "--all"], work, env, timeout=300)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    log = (work / "worker.log").open("w")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", POOL, "--limit", "2"],
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
        # the worker and the flow-run processes it started share its process group
        try:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        log.close()


def _run_deployment(deployed: dict, name: str, params: dict, timeout: float = 400) -> str:
    args = ["deployment", "run", name]
    for key, value in params.items():
        args += ["--param", f"{key}={json.dumps(value)}"]
    started = _prefect(args, deployed["work"], deployed["env"])
    assert started.returncode == 0, started.stdout + started.stderr
    return UUID.search(started.stdout).group(0)


def _wait(flow_run_id: str, deployed: dict, timeout: float = 420):
    from prefect import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            assert deployed["worker"].poll() is None, deployed["log"].read_text()[-3000:]
            time.sleep(2)
    raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout}s:\n{deployed['log'].read_text()[-3000:]}")


def _rows(artifact) -> list[dict]:
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def _node(task_run) -> str:
    return task_run.name.split(" | ")[0]


def _task_runs_and_artifacts(flow_run_id: str, expect: int, timeout: float = 120):
    """The flow run's task runs (once ``expect`` of them are recorded: the server records them
    from events, a moment after the flow run ends) and its artifacts."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            done = [t for t in tasks if t.state and t.state.is_final()]
            if len(done) >= expect or time.monotonic() > deadline:
                break
            time.sleep(2)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return tasks, artifacts


def test_deploy_all_registers_the_deployments(deployed: dict) -> None:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        on_demand = client.read_deployment_by_name("wtb-batch-test/quickstart-on-demand")
        nightly = client.read_deployment_by_name("wtb-batch-test/quickstart-nightly")
        single = client.read_deployment_by_name("wtb-run/quickstart-run")
    assert on_demand.work_pool_name == nightly.work_pool_name == single.work_pool_name == POOL
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert not on_demand.schedules
    # one batch of a batch deployment at a time: a run that comes due meanwhile waits its turn
    for batch_deployment in (on_demand, nightly):
        assert batch_deployment.global_concurrency_limit.limit == 1
        assert batch_deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
    # the parameter form the UI shows comes from the flow's typed signature and docstring
    properties = on_demand.parameter_openapi_schema["properties"]
    assert set(properties) == {
        "project",
        "test_cases",
        "variant_matrix",
        "parallelism",
        "regression_gate",
        "resume",
        "batch_id",
        "repetitions",
        "race",
        "budget_usd",
    }
    assert "wtb-project/<block name>" in properties["project"]["description"]
    assert on_demand.parameters["project"] == "examples.quickstart.project:build_project"


def test_deployment_run_with_parameters_runs_nodes_as_task_runs(deployed: dict) -> None:
    cases = [
        {"query": "How does Ray schedule tasks with CPUs and GPUs?", "expected": "ray"},
        {"query": "Which tool tracks experiment metrics and parameters?", "expected": "mlflow"},
    ]
    matrix = [{}, {"retriever": "name_match"}]
    overrides = {"variant_matrix": matrix, "test_cases": cases, "parallelism": 1, "batch_id": "override1"}
    flow_run_id = _run_deployment(deployed, "wtb-batch-test/quickstart-on-demand", overrides)
    run = _wait(flow_run_id, deployed)
    assert run.state.is_completed(), f"{run.state}\n{deployed['log'].read_text()[-4000:]}"
    # the flow run's parameters, read back through the client, are the overrides; the flow ran them
    for key, value in overrides.items():
        assert run.parameters[key] == value, key
    assert run.name == "quickstart_qa-batch-override1"
    from wtb_prefect.run.execution_index import open_index
    from wtb_prefect.settings import get_settings

    batch = open_index(get_settings().state_dir).batch("override1")  # the worker shares WTB_HOME
    assert batch is not None and batch.variant_matrix == matrix and batch.test_cases == cases
    assert batch.parallelism == 1

    tasks, artifacts = _task_runs_and_artifacts(flow_run_id, expect=8)
    node_runs = [t for t in tasks if _node(t) in {"retriever", "generator"}]
    # 2 variants x 2 cases x (retriever, generator), each named "node | variant | case"
    assert len(node_runs) == 8, [t.name for t in tasks]
    assert all(t.state.is_completed() for t in node_runs)
    assert {t.name.split(" | ")[1] for t in node_runs} == {"default", "retriever=name_match"}

    tables = {a.key: a for a in artifacts if a.type == "table"}
    assert "wtb-quickstart-qa-comparison" in tables, list(tables)
    rows = _rows(tables["wtb-quickstart-qa-comparison"])
    assert {row["variant"] for row in rows} == {"default", "retriever=name_match"}, rows

    if os.environ.get("WTB_SCREENSHOT"):  # `WTB_SCREENSHOT=path.png pytest ...` keeps a picture of this run
        shot = subprocess.run(
            ["bash", str(REPO / "scripts/screenshot.sh"), flow_run_id, os.environ["WTB_SCREENSHOT"]],
            env=deployed["env"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert shot.returncode == 0 and Path(os.environ["WTB_SCREENSHOT"]).stat().st_size > 10_000, shot.stderr


def test_deployment_run_watch_returns_when_the_flow_run_ends(deployed: dict) -> None:
    """The README's `prefect deployment run ... --watch` follows the run through the server's event
    stream and returns with the run: exit code 0, within 3x the flow run's own duration."""
    from prefect import get_client

    case = [{"query": "Which installer builds virtual environments fast?", "expected": "uv"}]
    started = time.monotonic()
    watched = _prefect(
        [
            "deployment",
            "run",
            "wtb-batch-test/quickstart-on-demand",
            "--param",
            f"test_cases={json.dumps(case)}",
            "--watch",
            "--watch-timeout",
            "600",
        ],
        deployed["work"],
        deployed["env"],
        timeout=660,
    )
    waited = time.monotonic() - started
    assert watched.returncode == 0, watched.stdout[-3000:] + watched.stderr[-3000:]
    flow_run_id = UUID.search(watched.stdout).group(0)
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    assert run.state.is_completed() and "Completed" in watched.stdout, watched.stdout[-2000:]
    # its own duration: from its creation (the command creates it) to its end, worker pick-up included
    own = (run.end_time - run.created).total_seconds()
    print(f"--watch returned after {waited:.1f}s; the flow run took {own:.1f}s ({waited / own:.2f}x)")
    assert waited <= 3 * own, f"--watch took {waited:.0f}s for a flow run of {own:.0f}s"


def test_nightly_deployment_reads_yaml_project_and_files(deployed: dict) -> None:
    # the nightly deployment names a project YAML file and a matrix file; keep one case to stay short
    case = [{"query": "Which installer builds virtual environments fast?", "expected": "uv"}]
    flow_run_id = _run_deployment(deployed, "wtb-batch-test/quickstart-nightly", {"test_cases": case})
    run = _wait(flow_run_id, deployed)
    assert run.state.is_completed(), f"{run.state}\n{deployed['log'].read_text()[-4000:]}"
    matrix = yaml.safe_load((REPO / "deployments/quickstart/matrix.yaml").read_text())
    tasks, artifacts = _task_runs_and_artifacts(flow_run_id, expect=10)  # 2 x 2 nodes + 2 x 3 nodes
    rows = _rows(next(a for a in artifacts if a.key == "wtb-quickstart-qa-comparison"))
    assert len(rows) == len(matrix) == 4
    # with_reranker variants add a reranker node run
    assert sum(_node(t) == "reranker" for t in tasks) == 2


def test_failed_deployment_run_states_its_error_and_one_traceback(deployed: dict) -> None:
    """A run that fails on a typed error (here a variant the project lacks) ends Failed with the
    error's message, which names the fix, and its traceback is logged once (by Prefect's engine
    process): a raised error was logged twice, as the flow's exception and as the engine's."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    worker_log_before = deployed["log"].stat().st_size
    params = {"variant_matrix": [{"retriever": "no_such_variant"}], "test_cases": [{"query": "q", "expected": "x"}]}
    flow_run_id = _run_deployment(deployed, "wtb-batch-test/quickstart-on-demand", params)
    run = _wait(flow_run_id, deployed)
    assert run.state.is_failed(), run.state
    assert "UnknownVariantError" in run.state.message and "no_such_variant" in run.state.message, run.state.message
    assert "Fix" in run.state.message, run.state.message
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:  # the flow-run process ships its logs as it exits
        while True:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            if any("Finished in state" in log.message for log in logs) or time.monotonic() > deadline:
                break
            time.sleep(1)
    messages = [log.message for log in logs]
    assert any("Finished in state Failed" in m and "no_such_variant" in m for m in messages), messages
    tracebacks = [m for m in messages if "Traceback (most recent call last)" in m]
    assert len(tracebacks) == 1 and "no_such_variant" in tracebacks[0], tracebacks
    worker_output = deployed["log"].read_text()[worker_log_before:]
    assert worker_output.count("Traceback (most recent call last)") == 1, worker_output[-4000:]


def test_invalid_parameter_is_rejected_before_any_run(deployed: dict) -> None:
    result = _prefect(
        ["deployment", "run", "wtb-batch-test/quickstart-on-demand", "--param", "parallelism=0"],
        deployed["work"],
        deployed["env"],
    )
    assert result.returncode != 0
    assert "parallelism" in (result.stdout + result.stderr)


def test_nightly_files_match_the_example_module() -> None:
    from examples.quickstart import project as quickstart
    from wtb_prefect import WorkflowProject

    folder = REPO / "deployments/quickstart"
    assert yaml.safe_load((folder / "matrix.yaml").read_text()) == quickstart.VARIANT_MATRIX
    assert yaml.safe_load((folder / "cases.yaml").read_text()) == quickstart.TEST_CASES
    assert WorkflowProject.from_yaml(folder / "project.yaml").to_yaml() == quickstart.build_project().to_yaml()


@pytest.fixture(scope="module")
def registered_blocks(deployed: dict) -> None:
    """`python blocks/register.py`: the block types and their default documents."""
    registered = subprocess.run(
        [sys.executable, "blocks/register.py"],
        cwd=deployed["work"],
        env=deployed["env"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr


def test_blocks_register_and_name_a_saved_project(registered_blocks: None) -> None:
    from prefect import get_client

    from wtb_prefect.define.registry import resolve_project
    from wtb_prefect.integrations.blocks import CheckpointDatabase, WTBProject

    block = WTBProject.load("quickstart")
    assert block.reference == "examples.quickstart.project:build_project"
    assert block.ray_cluster.address == "auto" and block.checkpoints.storage == "sqlite"

    # the checkpoint database URL is a secret: stored, but never shown by the API
    CheckpointDatabase(storage="postgres", url="postgresql://wtb:s3cret@127.0.0.1:5432/test").save(
        "team-postgres", overwrite=True
    )
    with get_client(sync_client=True) as client:
        shown = client.read_block_document_by_name("team-postgres", "wtb-checkpoint-database", include_secrets=False)
    assert "s3cret" not in json.dumps(shown.data, default=str)
    assert CheckpointDatabase.load("team-postgres").url.get_secret_value().endswith("s3cret@127.0.0.1:5432/test")

    # a block's settings apply to the project it names
    WTBProject(reference=block.reference, checkpoints=CheckpointDatabase.load("team-postgres")).save(
        "qs-postgres", overwrite=True
    )
    project = resolve_project("wtb-project/qs-postgres")
    assert project.execution.checkpoint_storage == "postgres"
    assert project.execution.checkpoint_url.endswith("@127.0.0.1:5432/test")
    with pytest.raises(UnknownProjectError, match="no saved project block"):
        resolve_project("wtb-project/never-saved")


def test_single_run_deployment_with_a_project_block(deployed: dict, registered_blocks: None) -> None:
    flow_run_id = _run_deployment(
        deployed,
        "wtb-run/quickstart-run",
        {"project": "wtb-project/quickstart", "variant_config": {"_workflow": "with_reranker"}},
    )
    run = _wait(flow_run_id, deployed)
    assert run.state.is_completed(), f"{run.state}\n{deployed['log'].read_text()[-4000:]}"
    tasks, _ = _task_runs_and_artifacts(flow_run_id, expect=3)
    assert {_node(t) for t in tasks} >= {"retriever", "reranker", "generator"}
