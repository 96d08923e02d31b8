"""Quiet consoles and a light start: what a user sees and waits for when a batch starts.

Runs the real CLI (and the Python API) in subprocesses on the session's Prefect
server and Ray cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
WTB = str(Path(sys.executable).with_name("wtb"))
REPO = Path(__file__).resolve().parents[1]
CASES = json.dumps([{"query": f"Which tool tracks experiments? ({i})", "expected": "mlflow"} for i in range(3)])
# Lines the services used to print per node or per process
NOISE = (
    "Timeout of",
    "worker processes have been started",
    "Token authentication",
    "mlflow.store.db.utils",
    "DeprecationWarning",
    "WARNING",
)


def _env(prefect_api: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": prefect_api, "COLUMNS": "200", **extra}


def _batch(project: str, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [WTB, *flags, "batch", project, "--cases", CASES],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.parametrize(
    "project", ["tests.graphs.where_it_ran:build_threadpool_project", "examples.quickstart.project:build_project"]
)
def test_a_batch_console_has_no_per_node_warning_line(ray_cluster, prefect_api: str, project: str) -> None:
    done = _batch(project, _env(prefect_api))
    console = (done.stdout + done.stderr).splitlines()
    noisy = [line for line in console if any(word in line for word in NOISE)]
    assert not noisy, "\n".join(noisy)


def test_verbose_shows_what_the_default_hides(ray_cluster, prefect_api: str) -> None:
    done = _batch("tests.graphs.where_it_ran:build_threadpool_project", _env(prefect_api), "-v")
    console = done.stdout + done.stderr
    # Prefect's threadpool timeout notice, once per node task run
    assert console.count("Timeout of 300") >= 3, console[-3000:]


def test_a_node_print_reaches_the_run_console(ray_cluster, prefect_api: str) -> None:
    # `wtb run` leaves Ray itself, sooner than Ray's exit hook would: the print must still arrive
    done = subprocess.run(
        [WTB, "run", "tests.graphs.where_it_ran:build_printing_project", "--case", json.dumps({"query": "hello-4711"})],
        cwd=REPO,
        env=_env(prefect_api),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "node says: hello-4711" in done.stdout + done.stderr, done.stdout[-3000:] + done.stderr[-3000:]


_API_BATCH = """
import sys
from wtb_prefect import WTBTestBench
import tests.graphs.where_it_ran as graphs
bench = WTBTestBench()
bench.register_project(graphs.build_threadpool_project())
batch = bench.run_batch_test(project="threadpool_echo", test_cases=[{"query": "a"}])
print("RESULT", batch.results[0].status, "mlflow" in sys.modules, sorted(batch.tracking))
"""


@pytest.mark.parametrize("enabled", ["false", "true"])
def test_only_a_process_that_logs_imports_mlflow(prefect_api: str, enabled: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _API_BATCH],
        cwd=REPO,
        env=_env(prefect_api, WTB_MLFLOW_ENABLED=enabled),
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT"))
    if enabled == "false":
        assert line.startswith("RESULT completed False [") and "'mlflow'" not in line, line
    else:  # set up in the background, finished before the batch returns: the runs are recorded
        assert line.startswith("RESULT completed True [") and "'mlflow'" in line, line


@pytest.mark.no_gpu  # the project asks for one GPU: bad input only where the cluster has none
def test_bad_resources_are_rejected_before_the_prefect_server_starts(ray_cluster, tmp_path: Path) -> None:
    """A GPU request on the CPU-only cluster exits 2 having started no Prefect server (nothing answers
    in this fresh state folder, and auto-start is on)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(WTB_HOME=str(tmp_path / "home"), COLUMNS="200")
    done = subprocess.run(
        [WTB, "run", "benchmarks._gpu_project:build_project", "--case", json.dumps({"query": "q"})],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "num_gpus" in done.stdout
    assert not (tmp_path / "home/prefect/server.json").exists()
