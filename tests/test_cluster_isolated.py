"""A Ray cluster whose second node shares no files with the driver: code, environments, bad input, a lost node.

The node (:class:`tests.support.isolated_node.IsolatedCluster`) runs in its
own mount namespace, where the checkout, the state folder and ``/tmp`` (the
project folder these tests write, the driver's environments) are empty. It
has Python, the locked dependencies and the package's wheel, not
``rank-bm25``. Each batch is run by a driver subprocess joining the cluster
(this session's own Ray cannot be left and joined again in-process), from a
project folder of its own, as a user's ``wtb batch`` would be.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.isolated_node import NODE_IP, IsolatedCluster

pytestmark = [pytest.mark.integration, pytest.mark.network]  # Ray's uv env on the node installs from the index

REPO = Path(__file__).resolve().parents[1]
CHECKOUT_FILE = str(REPO / "pyproject.toml")


@pytest.fixture(scope="module")
def cluster(wtb_home: Path):
    # the dashboard is what `ray job submit` talks to
    with IsolatedCluster(resources={"isolated": 2}, hidden=[wtb_home], dashboard=True) as running:
        yield running


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's project folder (under /tmp, which the node cannot see): the graph module and the driver script."""
    folder = tmp_path_factory.mktemp("iso_project")
    shutil.copy(REPO / "tests" / "graphs" / "on_isolated_node.py", folder / "iso_graph.py")
    shutil.copy(REPO / "tests" / "support" / "isolated_driver.py", folder / "drive.py")
    return folder


def _drive(
    cluster: IsolatedCluster, folder: Path, api_url: str, spec: dict, env: dict | None = None, timeout: float = 300
) -> dict:
    """Run one batch in a driver process joining ``cluster`` (or, ``address="local"``, a Ray of its own)."""
    full = cluster.driver_env()
    if spec.get("address") == "local":
        full.pop("RAY_ADDRESS")
    full.update(
        {
            "PYTHONPATH": str(REPO),  # wtb_prefect from the checkout: shipped with the job
            "PREFECT_API_URL": api_url,
            "WTB_MLFLOW_ENABLED": "false",
            "WTB_ISO_SPEC": json.dumps({"checkout_file": CHECKOUT_FILE, **spec}),
            **(env or {}),
        }
    )
    done = subprocess.run(
        [sys.executable, "drive.py"], cwd=folder, env=full, capture_output=True, text=True, timeout=timeout
    )
    outcomes = [line for line in done.stdout.splitlines() if line.startswith("OUTCOME ")]
    assert outcomes, (
        f"the driver printed no outcome (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-6000:]}"
    )
    return json.loads(outcomes[-1][len("OUTCOME ") :])


def _node_env_installs(cluster: IsolatedCluster) -> int:
    """How many uv environments Ray has installed on the isolated node (its runtime-env agent's log)."""
    assert cluster.node is not None
    root = Path(f"/proc/{cluster.node.pid}/root{cluster.node_temp}")
    logs = [p for session in root.glob("session_2*") for p in (session / "logs").glob("runtime_env*.log")]
    return sum(p.read_text(errors="replace").count("Installing python requirements") for p in logs)


def _locked_bm25(wtb_home: Path) -> str:
    """The rank-bm25 version the driver resolved for the variant's environment (its recorded lock)."""
    for lock in (wtb_home / "envs").glob("*/lock.txt"):
        for line in lock.read_text().splitlines():
            if line.lower().startswith("rank-bm25=="):
                return line.split("==", 1)[1]
    raise AssertionError(f"no environment under {wtb_home / 'envs'} locks rank-bm25")


def _by_execution(outcome: dict) -> dict[tuple[str, str], dict]:
    assert "results" in outcome, outcome
    return {(row["variant"], row["case"]): row for row in outcome["results"]}


def _assert_ran_right_on_the_node(outcome: dict, wtb_home: Path) -> dict[tuple[str, str], dict]:
    """Every execution completed with the right state, on the node that shares no file with the driver."""
    rows = _by_execution(outcome)
    assert len(rows) == 6 and all(r["status"] == "completed" for r in rows.values()), rows
    bm25 = _locked_bm25(wtb_home)
    for (variant, case), row in rows.items():
        state = row["state"]
        assert state["x"] == (int(case) + 1) * 10 + 3
        assert state["node_ip"] == NODE_IP and state["saw_checkout"] is False  # ran where the checkout is not
        if variant != "default":
            assert state["bm25"] == bm25
    return rows


def test_a_batch_on_a_node_that_shares_no_files_is_right_and_the_second_is_warm(
    cluster: IsolatedCluster, project_dir: Path, prefect_api: str, wtb_home: Path
):
    site = next((cluster.venv or Path()).glob("lib/python*/site-packages"))
    assert not list(site.glob("rank_bm25*")), "the node image must lack rank-bm25"

    # a probe timeout shorter than installing rank-bm25 on the node: that install is queue time
    first = _drive(cluster, project_dir, prefect_api, {"probe_timeout": 5})
    rows = _assert_ran_right_on_the_node(first, wtb_home)
    assert first["pushed"] >= 1  # the project folder (and wtb_prefect) went to the cluster
    installs = _node_env_installs(cluster)
    assert installs >= 1

    # the second batch on the cluster, and beside it the same batch on one machine (the driver's own
    # local Ray, which touches neither the cluster nor its node): two drivers at once
    with ThreadPoolExecutor(2) as pool:
        warm = pool.submit(_drive, cluster, project_dir, prefect_api, {"probe_timeout": 5})
        alone = pool.submit(_drive, cluster, project_dir, prefect_api, {"on_node": False, "address": "local"})
        second, local = warm.result(), _by_execution(alone.result())
    assert second["pushed"] == 0, second["packages"]  # the same code: nothing uploaded again
    assert _node_env_installs(cluster) == installs  # the same lock: no environment built again
    assert {k: r["state"] for k, r in _by_execution(second).items()} == {k: r["state"] for k, r in rows.items()}

    # on one machine: the same answers, the checkout visible
    assert local.keys() == rows.keys()
    for key, row in local.items():
        assert row["status"] == "completed" and row["state"]["saw_checkout"] is True
        strip = ("node_ip", "saw_checkout")
        assert {k: v for k, v in row["state"].items() if k not in strip} == {
            k: v for k, v in rows[key]["state"].items() if k not in strip
        }


def test_a_working_dir_over_ray_s_limit_is_refused_before_the_batch(
    cluster: IsolatedCluster, project_dir: Path, prefect_api: str, tmp_path: Path
):
    folder = tmp_path / "big_project"
    shutil.copytree(project_dir, folder)
    with open(folder / "corpus.bin", "wb") as handle:
        handle.truncate(600 * 2**20)  # sparse: over Ray's 512 MiB package limit, no disk used
    outcome = _drive(cluster, folder, prefect_api, {})
    assert outcome.get("raised") == "CodePayloadTooLargeError", outcome
    assert "ConfigError" in outcome["classes"]
    assert str(folder) in outcome["message"] and ".rayignore" in outcome["message"]


def test_an_environment_the_node_cannot_build_is_a_typed_error_not_a_hang(
    cluster: IsolatedCluster, project_dir: Path, prefect_api: str, tmp_path: Path
):
    # a package only the driver's machine has (a local folder under /tmp): the driver builds its env,
    # the node cannot install the locked pin from the index
    package = tmp_path / "localonly"
    (package / "wtb_localonly_pkg").mkdir(parents=True)
    (package / "wtb_localonly_pkg" / "__init__.py").write_text("")
    (package / "pyproject.toml").write_text(
        '[project]\nname = "wtb-localonly-pkg"\nversion = "0.1"\n'
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    )
    started = time.monotonic()
    outcome = _drive(cluster, project_dir, prefect_api, {"cases": 2}, env={"WTB_ISO_BM25": str(package)})
    rows = _by_execution(outcome)
    assert time.monotonic() - started < 280  # ended on its own, well before the driver's limit
    for (variant, _), row in rows.items():
        if variant == "default":
            assert row["status"] == "completed"
        else:
            assert row["status"] == "failed" and row["error"]["type"] == "EnvironmentBuildError", row
            message = row["error"]["message"]
            assert "wtb-localonly-pkg" in message and "could not be set up" in message and "Fix:" in message


@pytest.fixture()
def postgres_prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A Prefect server of its own on a fresh PostgreSQL database, dropped afterwards: (API URL, database URL)."""
    import psycopg

    from tests.support.prerequisites import POSTGRES_URL
    from wtb_prefect.services.ports import free_port
    from wtb_prefect.services.prefect_server import PrefectServer
    from wtb_prefect.settings import WTBSettings

    name = f"wtb_iso_jobs_{uuid.uuid4().hex[:12]}"  # a fresh database each run: nothing left from the last one
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database_url = f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}"
    server = PrefectServer(WTBSettings(home=tmp_path_factory.mktemp("pg_prefect")))
    try:
        info = server.start(port=free_port(), database_url=database_url, timeout=300)
        yield info.url, database_url
    finally:
        server.stop()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _finished_job(client, job_id: str, timeout: float = 400) -> tuple[str, str]:  # noqa: ANN001 (a JobSubmissionClient)
    """Wait for a Ray job to end: its final status and its logs."""
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + timeout
    status = client.get_job_status(job_id)
    while not status.is_terminal():
        assert time.monotonic() < deadline, (
            f"the Ray job {job_id} did not end within {timeout:.0f}s ({status}):\n{client.get_job_logs(job_id)[-6000:]}"
        )
        time.sleep(1)
        status = client.get_job_status(job_id)
    return str(JobStatus(status).value), client.get_job_logs(job_id)


def _task_runs(api_url: str, flow_run_id: str, expect: int, timeout: float = 120) -> tuple[str, list]:
    """The flow run's final state and its task runs, once ``expect`` of them are final (the server records
    task runs from events, a moment after the flow run ends)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    deadline = time.monotonic() + timeout
    with temporary_settings({PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if sum(1 for r in runs if r.state and r.state.is_final()) >= expect or time.monotonic() > deadline:
                break
            time.sleep(1)
        flow_run = client.read_flow_run(flow_run_id)
    return flow_run.state.type.value, runs


@pytest.mark.postgres
def test_a_batch_submitted_as_a_ray_job_reports_to_prefect_on_postgresql_and_to_mlflow(
    cluster: IsolatedCluster,
    project_dir: Path,
    postgres_prefect: tuple[str, str],
    wtb_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    import psycopg
    from mlflow import MlflowClient
    from ray.job_submission import JobSubmissionClient

    api_url, database_url = postgres_prefect
    job_home = tmp_path / "job_home"  # the driver's state folder, on the head's machine
    job_home.mkdir()
    tracking = f"sqlite:///{job_home / 'mlflow.db'}"
    # Ray's job client takes RAY_API_SERVER_ADDRESS, then RAY_ADDRESS, over the address it is given;
    # this session's drivers have RAY_ADDRESS naming the session's own cluster
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", cluster.dashboard_url)
    client = JobSubmissionClient(cluster.dashboard_url)
    # as `ray job submit --working-dir <project> --runtime-env-json ... -- python drive.py`
    job_id = client.submit_job(
        entrypoint=f"{shlex.quote(sys.executable)} drive.py",
        runtime_env={
            "working_dir": str(project_dir),
            "env_vars": {
                "PREFECT_API_URL": api_url,
                "WTB_HOME": str(job_home),
                "WTB_ENV_DIR": str(wtb_home / "envs"),  # the variant's environment, built once on this machine
                "WTB_MLFLOW_ENABLED": "true",
                "WTB_MLFLOW_TRACKING_URI": tracking,
                "WTB_ISO_SPEC": json.dumps({"checkout_file": CHECKOUT_FILE}),
            },
        },
    )
    status, logs = _finished_job(client, job_id)
    assert status == "SUCCEEDED", logs[-6000:]
    outcomes = [line for line in logs.splitlines() if line.startswith("OUTCOME ")]
    assert outcomes, logs[-6000:]
    outcome = json.loads(outcomes[-1][len("OUTCOME ") :])

    rows = _assert_ran_right_on_the_node(outcome, wtb_home)

    # MLflow: the batch's parent run and a child run per variant, as from a local driver
    ml = MlflowClient(tracking)
    experiment = ml.get_experiment_by_name("iso_probe")
    assert experiment is not None, f"no MLflow experiment iso_probe in {tracking}"
    runs = ml.search_runs([experiment.experiment_id], f"tags.`wtb.batch_id` = '{outcome['batch_id']}'")
    parents = [r for r in runs if r.data.tags.get("wtb.kind") == "batch"]
    children = [r for r in runs if r.data.tags.get("wtb.kind") == "variant"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED", runs
    assert {c.data.tags["wtb.variant"] for c in children} == {variant for variant, _ in rows}
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}

    # Prefect: the batch's flow run and a completed task run per node call, kept in PostgreSQL
    flow_run_id = parents[0].data.tags["prefect.flow_run_id"]
    flow_state, task_runs = _task_runs(api_url, flow_run_id, expect=18)
    assert flow_state == "COMPLETED"
    for node in ("prep", "probe", "finish"):
        calls = [t for t in task_runs if t.name.split(" | ")[0] == node]
        assert len(calls) == 6 and all(t.state.is_completed() for t in calls), [t.name for t in task_runs]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT state_type FROM flow_run WHERE id = %s", (flow_run_id,)).fetchone()
    assert stored is not None and stored[0] == "COMPLETED"


def test_a_node_lost_mid_batch_fails_its_calls_with_a_named_error_and_nothing_hangs(  # last: the node stays down
    cluster: IsolatedCluster, project_dir: Path, prefect_api: str, tmp_path: Path
):
    kill_file = tmp_path / "first-result"
    # every execution at once: two probes run on the node, the others wait in Ray's queue for its
    # resource, so once the node is gone they all find out at the same check instead of in turns
    full_spec = {"cases": 6, "parallelism": 12, "sleep_s": 3.0, "kill_file": str(kill_file)}
    driver: dict = {}

    def run() -> None:
        driver["outcome"] = _drive(cluster, project_dir, prefect_api, full_spec, timeout=400)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 300
        while not kill_file.exists() and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert kill_file.exists(), "no execution ended"
        cluster.kill_node()  # the only node offering "isolated": nothing can take its calls
        thread.join(400)
        assert not thread.is_alive(), "the batch hung after the node was lost"
    finally:
        thread.join(400)
    rows = _by_execution(driver["outcome"])
    assert len(rows) == 12
    failed = [r for r in rows.values() if r["status"] != "completed"]
    assert failed, "the node was killed while executions were left"
    for row in rows.values():
        if row["status"] == "completed":
            assert row["state"]["node_ip"] == NODE_IP
        else:
            assert row["error"]["type"] == "ResourceUnsatisfiableError", row
            assert "isolated" in row["error"]["message"] and "Fix:" in row["error"]["message"]
